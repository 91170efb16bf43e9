import CloneEngine
import Foundation
import Logging
import NIOConcurrencyHelpers
import PQ
import ServiceLifecycle

/// Runs the background jobs (`table_async`, `schema_async`): a service of `pgclone serve`.
///
/// Jobs live in the state database (`JobStore`); this proxy claims pending ones it can run
/// (SKIP LOCKED: a job runs once whatever the number of proxies), reports progress there,
/// polls for cancel requests, and beats a heartbeat: a job whose proxy stops beating (killed)
/// becomes `interrupted` at the next start of any proxy, and `resume` runs it again from its
/// first table not completed. On shutdown its running jobs are stopped cleanly (the table in
/// flight rolls back) and become `interrupted`.
///
/// A source password given in a call stays in this process's memory only: the stored conninfo
/// has none, and a job that needs one is run by the proxy that took the call (or resumed with
/// the conninfo given again).
public final class JobRunner: Service, Sendable {
    let store: JobStore
    let serviceConnInfo: ConnInfo
    let logger: Logger
    /// Who this proxy is in `claimed_by`.
    let owner: String
    let maximumRunning: Int
    let pool: PQThreadPool
    let pollInterval: Duration
    /// A running job's proxy is taken for gone after this many seconds without a heartbeat.
    let abandonedAfter: Int

    private let secrets = NIOLockedValueBox<[Int64: String]>([:])
    private let running = NIOLockedValueBox<[Int64: Task<Void, Never>]>([:])
    private let cancelling = NIOLockedValueBox<Set<Int64>>([])
    private let lastAbandonedCheck = NIOLockedValueBox(ContinuousClock.now)
    private let wake: AsyncStream<Void>
    private let wakeContinuation: AsyncStream<Void>.Continuation

