import ArgumentParser
import Foundation
import Masking
import PQ

extension Pgclone.Policy {
    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate the policy files of a directory; exits 1 with every error found (file:line: message).",
            discussion: """
                With --target, each policy's table must also exist in that database and have every column the \
                policy names, by its exact name (case included): a column the table lacks makes the proxy refuse \
                masked roles' reads of the table.
                """
        )

        @Argument(help: "Directory holding *.yaml policy files.")
        var directory: String

        @Option(help: "libpq conninfo of a database to check the policies' tables and columns against.")
        var target: String?

        func run() async throws {
            let policies: [TablePolicy]
            do {
                policies = try PolicyLoader.load(directory: directory)
            } catch {
                FileHandle.standardError.write(Data((error.description + "\n").utf8))
                throw ExitCode.failure
            }
            var checked = ""
            if let target {
                let problems = try await Self.mismatches(policies, target: target)
                if !problems.isEmpty {
                    FileHandle.standardError.write(Data((problems.joined(separator: "\n") + "\n").utf8))
                    throw ExitCode.failure
                }
                checked = ", tables and columns found in the target database"
            }
            let columns = policies.reduce(0) { $0 + $1.columns.count }
            print("OK: \(policies.count) \(policies.count == 1 ? "policy" : "policies") (\(columns) masked \(columns == 1 ? "column" : "columns")) in \(directory)\(checked)")
        }

        /// What the target database lacks of the policies: tables, and columns by their exact names.
        static func mismatches(_ policies: [TablePolicy], target: String) async throws -> [String] {
            let connection: PQConnection
            do {
                connection = try await PQConnection.connect(target, label: "policy-check")
            } catch {
                throw ValidationError("cannot connect to the target database: \((error as? PQError)?.message ?? "\(error)")")
            }
            var problems: [String] = []
            for policy in policies {
                let names = try await connection.query("""
                    SELECT pg_catalog.to_regclass($1) IS NOT NULL, a.attname::pg_catalog.text
                    FROM (SELECT 1) one LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)
                      AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
                    """, [SQL.qualified(policy.schema, policy.table)])
                guard names.string(0, 0) == "t" else {
                    problems.append("\(policy.source): table \(policy.qualifiedName) does not exist in the target database")
                    continue
                }
                let columns = Set(names.rows.indices.compactMap { names.string($0, 1) })
                for column in policy.columns where !columns.contains(column.name) {
                    let near = columns.sorted().first { $0.lowercased() == column.name.lowercased() }
                    problems.append("\(policy.source): \(policy.qualifiedName) has no column \"\(column.name)\""
                                    + (near.map { " (it has \"\($0)\": names are exact, case included)" } ?? "")
                                    + "; the proxy refuses masked roles' reads of the table until this is corrected")
                }
            }
            return problems
        }
    }
}
