import ArgumentParser
import CloneEngine
import Foundation

/// Subcommands that look without cloning (verify, diff, preflight) and that clone roles. Each
/// exits 1 when it finds a problem, so that scripts can act on it.
extension Pgclone {
    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Compare the target with the source, table by table (as SELECT * FROM pgclone.verify(...)).",
            discussion: "Exit status 1 when a table differs or exists on one side only.")
        @OptionGroup var clone: CloneCommandOptions
        @Argument(help: "Schema to verify (default: every user schema).") var schema: String?
        @Option(help: "count (default), estimate or checksum.") var mode: String?

        func run() async throws {
            var failed = false
            try await runClone {
                let options = mode.map { "{\"mode\": \"\($0)\"}" } ?? clone.options
                let rows = try await CloneEngine().verify(source: try clone.sourceConnInfo(), target: try await clone.cloneTarget(),
                                                          schema: schema, options: options)
                failed = rows.contains { $0.match != "✓" }
                let lines = rows.map { row in
                    let counts = "\(row.sourceRows.map(String.init) ?? "-") / \(row.targetRows.map(String.init) ?? "-")"
                    return "\(row.match) \(row.schema).\(row.table)  \(counts)\(row.detail.map { "  \($0)" } ?? "")"
                }
                let bad = rows.filter { $0.match != "✓" }.count
                return (lines + ["\(bad == 0 ? "OK" : "DIFFERENT"): \(rows.count) tables, \(bad) differ"]).joined(separator: "\n")
            }
            if failed { throw ExitCode.failure }
        }
    }

    struct Diff: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the definitions that differ between source and target (as SELECT pgclone.diff(...)).",
            discussion: "Lines start with - (only in source), + (only in target) or ~ (defined differently). Exit status 1 when anything differs.")
        @OptionGroup var clone: CloneCommandOptions
        @Argument(help: "Schema to compare (default: every user schema).") var schema: String?
        @Flag(help: "Print the JSON of the SQL API instead of the listing.") var json = false

        func run() async throws {
            var differs = false
            try await runClone {
                let result = try await CloneEngine().diff(source: try clone.sourceConnInfo(), target: try await clone.cloneTarget(), schema: schema)
                differs = result.count > 0
                return json ? result.json : String(result.listing.dropLast())
            }
            if differs { throw ExitCode.failure }
        }
    }

    struct Preflight: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check what a clone of a schema (or of the whole database) needs, before running it.",
            discussion: "Exit status 1 when a check fails.")
        @OptionGroup var clone: CloneCommandOptions
        @Argument(help: "Schema the clone would copy (default: the whole database).") var schema: String?

        func run() async throws {
            var failed = false
            try await runClone {
                let checks = try await CloneEngine().preflight(source: try clone.sourceConnInfo(), target: try await clone.cloneTarget(),
                                                               schema: schema, options: clone.options)
                failed = checks.contains { $0.status == "fail" }
                return checks.map { "\($0.status.padding(toLength: 4, withPad: " ", startingAt: 0))  \($0.name): \($0.detail)" }.joined(separator: "\n")
            }
            if failed { throw ExitCode.failure }
        }
    }

    struct Roles: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Clone roles with their attributes, password verifiers, memberships, settings and privileges (as SELECT pgclone.clone_roles(...)).")
        @OptionGroup var clone: CloneCommandOptions
        @Argument(help: "Roles to clone, comma-separated (default: every role).") var roles: String?

        func run() async throws {
            try await runClone {
                let summary = try await CloneEngine().cloneRoles(source: try clone.sourceConnInfo(), target: try await clone.cloneTarget(), only: roles)
                for note in summary.notes { FileHandle.standardError.write(Data("NOTICE: \(note)\n".utf8)) }
                return summary.message
            }
        }
    }
}
