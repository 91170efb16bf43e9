import CloneEngine
import Foundation
import JSON

/// The background-job functions of the admin API: `table_async`, `schema_async`, `progress`,
/// `progress_detail`, `jobs`, the view `jobs_view`, `cancel`, `clear_jobs` and `resume`.
struct JobFunctions {
    let runner: JobRunner

    /// The columns of `jobs_view` and `progress_detail()` (guide test 17).
    static let columns = [
        AdminResult.Column("job_id", "bigint"), AdminResult.Column("status", "text"), AdminResult.Column("op_type", "text"),
        AdminResult.Column("schema_name", "text"), AdminResult.Column("table_name", "text"), AdminResult.Column("current_phase", "text"),
        AdminResult.Column("tables_total", "integer"), AdminResult.Column("tables_completed", "integer"),
        AdminResult.Column("rows_copied", "bigint"), AdminResult.Column("bytes_copied", "bigint"), AdminResult.Column("elapsed_ms", "bigint"),
        AdminResult.Column("start_time", "timestamptz"), AdminResult.Column("end_time", "timestamptz"),
        AdminResult.Column("pct_complete", "numeric"), AdminResult.Column("progress_bar", "text"), AdminResult.Column("elapsed_time", "text"),
        AdminResult.Column("error_message", "text"),
    ]

    func run(_ function: String, arguments: ArgumentList, caller: AdminCaller) async throws -> AdminResult {
        switch function {
        case "table_async":
            try arguments.expectCount(3...6)
            let options = try arguments.optionalText(5)
            _ = try CloneOptions.parse(options)
            let id = try await runner.submit(operation: "table", caller: caller, schema: arguments.text(1, "schema_name"),
                                             table: arguments.text(2, "table_name"), targetName: arguments.optionalText(4).flatMap { $0.isEmpty ? nil : $0 },
                                             includeData: arguments.bool(3, "include_data", default: true), options: options,
                                             source: arguments.text(0, "source_conninfo"))
            return .value(String(id), type: "bigint")

        case "schema_async":
            try arguments.expectCount(2...4)
            let options = try arguments.optionalText(3)
            _ = try CloneOptions.parse(options)
            let id = try await runner.submit(operation: "schema", caller: caller, schema: arguments.text(1, "schema_name"), table: nil, targetName: nil,
                                             includeData: arguments.bool(2, "include_data", default: true), options: options,
                                             source: arguments.text(0, "source_conninfo"))
            return .value(String(id), type: "bigint")

        case "progress":
            try arguments.expectCount(1...1)
            let id = try Self.jobID(arguments)
            guard let job = try await runner.store.job(id) else { throw AdminError("P0002", "job \(id) does not exist") }
            return .value(Self.json(job).text, type: "json")

        case "jobs":
            try arguments.expectCount(0...0)
            return .value(JSONNode.array(try await runner.store.all().map(Self.json)).text, type: "json")

        case "progress_detail", "jobs_view":
            try arguments.expectCount(0...0)
            return .rows(columns: Self.columns, rows: try await runner.store.all().map(Self.row))

        case "cancel":
            try arguments.expectCount(1...1)
            let id = try Self.jobID(arguments)
            guard let status = try await runner.cancel(id) else { throw AdminError("P0002", "job \(id) does not exist") }
            switch status {
            case .cancelled: return .text("OK: job \(id) cancelled")
            case .completed, .failed: return .text("OK: job \(id) had already ended (\(status.rawValue))")
            default: return .text("OK: job \(id) is \(status.rawValue)")
            }

        case "clear_jobs":
            try arguments.expectCount(0...0)
            return .value(String(try await runner.store.clearFinished()), type: "integer")

        case "resume":
            try arguments.expectCount(1...2)
            let id = try Self.jobID(arguments)
            guard let job = try await runner.resume(id, source: try arguments.optionalText(1)) else {
                if let existing = try await runner.store.job(id) {
                    throw AdminError("55000", "job \(id) is \(existing.status.rawValue); only interrupted, failed or cancelled jobs can be resumed")
                }
                throw AdminError("P0002", "job \(id) does not exist")
            }
            return .text("OK: job \(job.id) resumed (\(job.completedTables.count) tables already done)")

        default:
            throw AdminError("42883", "function pgclone.\(function)() does not exist")
        }
    }

    static func jobID(_ arguments: ArgumentList) throws(AdminError) -> Int64 {
        let text = try arguments.text(0, "job_id")
        guard let id = Int64(text) else { throw AdminError("22P02", "invalid input syntax for type bigint: \"\(text)\" (argument job_id)") }
        return id
    }

    /// Percent of tables done (a finished job is 100).
    static func percent(_ job: JobStore.Job) -> Double {
        if job.status == .completed { return 100 }
        guard job.tablesTotal > 0 else { return 0 }
        return (Double(job.tablesCompleted) * 1000 / Double(job.tablesTotal)).rounded() / 10
    }

    /// `[████████░░░░░░░░░░░░] 40.0%`.
    static func bar(_ percent: Double) -> String {
        let filled = max(0, min(20, Int(percent / 5)))
        return "[" + String(repeating: "█", count: filled) + String(repeating: "░", count: 20 - filled) + "] " + String(format: "%.1f%%", percent)
    }

    /// `00:01:02.345`.
    static func elapsed(_ milliseconds: Int64?) -> String? {
        guard let milliseconds, milliseconds >= 0 else { return nil }
        let seconds = milliseconds / 1000
        return String(format: "%02lld:%02lld:%02lld.%03lld", seconds / 3600, seconds / 60 % 60, seconds % 60, milliseconds % 1000)
    }

    static func row(_ job: JobStore.Job) -> [String?] {
        let percent = percent(job)
        return [String(job.id), job.status.rawValue, job.operation, job.schema, job.table, job.phase, String(job.tablesTotal), String(job.tablesCompleted),
                String(job.rowsCopied), String(job.bytesCopied), job.elapsedMilliseconds.map(String.init), job.startTime, job.endTime,
                String(format: "%.1f", percent), bar(percent), elapsed(job.elapsedMilliseconds), job.error]
    }

    static func json(_ job: JobStore.Job) -> JSONNode {
        var fields: [String: JSONNode] = [:]
        for (column, value) in zip(columns, row(job)) {
            guard let value else {
                fields[column.name] = .null
                continue
            }
            switch column.type {
            case "bigint", "integer", "numeric": fields[column.name] = Double(value).map(JSONNode.number) ?? .string(value)
            default: fields[column.name] = .string(value)
            }
        }
        if let parent = job.parentID { fields["parent_id"] = .number(Double(parent)) }
        if let notes = job.notes { fields["notes"] = .string(notes) }
        return .object(fields)
    }
}
