import ArgumentParser
import Foundation

extension Pgclone.Policy {
    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate the policy files of a directory; exits 1 with the errors found."
        )

        @Argument(help: "Directory holding *.yaml policy files.")
        var directory: String

        func run() async throws {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
                FileHandle.standardError.write(Data("pgclone: policy directory \(directory) does not exist\n".utf8))
                throw ExitCode.failure
            }
            // Policy validation lands with the masking work; until then only the directory is checked.
            print("policy directory \(directory): ok")
        }
    }
}
