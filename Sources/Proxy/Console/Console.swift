import Foundation
import Logging
import NIOCore
import PostgresWire

/// Runs admin-console commands against the proxy's state and says what to answer: result
/// sets with PostgreSQL types (so psql's `\x`, column lists and clients' type handling work),
/// command tags, or errors.
struct Console: Sendable {
    enum Reply: Sendable {
        case rows(columns: [(name: String, type: String)], rows: [[String?]], tag: String)
        case command(String)
        /// The command ran, with something to say (a NOTICE before its tag).
        case warning(ErrorFields, tag: String)
        case error(ErrorFields)
    }

    let proxy: ProxyContext
    /// The session asking (its own line in SHOW CLIENTS; it cannot KILL itself by mistake).
    let sessionID: Int
    /// The role whose jobs SHOW JOBS lists; nil (a superuser) for every job. A job's error
    /// and notes can quote source values, so operators see their own (JobFunctions.owns).
    var jobsOf: String? = nil

    func run(_ text: String) async -> [Reply] {
        var replies: [Reply] = []
        for parsed in ConsoleCommand.parseAll(text) {
            switch parsed {
            case .failure(let error):
                replies.append(.error(ErrorFields(severity: .error, sqlState: error.sqlState, message: error.message, hint: error.hint)))
                return replies
            case .success(let command):
                let reply = await run(command)
                replies.append(reply)
                if case .error = reply { return replies }
            }
        }
        return replies
    }

    func run(_ command: ConsoleCommand) async -> Reply {
        switch command {
        case .show(let topic): return await show(topic)
        case .reload: return await reload()
        case .pause(let database): return await pause(database)
        case .resume(let database):
            guard proxy.pauseGate.resume(database) else {
                if database != nil, proxy.pauseGate.pausedDatabases.all {
                    return .error(ErrorFields(severity: .error, sqlState: "55000", message: "every database is paused; RESUME without a database name lifts that"))
                }
                return .error(ErrorFields(severity: .error, sqlState: "55000", message: database.map { "database \"\($0)\" is not paused" } ?? "nothing is paused"))
            }
            proxy.logger.notice("console: RESUME", metadata: ["database": "\(database ?? "(all)")"])
            return .command("RESUME")
        case .killClient(let id): return kill(id)
        case .shutdown:
            proxy.logger.notice("console: SHUTDOWN")
            guard let shutdown = proxy.requestShutdown else {
                return .error(ErrorFields(severity: .error, sqlState: "0A000", message: "SHUTDOWN is not available in this proxy"))
            }
            shutdown()
            return .command("SHUTDOWN")
        }
    }

    // MARK: - SHOW

    private func show(_ topic: ConsoleCommand.Topic) async -> Reply {
        switch topic {
        case .help:
            return .rows(columns: [("command", "text"), ("description", "text")], rows: ConsoleCommand.help.map { [$0.0, $0.1] }, tag: "SHOW")
        case .version:
            return .rows(columns: [("version", "text")], rows: [[PgcloneVersion.display]], tag: "SHOW")
        case .config:
            return .rows(columns: [("key", "text"), ("value", "text"), ("default", "text"), ("changeable", "bool")],
                         rows: proxy.settingsReport().map { [$0.key, $0.value, $0.defaultValue, $0.changeable ? "t" : "f"] }, tag: "SHOW")
        case .clients:
            return .rows(columns: Self.clientColumns, rows: proxy.sessions.infos().map { info in
                let state = info.state
                return ["C", String(info.id), state.user, state.database, state.console ? "console" : state.state, state.clientAddress, String(state.clientPort),
                        Self.timestamp(info.connectTime), state.requestTime.map(Self.timestamp), state.tls ? "t" : "f", state.applicationName,
                        state.masked ? "yes" : "no", String(state.policyGeneration), state.waitingOnPause ? "t" : "f",
                        info.id == sessionID ? "t" : "f"]
            }, tag: "SHOW")
        case .servers:
            let backend = proxy.configuration.backend
            let (host, port): (String, String)
            switch backend.address {
            case .tcp(let h, let p): (host, port) = (h, String(p))
            case .unixSocket(let path): (host, port) = (path, "")
            }
            return .rows(columns: Self.serverColumns, rows: proxy.sessions.infos().filter { $0.state.serverConnected }.map { info in
                let state = info.state
                let serverState = state.state == "login" ? "login" : state.state == "active" ? "active" : "idle"
                return ["S", state.user, state.console ? proxy.configuration.stateDatabase : state.database, serverState, host, port, state.serverConnectTime.map(Self.timestamp),
                        state.requestTime.map(Self.timestamp), String(state.serverPID), String(info.id), state.masked ? "yes" : "no",
                        String(state.policyGeneration)]
            }, tag: "SHOW")
        case .stats:
            return .rows(columns: Self.statsColumns, rows: proxy.stats.snapshot.map { entry in
                let totals = entry.totals
                func average(_ total: Int) -> String { String(totals.requests == 0 ? 0 : total / totals.requests) }
                return [entry.database, String(totals.requests), String(totals.transactions), String(totals.bytesReceived), String(totals.bytesSent),
                        String(totals.requestMicroseconds), String(totals.maskedStatements), String(totals.rewrites), String(totals.refusals),
                        average(totals.requestMicroseconds), average(totals.bytesReceived), average(totals.bytesSent)]
            }, tag: "SHOW")
        case .policies:
            let database = proxy.configuration.stateDatabase
            let status = MaskingPolicyFunctions.status(proxy.policies, database: database, backstop: proxy.backstop?.state(of: database))
            guard case .rows(let columns, let rows) = status else { return .command("SHOW") }
            return .rows(columns: columns.map { ($0.name, $0.type) }, rows: rows, tag: "SHOW")
        case .jobs:
            guard let jobs = proxy.jobs else {
                return .error(ErrorFields(severity: .error, sqlState: "0A000", message: "background jobs are not available in this proxy"))
            }
            do {
                let visible = try await jobs.store.all().filter { job in jobsOf.map { $0 == job.role } ?? true }
                return .rows(columns: JobFunctions.columns.map { ($0.name, $0.type) }, rows: visible.map(JobFunctions.row), tag: "SHOW")
            } catch {
                return .error(ErrorFields(severity: .error, sqlState: "58000", message: "cannot read the jobs: \(StatePolicies.describe(error))"))
            }
        }
    }

