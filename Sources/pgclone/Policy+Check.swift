import ArgumentParser
import Foundation
import Masking

extension Pgclone.Policy {
    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate the policy files of a directory; exits 1 with every error found (file:line: message)."
        )

        @Argument(help: "Directory holding *.yaml policy files.")
        var directory: String

        func run() async throws {
            do {
                let policies = try PolicyLoader.load(directory: directory)
                let columns = policies.reduce(0) { $0 + $1.columns.count }
                print("OK: \(policies.count) \(policies.count == 1 ? "policy" : "policies") (\(columns) masked \(columns == 1 ? "column" : "columns")) in \(directory)")
            } catch {
                FileHandle.standardError.write(Data((error.description + "\n").utf8))
                throw ExitCode.failure
            }
        }
    }
}
