import CloneEngine
import Foundation
import Logging
import Masking
import NIOConcurrencyHelpers
import PQ
import ServiceLifecycle

/// Runs the `PrivilegeReconciler` on every database of the target: when the policies
/// change, every few seconds on the databases that hold policy tables (a GRANT made since
/// is brought back in line), and at once when a session or an admin call asks.
///
/// Each pass connects as the service role, reconciles, and disconnects: an idle service
/// connection would make a plain `DROP DATABASE` fail.
public final class ServerBackstop: Service, Sendable {
    /// What the last pass on one database found.
    public struct DatabaseState: Sendable {
        public var relations: [PrivilegeReconciler.Relation]
        public var error: String?
        public var policyVersion: Int
        public var checkedAt: Date
    }

    enum Event: Sendable {
        case tick
        case database(String)
    }

    private let serviceConnInfo: ConnInfo
    private let policies: PolicyStore
    private let logger: Logger
    private let driftInterval: Duration
    private let fullScanInterval: Duration
    /// The databases to look after; nil means every database of the server. (Tests that share
    /// one server between proxies with different policies keep each proxy to its own.)
    private let databases: Set<String>?
    /// The state database whose policies the policy store reads.
    private let stateDatabase: String
    private let states = NIOLockedValueBox<[String: DatabaseState]>([:])
    /// Why the last listing of the databases failed (nil after a success).
    private let listError = NIOLockedValueBox<String?>(nil)
    private let pool: PQThreadPool
    private let events: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation

    public init(serviceConnInfo: ConnInfo, policies: PolicyStore, logger: Logger, databases: Set<String>? = nil, stateDatabase: String = "postgres",
                driftInterval: Duration = .seconds(5), fullScanInterval: Duration = .seconds(60), pool: PQThreadPool = .shared) {
        self.pool = pool
        self.databases = databases
        self.stateDatabase = stateDatabase
        self.serviceConnInfo = serviceConnInfo
        self.policies = policies
        self.logger = logger
        self.driftInterval = driftInterval
        self.fullScanInterval = fullScanInterval
        (events, continuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingNewest(256))
    }

    /// The last pass on `database`, if there was one.
    public func state(of database: String) -> DatabaseState? {
        states.withLockedValue { $0[database] }
    }

    /// Asks for a pass on `database` soon (a session saw a stale view or a leaky grant).
    public func nudge(_ database: String) {
        continuation.yield(.database(database))
    }