    public init(serviceConnInfo: ConnInfo, stateDatabase: String, logger: Logger, maximumRunning: Int = 2,
                pollInterval: Duration = .milliseconds(500), abandonedAfter: Int = 10, pool: PQThreadPool = .shared, storePool: PQThreadPool? = nil) {
        // The clones run on `pool`; what records them on `storePool`, which they cannot fill.
        self.store = JobStore(serviceConnInfo: serviceConnInfo, database: stateDatabase, pool: storePool ?? pool)
        self.pool = pool
        self.serviceConnInfo = serviceConnInfo
        self.logger = logger
        self.owner = "\(ProcessInfo.processInfo.hostName):\(ProcessInfo.processInfo.processIdentifier):\(UInt32.random(in: 0...UInt32.max))"
        self.maximumRunning = maximumRunning
        self.pollInterval = pollInterval
        self.abandonedAfter = abandonedAfter
        (wake, wakeContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    // MARK: - Calls from the admin API

    /// Records a job and wakes the runner; returns the job's id.
    func submit(operation: String, caller: AdminCaller, schema: String, table: String?, targetName: String?, includeData: Bool,
                options: String?, source: String) async throws -> Int64 {
        let (stored, hasPassword) = try Self.withoutPassword(source)
        // Superusers' jobs may use the proxy's own credentials for the source, as their calls do.
        let flags = caller.isSuperuser ? "superuser" : nil
        let id = try await store.create(operation: operation, database: caller.database, role: caller.role, schema: schema, table: table,
                                        targetName: targetName, includeData: includeData, options: options,
                                        source: stored, needsSecret: hasPassword, flags: flags)
        if hasPassword { secrets.withLockedValue { $0[id] = source } }
        logger.info("job queued", metadata: ["job_id": "\(id)", "op_type": "\(operation)", "schema": "\(schema)", "role": "\(caller.role)"])
        wakeContinuation.yield()
        return id
    }

    /// Stops a job: a pending one at once; a running one here is cancelled and waited for; one
    /// running on another proxy is asked to stop and waited for a moment.
    func cancel(_ id: Int64) async throws -> JobStore.Status? {
        guard let status = try await store.cancel(id) else { return nil }
        guard status == .running else { return status }
        if let task = running.withLockedValue({ $0[id] }) {
            cancelling.withLockedValue { _ = $0.insert(id) }
            task.cancel()
            await task.value
        } else {
            for _ in 0..<20 {
                if let job = try await store.job(id), job.status != .running { return job.status }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        return try await store.job(id)?.status
    }

    /// A source conninfo as the jobs table keeps it (no password: held in memory only), and
    /// whether it had one.
    static func withoutPassword(_ source: String) throws -> (stored: String, hasPassword: Bool) {
        var parsed: ConnInfo
        do {
            parsed = try ConnInfo(parsing: source)
        } catch {
            throw AdminError("08001", "could not connect to source: \(error)")
        }
        let hasPassword = parsed["password"] != nil
        parsed["password"] = nil
        return (parsed.connectionString, hasPassword)
    }

    /// Makes a stopped job pending again; `source`, when given, is the conninfo it uses from now
    /// on (round 29: it was ignored while this proxy still held the old password).
    func resume(_ id: Int64, source: String?) async throws -> JobStore.Job? {
        guard let existing = try await store.job(id) else { return nil }
        if let source {
            let (stored, hasPassword) = try Self.withoutPassword(source)
            // The old password goes first: the job must not be claimed with it against the new source.
            secrets.withLockedValue { $0[id] = nil }
            let job = try await store.resume(id, source: stored, needsSecret: hasPassword)
            if job != nil, hasPassword { secrets.withLockedValue { $0[id] = source } }
            wakeContinuation.yield()
            return job
        }
        if existing.needsSecret && secrets.withLockedValue({ $0[id] }) == nil {
            throw AdminError("22023", "job \(id) needs its source password again: pgclone does not store passwords",
                             hint: "Call pgclone.resume(\(id), '<source conninfo with password>').")
        }
        let job = try await store.resume(id)
        wakeContinuation.yield()
        return job
    }

    // MARK: - The service

    public func run() async throws {
        do {
            let stale = try await store.interruptAbandoned(olderThan: abandonedAfter, except: owner)
            if stale > 0 { logger.notice("jobs of a proxy that stopped are now interrupted (resume them with pgclone.resume)", metadata: ["count": "\(stale)"]) }
        } catch {
            logger.warning("cannot read the jobs in the state database", metadata: ["error": "\(StatePolicies.describe(error))"])
        }
        let ticker = Task { [wakeContinuation, pollInterval] in
            while !Task.isCancelled {
                try? await Task.sleep(for: pollInterval)
                wakeContinuation.yield()
            }
        }
        // On graceful shutdown no job is claimed any more, and the loop goes on (heartbeats, cancel
        // requests) until the running jobs end; when the grace period is over the task is cancelled,
        // the stream ends, and the jobs still running are stopped.
        var failing = false
        for await _ in wake {
            let draining = Task.isShuttingDownGracefully
            if draining && running.withLockedValue({ $0.isEmpty }) { break }
            do {
                try await tick(claiming: !draining)
                if failing { logger.notice("the jobs table in the state database is reachable again") }
                failing = false
            } catch {
                if Task.isCancelled { break }
                if !failing { logger.warning("cannot run jobs: the state database is not reachable", metadata: ["error": "\(StatePolicies.describe(error))"]) }
                failing = true
            }
        }
        ticker.cancel()
        // Stopped: running jobs stop cleanly (the table in flight rolls back) and become interrupted (resumable).
        let tasks = running.withLockedValue { Array($0.values) }
        if !tasks.isEmpty { logger.notice("stopping running jobs; they stay resumable", metadata: ["count": "\(tasks.count)"]) }
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
        try? await Task { [store, owner] in try await store.interruptMine(owner: owner) }.value
        store.closeIdleConnections()
    }

    private func tick(claiming: Bool) async throws {
        // Now and then: jobs of a proxy that stopped beating (killed) become interrupted.
        let now = ContinuousClock.now
        if lastAbandonedCheck.withLockedValue({ last in defer { if now - last >= .seconds(5) { last = now } }; return now - last >= .seconds(5) }) {
            let stale = try await store.interruptAbandoned(olderThan: abandonedAfter, except: owner)
            if stale > 0 { logger.notice("jobs of a proxy that stopped are now interrupted (resume them with pgclone.resume)", metadata: ["count": "\(stale)"]) }
        }
        let ids = running.withLockedValue { Array($0.keys) }
        if !ids.isEmpty {
            try await store.beat(owner: owner)
            for id in try await store.cancelRequested(among: ids) {
                cancelling.withLockedValue { _ = $0.insert(id) }
                running.withLockedValue { $0[id] }?.cancel()
            }
        }
        while claiming && running.withLockedValue({ $0.count }) < maximumRunning {
            let held = Set(secrets.withLockedValue { $0.keys })
            guard let job = try await store.claim(owner: owner, secretsHeld: held) else { return }
            let task = Task { await self.execute(job) }
            running.withLockedValue { $0[job.id] = task }
        }
    }

    // MARK: - One job

    private func execute(_ job: JobStore.Job) async {
        defer {
            running.withLockedValue { $0[job.id] = nil }
            wakeContinuation.yield()
        }
        let source = secrets.withLockedValue { $0[job.id] } ?? job.source
        let credentials: SourceCredentials = job.flags == "superuser" ? .any : .ownPasswordOnly
        let engine = CloneEngine(sourceCredentials: credentials, pool: pool)
        let target = CloneTarget(serviceConnInfo: serviceConnInfo, database: job.database, role: job.role, pool: pool)
        // A resumed job's counters go on from what its first run committed (round 44f L1: they
        // covered the resumed part only).
        let resuming = !job.completedTables.isEmpty
        // (What its finished tables hold: rows_copied also counted the parts of a table a killed
        // run was copying, which this run copies again.)
        let reporter = JobProgressReporter(store: store, jobID: job.id, owner: owner, logger: logger,
                                           rows: resuming ? job.rowsCommitted ?? job.rowsCopied : 0,
                                           bytes: resuming ? job.bytesCommitted ?? job.bytesCopied : 0)
        logger.info("job started", metadata: ["job_id": "\(job.id)", "op_type": "\(job.operation)"])
        var status = JobStore.Status.completed
        var errorText: String?
        var notes: String?
        // A resumed job read the source at more than one moment: its result says so to the end.
        let resumed = (job.notes ?? "").components(separatedBy: "; ").filter { $0.hasPrefix("resumed at ") }
        do {
            var options = try CloneOptions.parse(job.options)
            options.copyData = job.includeData
            // A resumed job: tables already done are left as they are.
            if !job.completedTables.isEmpty && options.conflict == .error { options.conflict = .skip }
            switch job.operation {
            case "table":
                await reporter.report(phase: "copying", table: nil, tablesTotal: 1, tablesCompleted: 0, rows: nil, completedTable: nil)
                let outcome = try await engine.cloneTable(source: source, target: target, schema: job.schema ?? "", table: job.table ?? "",
                                                          targetName: job.targetName, options: options)
                await reporter.report(phase: "completed", table: nil, tablesTotal: 1, tablesCompleted: 1, rows: Int64(outcome.rows ?? 0),
                                      bytes: Int64(outcome.bytes), completedTable: "\(job.schema ?? "").\(job.table ?? "")")
                notes = ([CloneMessages.table(outcome)] + outcome.notes + resumed).joined(separator: "; ")
            default:
                if options.parallel > 1 {
                    await reporter.useWorkers(try await store.createWorkers(of: job, count: options.parallel))
                }
                let summary = try await engine.cloneSchema(source: source, target: target, schema: job.schema ?? "", options: options, progress: reporter)
                notes = (["OK: cloned schema \(job.schema ?? "") (\(summary.counts))"] + summary.notes + resumed).joined(separator: "; ")
            }
        } catch {
            status = JobLifecycle.outcome(failed: true, cancelRequested: cancelling.withLockedValue({ $0.remove(job.id) }) != nil,
                                          stopping: Task.isCancelled)
            if status == .failed {
                // With what the synchronous call's DETAIL and HINT say (what is already on the
                // target, how to go on): round 35.
                errorText = (error as? CloneError).map { failure in
                    ([failure.message] + [failure.detail, failure.hint.map { "HINT: \($0)" }].compactMap { $0 }).joined(separator: "\n")
                } ?? "\(error)"
            }
        }
        // Recorded outside the job's task: a cancelled task's statements do not run.
        let (store, logger, finalStatus, finalError, finalNotes) = (self.store, self.logger, status, errorText, notes)
        await Task {
            await reporter.finishWorkers(status: finalStatus)
            do {
                try await store.finish(job.id, owner: owner, status: finalStatus, error: finalError, notes: finalNotes)
            } catch {
                logger.error("cannot record the end of a job", metadata: ["job_id": "\(job.id)", "error": "\(StatePolicies.describe(error))"])
            }
        }.value
        if status == .completed || status == .cancelled { secrets.withLockedValue { $0[job.id] = nil } }
        var metadata: Logger.Metadata = ["job_id": "\(job.id)", "status": "\(status.rawValue)"]
        if let errorText { metadata["error"] = "\(errorText)" }
        logger.info("job ended", metadata: metadata)
    }
}

/// Progress of one job, written to the jobs table in order (the engine calls from its workers;
/// the writes go through one queue). Worker rows, when the job has them, show the table each
/// worker is copying.
final class JobProgressReporter: CloneProgress, Sendable {
    private enum Event: Sendable {
        case update(phase: String?, table: String?, tablesTotal: Int?, tablesCompleted: Int?, rows: Int64?, completedTable: String?, job: Int64, bytes: Int64? = nil,
                    committed: (rows: Int64, bytes: Int64)? = nil)
    }

    let store: JobStore
    let jobID: Int64
    /// The claim this run holds: only its writes count.
    let owner: String
    let logger: Logger
    private let state = NIOLockedValueBox(State())
    private let events: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation
    private let writer: Task<Void, Never>

    private struct State {
        var total = 0
        var completed = 0
        var rows: Int64 = 0
        var bytes: Int64 = 0
        var workers: [Int64] = []
        /// Which table each worker row is on (nil: free).
        var busy: [Int64: String] = [:]
        /// Rows of tables copied in parts, counted as each part commits.
        var partRows: [String: Int64] = [:]
        var partBytes: [String: Int64] = [:]
    }

    init(store: JobStore, jobID: Int64, owner: String, logger: Logger, rows: Int64 = 0, bytes: Int64 = 0) {
        self.store = store
        self.jobID = jobID
        self.owner = owner
        self.logger = logger
        state.withLockedValue { state in
            state.rows = rows
            state.bytes = bytes
        }
        let (events, continuation) = AsyncStream.makeStream(of: Event.self)
        self.events = events
        self.continuation = continuation
        self.writer = Task {
            for await event in events {
                switch event {
                case .update(let phase, let table, let total, let completed, let rows, let done, let job, let bytes, let committed):
                    try? await store.progress(job, owner: owner, phase: phase, table: table, tablesTotal: total, tablesCompleted: completed, rows: rows, bytes: bytes,
                                              completedTable: done, committedRows: committed?.rows, committedBytes: committed?.bytes)
                }
            }
        }
    }

    func useWorkers(_ ids: [Int64]) {
        state.withLockedValue { $0.workers = ids }
    }

    func report(phase: String?, table: String?, tablesTotal: Int?, tablesCompleted: Int?, rows: Int64?, bytes: Int64? = nil, completedTable: String?) async {
        continuation.yield(.update(phase: phase, table: table, tablesTotal: tablesTotal, tablesCompleted: tablesCompleted, rows: rows, completedTable: completedTable,
                                   job: jobID, bytes: bytes))
    }

    func start(tables: Int) {
        state.withLockedValue { $0.total = tables }
        continuation.yield(.update(phase: "copying", table: nil, tablesTotal: tables, tablesCompleted: 0, rows: nil, completedTable: nil, job: jobID))
    }

    func tableStarted(_ name: String) {
        let worker = state.withLockedValue { state -> Int64? in
            guard let free = state.workers.first(where: { state.busy[$0] == nil }) else { return nil }
            state.busy[free] = name
            return free
        }
        continuation.yield(.update(phase: "copying", table: name, tablesTotal: nil, tablesCompleted: nil, rows: nil, completedTable: nil, job: jobID))
        if let worker {
            continuation.yield(.update(phase: "copying", table: name, tablesTotal: nil, tablesCompleted: nil, rows: nil, completedTable: nil, job: worker))
        }
    }

    func partFinished(_ name: String, rows: Int, bytes: Int) {
        let (allRows, allBytes) = state.withLockedValue { state -> (Int64, Int64) in
            state.partRows[name, default: 0] += Int64(rows)
            state.partBytes[name, default: 0] += Int64(bytes)
            state.rows += Int64(rows)
            state.bytes += Int64(bytes)
            return (state.rows, state.bytes)
        }
        continuation.yield(.update(phase: "copying", table: name, tablesTotal: nil, tablesCompleted: nil, rows: allRows, completedTable: nil, job: jobID,
                                   bytes: allBytes))
    }

    func tableFinished(_ name: String, rows: Int, bytes: Int) {
        let (completed, total, allRows, worker, workerRows, allBytes, committed) = state.withLockedValue {
            state -> (Int, Int, Int64, Int64?, Int64, Int64, (rows: Int64, bytes: Int64)) in
            state.completed += 1
            state.rows += Int64(rows) - (state.partRows.removeValue(forKey: name) ?? 0)
            state.bytes += Int64(bytes) - (state.partBytes.removeValue(forKey: name) ?? 0)
            let worker = state.busy.first(where: { $0.value == name })?.key
            if let worker { state.busy[worker] = nil }
            // The finished tables alone (not the parts of others still in flight).
            let committed = (state.rows - state.partRows.values.reduce(0, +), state.bytes - state.partBytes.values.reduce(0, +))
            return (state.completed, state.total, state.rows, worker, Int64(rows), state.bytes, committed)
        }
        continuation.yield(.update(phase: "copying", table: nil, tablesTotal: total, tablesCompleted: completed, rows: allRows, completedTable: name, job: jobID,
                                   bytes: allBytes, committed: committed))
        if let worker {
            continuation.yield(.update(phase: "waiting", table: nil, tablesTotal: nil, tablesCompleted: nil, rows: workerRows, completedTable: name, job: worker))
        }
    }

    func stepStarted(_ step: String) {
        continuation.yield(.update(phase: step, table: nil, tablesTotal: nil, tablesCompleted: nil, rows: nil, completedTable: nil, job: jobID))
    }

    /// Waits for the queued writes, then ends the worker rows. A job that did not complete
    /// drops the rows of parts whose table never finished (the table is dropped with them;
    /// round 35 J4: rows_copied counted rows the target no longer held).
    func finishWorkers(status: JobStore.Status) async {
        if status != .completed {
            let (rows, bytes, dropped) = state.withLockedValue { state -> (Int64, Int64, Bool) in
                let dropped = !state.partRows.isEmpty
                state.rows -= state.partRows.values.reduce(0, +)
                state.bytes -= state.partBytes.values.reduce(0, +)
                state.partRows = [:]
                state.partBytes = [:]
                return (state.rows, state.bytes, dropped)
            }
            if dropped {
                continuation.yield(.update(phase: nil, table: nil, tablesTotal: nil, tablesCompleted: nil, rows: rows, completedTable: nil, job: jobID, bytes: bytes))
            }
        }
        continuation.finish()
        await writer.value
        for worker in state.withLockedValue({ $0.workers }) {
            try? await store.finish(worker, owner: owner, status: status, error: nil, notes: nil)
        }
    }
}
