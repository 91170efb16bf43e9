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
                masked roles' reads of the table. A strategy must produce the column's type (a masked read of it \
                fails otherwise); a generated column computed from a masked column holds its value, and is named in a \
                notice (masked roles read it as NULL unless the policy names it). Keyed strategies are checked with PGCLONE_MASK_SECRET when it is set.
                """
        )

        @Argument(help: "Directory holding *.yaml policy files.")
        var directory: String

        @Option(help: "libpq conninfo of a database to check the policies' tables and columns against.")
        var target: String?

        func run() async throws {
            // Keyed strategies need the secret the proxy will have (round 44 F7: they all failed).
            if let secret = ProcessInfo.processInfo.environment["PGCLONE_MASK_SECRET"], !secret.isEmpty {
                do { try MaskingKey.install(secret) } catch { throw ValidationError("PGCLONE_MASK_SECRET: \(error.message)") }
            }
            let policies: [TablePolicy]
            do {
                policies = try PolicyLoader.load(directory: directory)
            } catch {
                FileHandle.standardError.write(Data((error.description + "\n").utf8))
                throw ExitCode.failure
            }
            var checked = ""
            if let target {
                let (problems, notices) = try await Self.mismatches(policies, target: target)
                for notice in notices { FileHandle.standardError.write(Data("NOTICE: \(notice)\n".utf8)) }
                if !problems.isEmpty {
                    FileHandle.standardError.write(Data((problems.joined(separator: "\n") + "\n").utf8))
                    throw ExitCode.failure
                }
                checked = ", tables and columns found in the target database"
            }
            let columns = policies.reduce(0) { $0 + $1.columns.count }
            print("OK: \(policies.count) \(policies.count == 1 ? "policy" : "policies") (\(columns) masked \(columns == 1 ? "column" : "columns")) in \(directory)\(checked)")
        }

        /// What the target database lacks of the policies (tables, columns by their exact names,
        /// strategies that cannot produce their column's type), and what the proxy masks beyond
        /// what they name.
        static func mismatches(_ policies: [TablePolicy], target: String) async throws -> (problems: [String], notices: [String]) {
            let connection: PQConnection
            do {
                connection = try await PQConnection.connect(target, label: "policy-check")
            } catch {
                throw ValidationError("cannot connect to the target database: \((error as? PQError)?.message ?? "\(error)")")
            }
            var problems: [String] = [], notices: [String] = []
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
                // Each strategy against its column's type: the mask's own expression, evaluated on
                // a NULL of that type (a strategy that cannot produce the type fails here, as every
                // masked read of the column would; round 44 F6).
                let types = try await connection.query("""
                    SELECT a.attname::pg_catalog.text, pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1) AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
                    """, [SQL.qualified(policy.schema, policy.table)])
                for row in types.rows.indices {
                    guard let name = types.string(row, 0), let type = types.string(row, 1), let strategy = policy.strategy(for: name) else { continue }
                    // A NULL, and a zero where the type takes one (a pseudonym overflows a smallint).
                    let zero = (try? await connection.query("SELECT '0'::\(type)")) != nil
                    let sample = "(SELECT NULL::\(type) AS c" + (zero ? " UNION ALL SELECT '0'::\(type)" : "") + ") s"
                    do {
                        _ = try await connection.query("SELECT \(strategy.expression(for: "s.c", type: type)) FROM \(sample)")
                    } catch let error as PQError {
                        problems.append("\(policy.source): \(policy.qualifiedName).\(name): strategy \"\(strategy.name)\" cannot mask a column of type \(type): \(error.message)")
                    }
                }
                // Generated columns computed from a masked column hold its value (round 44 F8).
                let derived = try await connection.query("""
                    SELECT DISTINCT g.attname::pg_catalog.text, s.attname::pg_catalog.text
                    FROM pg_catalog.pg_attribute g JOIN pg_catalog.pg_attrdef ad ON ad.adrelid OPERATOR(pg_catalog.=) g.attrelid AND ad.adnum OPERATOR(pg_catalog.=) g.attnum
                    JOIN pg_catalog.pg_depend d ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.objid OPERATOR(pg_catalog.=) ad.oid
                      AND d.refobjid OPERATOR(pg_catalog.=) g.attrelid
                    JOIN pg_catalog.pg_attribute s ON s.attrelid OPERATOR(pg_catalog.=) g.attrelid AND s.attnum OPERATOR(pg_catalog.=) d.refobjsubid
                    WHERE g.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1) AND g.attgenerated OPERATOR(pg_catalog.<>) ''
                      AND s.attname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[])
                    ORDER BY 1, 2
                    """, [SQL.qualified(policy.schema, policy.table), SQL.textArray(policy.columns.map(\.name))])
                for row in derived.rows.indices where policy.strategy(for: derived.string(row, 0) ?? "") == nil {
                    notices.append("\(policy.source): \(policy.qualifiedName).\(derived.string(row, 0) ?? "") is generated from masked column \"\(derived.string(row, 1) ?? "")\" "
                                   + "and holds its value: masked roles read it as NULL (name it in the policy to mask it otherwise)")
                }
            }
            return (problems, notices)
        }
    }
}
