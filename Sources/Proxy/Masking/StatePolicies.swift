import Foundation
import JSON
import Masking
import PQ

/// Masking policies created with pgclone.create_masking_policy, kept in the state
/// database so that every proxy fronting the same target applies them.
public struct StatePolicies: Sendable {
    let serviceConnInfo: ConnInfo
    let database: String
    let pool: PQThreadPool

    public init(serviceConnInfo: ConnInfo, database: String, pool: PQThreadPool = .shared) {
        self.serviceConnInfo = serviceConnInfo
        self.database = database
        self.pool = pool
    }

    /// Creates the state table if needed; an advisory lock keeps concurrent proxies
    /// and calls from racing on the catalog.
    static let schemaSQL = """
        BEGIN;
        SELECT pg_catalog.pg_advisory_xact_lock(7270746);
        CREATE SCHEMA IF NOT EXISTS pgclone;
        CREATE TABLE IF NOT EXISTS pgclone.masking_policies (
            database_name text NOT NULL,
            schema_name text NOT NULL,
            table_name text NOT NULL,
            mask jsonb NOT NULL,
            unmasked_roles text[] NOT NULL,
            view_name text,
            previous_acl text,
            granted_schema_usage boolean NOT NULL DEFAULT false,
            created_by text NOT NULL DEFAULT current_user,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (database_name, schema_name, table_name)
        );
        REVOKE ALL ON pgclone.masking_policies FROM PUBLIC;
        COMMIT;
        """

    func connect() async throws -> PQConnection {
        var info = serviceConnInfo
        info["dbname"] = database
        let connection = try await PQConnection.connect(info.connectionString, label: "state", pool: pool)
        try await connection.exec("SET search_path = ''")
        return connection
    }

    /// The stored policies, and when (by the server's clock) they were read.
    public struct Snapshot: Sendable {
        public var policies: [TablePolicy]
        /// The server's now() at the read: a mask view claimed for a state policy after this
        /// may belong to a policy this read has not seen yet.
        public var readAt: String
    }

    /// Reads every stored policy; a missing table means none.
    public func load() async throws -> Snapshot {
        try await load(on: try await connect())
    }

    /// The same on an open connection to the state database (the reloader keeps one).
    func load(on connection: PQConnection) async throws -> Snapshot {
        let exists = try await connection.exec("SELECT pg_catalog.to_regclass('pgclone.masking_policies') IS NOT NULL, pg_catalog.clock_timestamp()::pg_catalog.text")
        let readAt = exists.string(0, 1) ?? ""
        guard exists.string(0, 0) == "t" else { return Snapshot(policies: [], readAt: readAt) }
        let rows = try await connection.exec("""
            SELECT database_name, schema_name, table_name, mask::text, unmasked_roles::text FROM pgclone.masking_policies
            ORDER BY database_name, schema_name, table_name
            """)
        var policies: [TablePolicy] = []
        for row in rows.rows.indices {
            // A row that no longer reads is an error, not a policy to skip: skipping it would
            // unmask its table.
            guard let maskText = rows.string(row, 3), let mask = try? JSONReader.parse(maskText),
                  let columns = try? parseMaskObject(mask) else {
                throw PQError(message: "the stored masking policy on \(rows.string(row, 1) ?? "").\(rows.string(row, 2) ?? "") (database \(rows.string(row, 0) ?? "")) does not read as a mask")
            }
            let roles = Self.parseArray(rows.string(row, 4) ?? "{}")
            policies.append(TablePolicy(
                schema: rows.text(row, 1), table: rows.text(row, 2), unmaskedRoles: roles,
                columns: columns.map { TablePolicy.Column(name: $0.column, strategy: $0.strategy) },
                source: TablePolicy.stateDatabaseSource, database: rows.text(row, 0)))
        }
        return Snapshot(policies: policies, readAt: readAt)
    }

    /// An error of the state database for logs and policy_status: never a conninfo or password.
    static func describe(_ error: any Error) -> String {
        // libpq's message has a line per address tried: the first says it.
        if let error = error as? PQError { return error.message.split(separator: "\n").first.map { String($0).trimmingCharacters(in: .whitespaces) } ?? error.message }
        return "\(error)"
    }

    /// Parses a text[] literal of simple names (`{a,"b c"}`).
    static func parseArray(_ text: String) -> [String] {
        var items: [String] = []
        var current = ""
        var quoted = false
        var escaped = false
        for character in text.dropFirst().dropLast() {
            if escaped { current.append(character); escaped = false; continue }
            switch character {
            case "\\" where quoted: escaped = true
            case "\"": quoted.toggle()
            case "," where !quoted: items.append(current); current = ""
            default: current.append(character)
            }
        }
        if !current.isEmpty || !items.isEmpty { items.append(current) }
        return items
    }
}