    static let clientColumns: [(name: String, type: String)] = [
        ("type", "text"), ("id", "integer"), ("user", "text"), ("database", "text"), ("state", "text"), ("addr", "text"), ("port", "integer"),
        ("connect_time", "timestamptz"), ("request_time", "timestamptz"), ("tls", "bool"), ("application_name", "text"),
        ("masked", "text"), ("policy_generation", "integer"), ("paused", "bool"), ("this_session", "bool"),
    ]

    static let serverColumns: [(name: String, type: String)] = [
        ("type", "text"), ("user", "text"), ("database", "text"), ("state", "text"), ("addr", "text"), ("port", "integer"),
        ("connect_time", "timestamptz"), ("request_time", "timestamptz"), ("remote_pid", "integer"), ("link", "integer"),
        ("masked", "text"), ("policy_generation", "integer"),
    ]

    static let statsColumns: [(name: String, type: String)] = [
        ("database", "text"), ("total_query_count", "bigint"), ("total_xact_count", "bigint"), ("total_received", "bigint"), ("total_sent", "bigint"),
        ("total_query_time", "bigint"), ("total_masked", "bigint"), ("total_rewrites", "bigint"), ("total_refusals", "bigint"),
        ("avg_query_time", "bigint"), ("avg_recv", "bigint"), ("avg_sent", "bigint"),
    ]

    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    // MARK: - Other commands

    private func reload() async -> Reply {
        proxy.logger.notice("console: RELOAD")
        let report = await proxy.reload()
        if let error = report.error {
            return .error(ErrorFields(severity: .error, sqlState: "22023", message: "RELOAD rejected: \(error)",
                                      detail: "The settings and policies in force stay as they were."))
        }
        return .command("RELOAD")
    }

    /// New transactions on `database` (or anywhere) wait; returns once none is active there.
    private func pause(_ database: String?) async -> Reply {
        proxy.pauseGate.pause(database)
        proxy.logger.notice("console: PAUSE", metadata: ["database": "\(database ?? "(all)")"])
        let deadline = ContinuousClock.now + proxy.configuration.shutdownGracePeriod
        while ContinuousClock.now < deadline {
            let busy = proxy.sessions.infos().contains { info in
                let state = info.state
                return info.id != sessionID && !state.console && (database == nil || state.database == database)
                    && (state.state == "active" || state.state == "idle in transaction")
            }
            if !busy { return .command("PAUSE") }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return .warning(ErrorFields(severity: .warning, sqlState: "57014", message: "PAUSE: transactions still running after \(proxy.configuration.shutdownGracePeriod.components.seconds) s; new ones wait"),
                        tag: "PAUSE")
    }

    private func kill(_ id: Int) -> Reply {
        guard id != sessionID else {
            return .error(ErrorFields(severity: .error, sqlState: "42P10", message: "KILL_CLIENT \(id) is this console session; disconnect instead"))
        }
        guard proxy.sessions.kill(id: id) else {
            return .error(ErrorFields(severity: .error, sqlState: "42704", message: "no client with id \(id)", hint: "SHOW CLIENTS lists the ids."))
        }
        proxy.logger.notice("console: KILL_CLIENT", metadata: ["client": "\(id)"])
        return .command("KILL_CLIENT")
    }
}

extension Console.Reply {
    /// The messages that carry this reply to the client.
    func encode(into buffer: inout ByteBuffer) {
        switch self {
        case .rows(let columns, let rows, let tag):
            let description = RowDescription(columns: columns.map { RowDescription.Column(name: $0.name, dataTypeOID: Console.oid(of: $0.type)) })
            BackendMessage.rowDescription(description).encode(into: &buffer)
            for row in rows {
                BackendMessage.dataRow(DataRow(values: row.map { $0.map { ByteBuffer(string: $0) } })).encode(into: &buffer)
            }
            BackendMessage.commandComplete(tag: tag).encode(into: &buffer)
        case .command(let tag):
            BackendMessage.commandComplete(tag: tag).encode(into: &buffer)
        case .warning(let fields, let tag):
            BackendMessage.noticeResponse(fields).encode(into: &buffer)
            BackendMessage.commandComplete(tag: tag).encode(into: &buffer)
        case .error(let fields):
            BackendMessage.errorResponse(fields).encode(into: &buffer)
        }
    }
}

extension Console {
    static func oid(of type: String) -> UInt32 {
        switch type {
        case "bool": return 16
        case "bigint": return 20
        case "integer": return 23
        case "json": return 114
        case "numeric": return 1700
        case "timestamptz": return 1184
        default: return 25
        }
    }
}
