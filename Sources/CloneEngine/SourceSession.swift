import PQ

/// Read access to the source: one REPEATABLE READ, READ ONLY transaction whose
/// snapshot every further source connection adopts, so that all reads of one
/// call see the same moment of the source.
final class SourceSession: Sendable {
    let primary: PQConnection
    let snapshot: String?
    private let conninfo: String
    private let pool: PQThreadPool

    private init(primary: PQConnection, snapshot: String?, conninfo: String, pool: PQThreadPool) {
        self.primary = primary
        self.snapshot = snapshot
        self.conninfo = conninfo
        self.pool = pool
    }

    static func open(_ given: String, credentials: SourceCredentials = .any, pool: PQThreadPool = .shared) async throws(CloneError) -> SourceSession {
        // Parse first: libpq's own connect errors for a malformed string can quote pieces of it.
        let parsed: ConnInfo
        do {
            parsed = try ConnInfo(parsing: given)
        } catch {
            throw CloneError("08001", "could not connect to source: \(error)")
        }
        let conninfo = try credentials.conninfo(parsed, given: given)
        let connection: PQConnection
        do {
            connection = try await PQConnection.connect(conninfo, label: "source", pool: pool)
        } catch let error as PQError {
            throw CloneError("08001", "could not connect to source: \(error.message)")
        } catch {
            throw CloneError("08001", "could not connect to source: \(error)")
        }
        if credentials == .ownPasswordOnly, (try? await connection.usedPassword()) != true {
            throw CloneError("2F003", "password is required for the source connection",
                             detail: "The source server did not ask for the password given in the connection string; a caller who is not a superuser may only clone with credentials of their own.",
                             hint: "Use a source login that authenticates with a password (not trust, peer, ident or certificates), or call as a superuser.")
        }
        do {
            // Deparsed definitions come out schema-qualified with an empty search_path. With
            // row_security off, a table whose policies would hide rows from this role is an
            // error, not a silently partial clone (pg_dump does the same).
            try await connection.exec("SET search_path = ''; SET statement_timeout = 0; SET lock_timeout = '30s'; SET row_security = off; " + PortableSettings.sql)
            try await connection.exec("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            let snapshot = try await connection.exec("SELECT pg_catalog.pg_export_snapshot()").string(0, 0)
            return SourceSession(primary: connection, snapshot: snapshot, conninfo: conninfo, pool: pool)
        } catch {
            throw CloneError.from(error, context: "source")
        }
    }

    /// Another connection reading the same snapshot (for parallel table copies).
    func openWorker() async throws(CloneError) -> PQConnection {
        do {
            let connection = try await PQConnection.connect(conninfo, label: "source-worker", pool: pool)
            try await connection.exec("SET search_path = ''; SET statement_timeout = 0; SET row_security = off; " + PortableSettings.sql)
            try await connection.exec("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            if let snapshot {
                try await connection.exec("SET TRANSACTION SNAPSHOT \(SQL.literal(snapshot))")
            }
            return connection
        } catch {
            throw CloneError.from(error, context: "source")
        }
    }
}

extension CloneError {
    /// Wraps a libpq or server error, keeping the server's SQLSTATE.
    static func from(_ error: any Error, context: String) -> CloneError {
        if let error = error as? CloneError { return error }
        if let error = error as? PQError {
            // A COPY that stopped on a row says which (its line: the row's place in the copy).
            let detail = [error.detail, error.copyPosition.map { "At \($0)." }].compactMap { $0 }.joined(separator: "\n")
            return CloneError(error.sqlState ?? "XX000", "\(context): \(error.message)", detail: detail.isEmpty ? nil : detail, hint: error.hint)
        }
        return CloneError("XX000", "\(context): \(error)")
    }
}
