import ArgumentParser
import CloneEngine
import Foundation
import PQ

extension Pgclone {
    struct Table: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Clone one table (as SELECT pgclone.table(...)).")
        @OptionGroup var clone: CloneCommandOptions
        @Argument(help: "Source schema.") var schema: String
        @Argument(help: "Source table.") var table: String
        @Option(help: "Name of the table on the target (default: the same).") var targetName: String?
        @Flag(help: "Run as a background job of the proxy --target points at; prints the job id.") var async = false

        func run() async throws {
            let options = try clone.cloneOptions()
            if async {
                try await runClone {
                    try await submitJob("table_async", [try clone.sourceConnInfo(), schema, table, clone.noData ? "false" : "true",
                                                        targetName ?? "", clone.options(overridingParallel: true)], target: clone.targetConnInfo())
                }
                return
            }
            try await runClone {
                let outcome = try await CloneEngine().cloneTable(
                    source: try clone.sourceConnInfo(), target: try await clone.cloneTarget(),
                    schema: schema, table: table, targetName: targetName, options: options)
                for note in outcome.notes { FileHandle.standardError.write(Data("NOTICE: \(note)\n".utf8)) }
                return CloneMessages.table(outcome)
            }
        }
    }

    struct Schema: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Clone a schema with its types, functions, tables, views and data.")
        @OptionGroup var clone: CloneCommandOptions
        @Argument(help: "Source schema.") var schema: String
        @Flag(help: "Run as a background job of the proxy --target points at; prints the job id.") var async = false

        func run() async throws {
            let options = try clone.cloneOptions()
            if async {
                try await runClone {
                    try await submitJob("schema_async", [try clone.sourceConnInfo(), schema, clone.noData ? "false" : "true",
                                                         clone.options(overridingParallel: true)], target: clone.targetConnInfo())
                }
                return
            }
            try await runClone {
                let summary = try await CloneEngine().cloneSchema(
                    source: try clone.sourceConnInfo(), target: try await clone.cloneTarget(),
                    schema: schema, options: options, progress: TerminalProgress())
                for note in summary.notes { FileHandle.standardError.write(Data("NOTICE: \(note)\n".utf8)) }
                return "OK: cloned schema \(schema) (\(summary.counts))"
            }
        }
    }

    struct Functions: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Clone the functions and procedures of a schema.")
        @OptionGroup var clone: CloneCommandOptions
        @Argument(help: "Source schema.") var schema: String

        func run() async throws {
            try await runClone {
                let count = try await CloneEngine().cloneFunctions(source: try clone.sourceConnInfo(), target: try await clone.cloneTarget(), schema: schema)
                return "OK: cloned \(count) \(count == 1 ? "function" : "functions") from \(schema)"
            }
        }
    }

    struct Database: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Clone every user schema into the target database, or into a new one with --create.")
        @OptionGroup var clone: CloneCommandOptions
        @Option(help: "Create this database on the target server and clone into it.") var create: String?

        func run() async throws {
            let options = try clone.cloneOptions()
            try await runClone {
                let engine = CloneEngine()
                let source = try clone.sourceConnInfo()
                let target = try await clone.cloneTarget()
                if let create {
                    let summary = try await engine.createDatabase(source: source, target: target, name: create, options: options, progress: TerminalProgress())
                    return "OK: created database \(create) and cloned (\(summary.schemas.count) schemas: \(summary.counts))"
                }
                let summary = try await engine.cloneDatabase(source: source, target: target, options: options, progress: TerminalProgress())
                for note in summary.notes { FileHandle.standardError.write(Data("NOTICE: \(note)\n".utf8)) }
                return "OK: cloned database (\(summary.schemas.count) schemas: \(summary.counts))"
            }
        }
    }
}

/// Queues a background job through the proxy `target` points at (`pgclone.<function>(...)`).
func submitJob(_ function: String, _ arguments: [String?], target: String) async throws -> String {
    let connection: PQConnection
    do {
        connection = try await PQConnection.connect(target, label: "target-jobs")
    } catch let error as PQError {
        throw CommandFailure("could not connect to target: \(error.message)")
    }
    let placeholders = arguments.indices.map { "$\($0 + 1)" }.joined(separator: ", ")
    do {
        let result = try await connection.query("SELECT pgclone.\(function)(\(placeholders))", arguments)
        let id = result.string(0, 0) ?? "?"
        FileHandle.standardError.write(Data("NOTICE: job \(id) queued; follow it with: pgclone jobs --watch --target '...'\n".utf8))
        return id
    } catch let error as PQError where error.sqlState == "42883" || error.sqlState == "3F000" {
        throw CommandFailure("--async needs --target to be a connection through a pgclone proxy (the jobs run there): \(error.message)")
    } catch let error as PQError {
        throw CloneError(error.sqlState ?? "XX000", error.message, detail: error.detail, hint: error.hint)
    }
}