    public func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [continuation] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    continuation.yield(.tick)
                }
            }
            group.addTask { [self] in
                var seenVersion = -1
                var lastDrift = ContinuousClock.now
                var lastFullScan = ContinuousClock.now
                // The databases known to hold policy tables (or to have failed) are looked at
                // again every few seconds, also in the middle of a pass over every database: one
                // of those can take minutes on a busy server (each waits up to its lock
                // timeout), and a GRANT to a masked role must not stand that long.
                func driftIfDue() async {
                    guard ContinuousClock.now - lastDrift >= driftInterval else { return }
                    lastDrift = ContinuousClock.now
                    let busy = states.withLockedValue { $0.filter { !$0.value.relations.isEmpty || $0.value.error != nil }.keys.sorted() }
                    for database in busy { await reconcile(database: database) }
                }
                for await event in events.cancelOnGracefulShutdown() {
                    let now = ContinuousClock.now
                    switch event {
                    case .database(let name):
                        await reconcile(database: name)
                    case .tick:
                        let version = policies.current.version
                        if version != seenVersion || now - lastFullScan >= fullScanInterval {
                            seenVersion = version
                            lastFullScan = now
                            lastDrift = now
                            await reconcileAll(between: driftIfDue)
                        } else {
                            await driftIfDue()
                        }
                    }
                }
            }
            try? await gracefulShutdown()
            group.cancelAll()
        }
    }

    /// One pass over every database that accepts connections; `between` runs after each one.
    func reconcileAll(between: () async -> Void = {}) async {
        var databases: [String]
        do {
            let connection = try await connect(to: nil)
            databases = try await connection.exec("""
                SELECT datname::pg_catalog.text FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname
                """).strings.compactMap { $0 }
            if let scope = self.databases { databases = databases.filter(scope.contains) }
            await Self.dropExpiredCallLogins(connection, logger: logger)
            if let error = listError.withLockedValue({ error in defer { error = nil }; return error }) {
                logger.notice("server backstop reaches the server again", metadata: ["previous_error": "\(error)"])
            }
        } catch {
            if Task.isCancelled { return }
            // Once per outage, not once a minute.
            let text = Self.describe(error)
            if listError.withLockedValue({ previous in defer { previous = text }; return previous == nil }) {
                logger.warning("server backstop: the service role cannot reach the server to list its databases", metadata: ["error": "\(text)"])
            }
            return
        }
        for database in databases {
            await reconcile(database: database)
            await between()
        }
        // Databases that are gone.
        states.withLockedValue { states in
            for name in states.keys where !databases.contains(name) { states[name] = nil }
        }
    }

    /// Throwaway logins of admin calls (`pgclone_call_...`, see CloneTarget) that a proxy died
    /// before dropping: past their VALID UNTIL no session can log in with them any more, and a
    /// live call drops its own within milliseconds of creating it. One that something still
    /// depends on stays (DROP ROLE says why, at debug level).
    static func dropExpiredCallLogins(_ connection: PQConnection, logger: Logger) async {
        guard let expired = try? await connection.query("""
            SELECT pg_catalog.quote_ident(rolname) FROM pg_catalog.pg_roles
            WHERE rolname OPERATOR(pg_catalog.~) $1 AND rolvaliduntil OPERATOR(pg_catalog.<) pg_catalog.now()
            """, [CloneTarget.throwawayLoginPattern]).strings.compactMap({ $0 }) else { return }
        for role in expired {
            do {
                try await connection.exec("DROP ROLE \(role)")
                logger.notice("dropped a throwaway login an admin call left behind", metadata: ["role": "\(role)"])
            } catch {
                logger.debug("cannot drop a throwaway login an admin call left behind", metadata: ["role": "\(role)", "error": "\(Self.describe(error))"])
            }
        }
    }

    /// Reconciles one database now and returns what it found.
    @discardableResult
    public func reconcile(database: String) async -> DatabaseState {
        let policySet = policies.current
        if let scope = databases, !scope.contains(database) {
            return DatabaseState(relations: [], error: "this proxy's server backstop does not look after database \(database)", policyVersion: policySet.version, checkedAt: Date())
        }
        let applicable = policySet.policies.filter { $0.database == nil || $0.database == database }
        var state = DatabaseState(relations: [], error: nil, policyVersion: policySet.version, checkedAt: Date())
        do {
            let connection = try await connect(to: database)
            let reconciler = PrivilegeReconciler(connection: connection, ownership: ownership)
            // Outdated mask views stop serving before the pass (which may wait on locks) starts.
            do {
                let ended = try await reconciler.withdrawOutdatedViews(applicable)
                if ended > 0 {
                    logger.notice("sessions reading outdated mask views were ended", metadata: ["database": "\(database)", "count": "\(ended)"])
                }
            } catch {
                logger.warning("server backstop could not withdraw outdated mask views", metadata: ["database": "\(database)", "error": "\(Self.describe(error))"])
            }
            state.relations = try await reconciler.reconcile(applicable)
            for relation in state.relations where !relation.changes.isEmpty {
                logger.info("server backstop changed privileges", metadata: [
                    "database": "\(database)", "table": "\(relation.schema).\(relation.name)", "changes": "\(relation.changes)"])
            }
            let previous = self.state(of: database)
            if let error = previous?.error {
                logger.notice("server backstop reaches the database again", metadata: ["database": "\(database)", "previous_error": "\(error)"])
            }
            for relation in state.relations where !relation.enforced {
                let before = previous?.relations.first { $0.oid == relation.oid }
                if before?.reason != relation.reason {
                    logger.warning("masking policy not backed up by the server", metadata: [
                        "database": "\(database)", "table": "\(relation.schema).\(relation.name)", "reason": "\(relation.reason ?? "")"])
                }
            }
        } catch {
            // Stopping: a pass cut short by cancellation is not a failure of the server.
            if Task.isCancelled { return state }
            state.error = Self.describe(error)
            // Once per outage (the error's text may change between attempts).
            if self.state(of: database)?.error == nil {
                logger.warning("server backstop failed", metadata: ["database": "\(database)", "error": "\(state.error ?? "")"])
            } else {
                logger.debug("server backstop still failing", metadata: ["database": "\(database)", "error": "\(state.error ?? "")"])
            }
        }
        states.withLockedValue { $0[database] = state }
        return state
    }

    /// The policy sources this proxy speaks for: its own policy directory (named with the host,
    /// so that proxies on other machines with the same path are told apart) and the state database.
    var ownership: PrivilegeReconciler.Ownership {
        PrivilegeReconciler.Ownership(
            files: policies.directory.map { "files:\(Self.hostName):\(URL(fileURLWithPath: $0).standardizedFileURL.path)" },
            state: policies.hasStateSource ? "state:\(stateDatabase)" : nil,
            stateReadAt: policies.status.stateReadAt)
    }

    static let hostName = ProcessInfo.processInfo.hostName

    private func connect(to database: String?) async throws -> PQConnection {
        var info = serviceConnInfo
        if let database { info["dbname"] = database }
        info["application_name"] = "pgclone backstop"
        return try await PQConnection.connect(info.connectionString, label: "backstop", pool: pool)
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? PQError { return error.message.split(separator: "\n").first.map { String($0).trimmingCharacters(in: .whitespaces) } ?? error.message }
        return "\(error)"
    }
}
