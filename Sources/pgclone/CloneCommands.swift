import ArgumentParser
import CloneEngine
import Foundation

extension Pgclone {
    struct Table: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Clone one table (as SELECT pgclone.table(...)).")
        @OptionGroup var clone: CloneCommandOptions
        @Argument(help: "Source schema.") var schema: String
        @Argument(help: "Source table.") var table: String
        @Option(help: "Name of the table on the target (default: the same).") var targetName: String?

        func run() async throws {
            let options = try clone.cloneOptions()
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

        func run() async throws {
            let options = try clone.cloneOptions()
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
