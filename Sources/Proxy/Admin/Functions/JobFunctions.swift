import CloneEngine
import Foundation
import JSON

/// The background-job functions of the admin API: `table_async`, `schema_async`, `progress`,
/// `progress_detail`, `jobs`, the view `jobs_view`, `cancel`, `clear_jobs` and `resume`.
enum JobFunctions {
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

    static let all: [any AdminFunction.Type] = [TableAsync.self, SchemaAsync.self, Progress.self, Jobs.self, ProgressDetail.self, JobsView.self,
                                               Cancel.self, ClearJobs.self, Resume.self]

    /// `pgclone.table_async(...)`: the arguments of `pgclone.table`; returns the job's id.
    struct TableAsync: AdminFunction {
        static let name = "table_async"
        static let parameters = CloneFunctions.Table.parameters
        static let result = AdminResultShape.scalar("bigint")
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            try await submit(call, operation: "table", table: call.text("table_name"), targetName: CloneFunctions.name(call.optionalText("target_name")))
        }
    }

    /// `pgclone.schema_async(...)`: the arguments of `pgclone.schema`; returns the job's id.
    struct SchemaAsync: AdminFunction {
        static let name = "schema_async"
        static let parameters = CloneFunctions.Schema.parameters
        static let result = AdminResultShape.scalar("bigint")
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            try await submit(call, operation: "schema", table: nil, targetName: nil)
        }
    }

    /// Queues a clone with the call's arguments (its options checked now, not when it runs).
    static func submit(_ call: AdminCall, operation: String, table: String?, targetName: String?) async throws -> AdminResult {
        let options = try call.optionalText("options")
        _ = try CloneOptions.parse(options)
        let id = try await call.jobs().submit(operation: operation, caller: call.caller, schema: call.text("schema_name"), table: table,
                                              targetName: targetName, includeData: call.bool("include_data", default: true), options: options,
                                              source: call.text("source_conninfo"))
        return .value(String(id), type: "bigint")
    }

    /// `pgclone.progress(job_id)`: one job as JSON.
    struct Progress: AdminFunction {
        static let name = "progress"
        static let parameters: [AdminParameter] = [.required("job_id", "int8")]
        static let result = AdminResultShape.scalar("json")
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            let id = try call.arguments.bigint("job_id")
            let job = try await JobFunctions.ownJob(id, call)
            return .value(JobFunctions.json(job).text, type: "json")
        }
    }

    /// `pgclone.jobs()`: every job as a JSON array.
    struct Jobs: AdminFunction {
        static let name = "jobs"
        static let parameters: [AdminParameter] = []
        static let result = AdminResultShape.scalar("json")
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            .value(JSONNode.array(try await JobFunctions.ownJobs(call).map(JobFunctions.json)).text, type: "json")
        }
    }

    /// `pgclone.progress_detail()`: every job as rows (guide test 17's columns).
    struct ProgressDetail: AdminFunction {
        static let name = "progress_detail"
        static let parameters: [AdminParameter] = []
        static let result = AdminResultShape.rows(JobFunctions.columns)
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            .rows(columns: JobFunctions.columns, rows: try await JobFunctions.ownJobs(call).map(JobFunctions.row))
        }
    }

    /// The relation `pgclone.jobs_view`: the rows of `progress_detail()`.
    struct JobsView: AdminFunction {
        static let name = "jobs_view"
        static let parameters: [AdminParameter] = []
        static let result = AdminResultShape.rows(JobFunctions.columns)
        static func run(_ call: inout AdminCall) async throws -> AdminResult { try await ProgressDetail.run(&call) }
    }

    /// `pgclone.cancel(job_id)`: stops a job; tables already done stay.
    struct Cancel: AdminFunction {
        static let name = "cancel"
        static let parameters: [AdminParameter] = [.required("job_id", "int8")]
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            let id = try call.arguments.bigint("job_id")
            let job = try await JobFunctions.ownJob(id, call)
            if let parent = job.parentID {
                throw AdminError("55000", "job \(id) is a worker of job \(parent); cancel job \(parent)")
            }
            guard let status = try await call.jobs().cancel(id) else { throw AdminError("P0002", "job \(id) does not exist") }
            switch status {
            case .cancelled: return .text("OK: job \(id) cancelled")
            case .completed, .failed: return .text("OK: job \(id) had already ended (\(status.rawValue))")
            default: return .text("OK: job \(id) is \(status.rawValue)")
            }
        }
    }

    /// `pgclone.clear_jobs()`: removes finished jobs (not running, pending or interrupted ones).
    struct ClearJobs: AdminFunction {
        static let name = "clear_jobs"
        static let parameters: [AdminParameter] = []
        static let result = AdminResultShape.scalar("integer")
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            .value(String(try await call.jobs().store.clearFinished(role: JobFunctions.ownRole(call.caller))), type: "integer")
        }
    }

    /// `pgclone.resume(job_id [, source_conninfo])`: runs a stopped job again from its first table not done.
    struct Resume: AdminFunction {
        static let name = "resume"
        static let parameters: [AdminParameter] = [.required("job_id", "int8"), .optional("source_conninfo")]
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            let id = try call.arguments.bigint("job_id")
            let runner = try call.jobs()
            let own = try await JobFunctions.ownJob(id, call)
            if let parent = own.parentID {
                throw AdminError("55000", "job \(id) is a worker of job \(parent); resume job \(parent)")
            }
            if own.flags == "superuser" && !call.caller.isSuperuser {
                // Such a job may reach the source with the proxy's own credentials.
                throw AdminError("42501", "job \(id) was started by a superuser; only a superuser can resume it")
            }
            guard let job = try await runner.resume(id, source: try call.optionalText("source_conninfo")) else {
                if let existing = try await runner.store.job(id) {
                    throw AdminError("55000", "job \(id) is \(existing.status.rawValue); only interrupted, failed or cancelled jobs can be resumed")
                }
                throw AdminError("P0002", "job \(id) does not exist")
            }
            let done = job.completedTables.count
            return .text("OK: job \(job.id) resumed (\(done) \(done == 1 ? "table" : "tables") already done)")
        }
    }

    /// Whether `caller` may see and act on `job`: a superuser on every job, anyone else on the
    /// jobs its own role started. A job's error and notes can quote source values, its source
    /// names servers, and resuming one with a new conninfo points it elsewhere.
    static func owns(_ caller: AdminCaller, _ job: JobStore.Job) -> Bool {
        ownRole(caller).map { $0 == job.role } ?? true
    }

    /// The role whose jobs the caller sees; nil for a superuser (every job).
    static func ownRole(_ caller: AdminCaller) -> String? {
        caller.isSuperuser ? nil : caller.role
    }

    /// Job `id` when the caller may see it; otherwise it "does not exist" (as for any id).
    static func ownJob(_ id: Int64, _ call: AdminCall) async throws -> JobStore.Job {
        guard let job = try await call.jobs().store.job(id), owns(call.caller, job) else { throw AdminError("P0002", "job \(id) does not exist") }
        return job
    }

    /// The jobs the caller may see.
    static func ownJobs(_ call: AdminCall) async throws -> [JobStore.Job] {
        try await call.jobs().store.all().filter { owns(call.caller, $0) }
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
