import Foundation
import JSON
import CloneEngine
import Masking
import PQ

/// create_masking_policy, drop_masking_policy, masking_report, policy_status and reload.
struct MaskingPolicyFunctions: Sendable {
    let target: CloneTarget
    let state: StatePolicies
    let store: PolicyStore

    static let reportColumns = [
        AdminResult.Column("schema_name", "text"), AdminResult.Column("table_name", "text"), AdminResult.Column("column_name", "text"),
        AdminResult.Column("sensitivity", "text"), AdminResult.Column("mask_status", "text"), AdminResult.Column("recommendation", "text"),
    ]

    static let statusColumns = [
        AdminResult.Column("source", "text"), AdminResult.Column("table_name", "text"), AdminResult.Column("columns", "text"),
        AdminResult.Column("unmasked_roles", "text"), AdminResult.Column("version", "integer"), AdminResult.Column("last_error", "text"),
        AdminResult.Column("server_enforced", "text"), AdminResult.Column("server_detail", "text"),
    ]

    func create(schema: String, table: String, mask: String, privilegedRole: String?) async throws -> String {
        let strategies = try MaskingAdmin.parseMask(mask)
        // A policy file covering the table wins over the state database, so the new policy would
        // not take effect, while its `<table>_masked` view (granted to PUBLIC, masking only these
        // columns) showed the file policy's other columns until the backstop took the grant back
        // (attack round 23).
        if let file = store.current.policies.first(where: {
            !$0.isFromStateDatabase && $0.schema == schema && $0.table == table && ($0.database == nil || $0.database == target.database)
        }) {
            throw CloneError("42710", "table \(schema).\(table) already has a masking policy, from \(file.source)",
                             hint: "Change that policy instead: a policy made here would not take effect over it.")
        }
        let connection = try await target.connect()
        guard let definition = try await TableDefinition.load(connection, schema: schema, table: table) else {
            throw CloneError("42P01", "relation \"\(schema).\(table)\" does not exist")
        }
        if let privilegedRole {
            let role = try await connection.query("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", [privilegedRole])
            guard role.rows.count == 1 else { throw CloneError("42704", "role \"\(privilegedRole)\" does not exist") }
        }
        var list: [String] = []
        for column in definition.columns {
            let name = SQL.identifier(column.name)
            if let strategy = strategies.first(where: { $0.0 == column.name })?.1 {
                list.append(strategy.expression(for: name, type: column.type, baseType: column.baseType) + " AS " + name)
            } else {
                list.append(name)
            }
        }
        for (column, _) in strategies where !definition.columns.contains(where: { $0.name == column }) {
            throw CloneError("42703", "column \"\(column)\" of relation \"\(schema).\(table)\" does not exist")
        }
        let viewName = NameMapping.truncate(table + "_masked")
        let qualifiedTable = SQL.qualified(schema, table)
        let qualifiedView = SQL.qualified(schema, viewName)
        let acl = try await connection.query("SELECT relacl::pg_catalog.text FROM pg_catalog.pg_class WHERE oid = $1::pg_catalog.regclass", [qualifiedTable]).string(0, 0)
        // The exempt role reads the base table, so it needs USAGE on the schema; remember whether we gave it.
        var grantUsage = false
        if let privilegedRole {
            grantUsage = try await connection.query("SELECT NOT pg_catalog.has_schema_privilege($1, $2, 'USAGE')", [privilegedRole, schema]).string(0, 0) == "t"
        }
        try await connection.exec("BEGIN")
        do {
            try await connection.exec("CREATE OR REPLACE VIEW \(qualifiedView) AS SELECT \(list.joined(separator: ", ")) FROM \(qualifiedTable)")
            try await connection.exec("REVOKE ALL ON \(qualifiedTable) FROM PUBLIC")
            if let privilegedRole {
                try await connection.exec("GRANT SELECT ON \(qualifiedTable) TO \(SQL.identifier(privilegedRole))")
                if grantUsage { try await connection.exec("GRANT USAGE ON SCHEMA \(SQL.identifier(schema)) TO \(SQL.identifier(privilegedRole))") }
            }
            try await connection.exec("GRANT SELECT ON \(qualifiedView) TO PUBLIC")
            try await connection.exec("COMMIT")
        } catch {
            _ = try? await connection.exec("ROLLBACK")
            throw error
        }
        let stateConnection = try await state.connect()
        try await stateConnection.exec(StatePolicies.schemaSQL)
        let maskJSON = "{" + strategies.map { "\(JSONNode.quote($0.0)): \($0.1.json.text)" }.joined(separator: ", ") + "}"
        let roles = "{" + (privilegedRole.map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" } ?? "") + "}"
        try await stateConnection.query("""
            INSERT INTO pgclone.masking_policies (database_name, schema_name, table_name, mask, unmasked_roles, view_name, previous_acl, granted_schema_usage, created_by)
            VALUES ($1, $2, $3, $4::jsonb, $5::text[], $6, $7, $8::bool, $9)
            ON CONFLICT (database_name, schema_name, table_name)
            DO UPDATE SET mask = EXCLUDED.mask, unmasked_roles = EXCLUDED.unmasked_roles, view_name = EXCLUDED.view_name,
                          granted_schema_usage = masking_policies.granted_schema_usage OR EXCLUDED.granted_schema_usage
            """, [target.database, schema, table, maskJSON, roles, viewName, acl, grantUsage ? "true" : "false", target.role])
        store.setStatePolicies(try await state.load())
        let who = privilegedRole.map { "role \($0) sees real values" } ?? "no role is exempt"
        return "OK: masking policy on \(schema).\(table) for \(strategies.count) \(strategies.count == 1 ? "column" : "columns"); view \(schema).\(viewName) created; \(who)"
    }

    func drop(schema: String, table: String) async throws -> String {
        let stateConnection = try await state.connect()
        try await stateConnection.exec(StatePolicies.schemaSQL)
        let row = try await stateConnection.query("""
            SELECT view_name, previous_acl, granted_schema_usage, unmasked_roles[1] FROM pgclone.masking_policies WHERE database_name = $1 AND schema_name = $2 AND table_name = $3
            """, [target.database, schema, table])
        guard row.rows.count == 1 else {
            throw CloneError("42704", "there is no masking policy on \(schema).\(table) in database \(target.database)")
        }
        let viewName = row.string(0, 0)
        let previous = row.string(0, 1)
        let connection = try await target.connect()
        let qualifiedTable = SQL.qualified(schema, table)
        try await connection.exec("BEGIN")
        do {
            if let viewName { try await connection.exec("DROP VIEW IF EXISTS \(SQL.qualified(schema, viewName))") }
            // Put the grants back exactly as they were before the policy.
            let current = try await connection.query("""
                SELECT DISTINCT a.grantee FROM pg_catalog.pg_class c,
                  pg_catalog.aclexplode(COALESCE(c.relacl, pg_catalog.acldefault('r', c.relowner))) a
                WHERE c.oid = $1::pg_catalog.regclass AND a.grantee <> c.relowner
                """, [qualifiedTable])
            for grantee in current.strings.compactMap({ $0 }) {
                try await connection.exec("REVOKE ALL ON \(qualifiedTable) FROM \(try await roleName(grantee, connection))")
            }
            let restore = try await connection.query("""
                SELECT a.grantee::pg_catalog.text, a.privilege_type, a.is_grantable FROM pg_catalog.pg_class c,
                  pg_catalog.aclexplode(COALESCE($2::pg_catalog.aclitem[], pg_catalog.acldefault('r', c.relowner))) a
                WHERE c.oid = $1::pg_catalog.regclass AND a.grantee <> c.relowner
                """, [qualifiedTable, previous])
            for index in restore.rows.indices {
                let grantee = try await roleName(restore.text(index, 0), connection)
                let grantable = restore.string(index, 2) == "t" ? " WITH GRANT OPTION" : ""
                try await connection.exec("GRANT \(restore.text(index, 1)) ON \(qualifiedTable) TO \(grantee)\(grantable)")
            }
            if row.string(0, 2) == "t", let role = row.string(0, 3) {
                try await connection.exec("REVOKE USAGE ON SCHEMA \(SQL.identifier(schema)) FROM \(SQL.identifier(role))")
            }
            try await connection.exec("COMMIT")
        } catch {
            _ = try? await connection.exec("ROLLBACK")
            throw error
        }
        try await stateConnection.query("DELETE FROM pgclone.masking_policies WHERE database_name = $1 AND schema_name = $2 AND table_name = $3",
                                        [target.database, schema, table])
        store.setStatePolicies(try await state.load())
        return "OK: dropped masking policy on \(schema).\(table); " + (viewName.map { "view \(schema).\($0) dropped; " } ?? "") + "previous grants restored"
    }

    private func roleName(_ oid: String, _ connection: PQConnection) async throws -> String {
        if oid == "0" { return "PUBLIC" }
        let name = try await connection.query("SELECT pg_catalog.pg_get_userbyid($1::pg_catalog.oid)", [oid]).string(0, 0) ?? ""
        return SQL.identifier(name)
    }

    func report(schema: String) async throws -> AdminResult {
        let connection = try await target.connect()
        let exists = try await connection.query("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1", [schema])
        guard exists.rows.count == 1 else { throw CloneError("3F000", "schema \"\(schema)\" does not exist") }
        let policies = store.current.policies.filter { $0.schema == schema && ($0.database == nil || $0.database == target.database) }
        let views = try await connection.query("""
            SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1 AND c.relkind = 'v'
            """, [schema]).strings.compactMap { $0 }
        // A policy covers the tables that inherit from its table (partitions, children) too.
        let ancestry = try await connection.query("""
            WITH RECURSIVE up(child, ancestor) AS (
                SELECT c.relname::pg_catalog.text, p.relname::pg_catalog.text
                FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
                JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
                WHERE cn.nspname = $1 AND pn.nspname = $1
                UNION
                SELECT up.child, p.relname::pg_catalog.text
                FROM up JOIN pg_catalog.pg_class a ON a.relname = up.ancestor
                JOIN pg_catalog.pg_namespace an ON an.oid = a.relnamespace AND an.nspname = $1
                JOIN pg_catalog.pg_inherits i ON i.inhrelid = a.oid JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
                JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace AND pn.nspname = $1
            )
            SELECT child, ancestor FROM up
            """, [schema])
        var ancestors: [String: Set<String>] = [:]
        for row in ancestry.rows.indices { ancestors[ancestry.text(row, 0), default: []].insert(ancestry.text(row, 1)) }
        let allColumns = try await MaskingAdmin.columns(connection, schema: schema)
        let columnsOf = Dictionary(grouping: allColumns, by: \.table).mapValues { Set($0.map(\.column)) }
        var rows: [[String?]] = []
        // Generated columns computed from a policy's columns, by table and policy (read once each).
        var derivedColumns: [String: Set<String>] = [:]
        for column in allColumns {
            let finding = (try? await MaskingAdmin.classify(connection, schema: schema, column)) ?? nil
            let covering = policies.filter { $0.table == column.table || ancestors[column.table]?.contains($0.table) == true }
            // A policy naming a column the table lacks makes the proxy refuse the table's reads.
            let broken = covering.first { policy in policy.columns.contains { !(columnsOf[column.table]?.contains($0.name) ?? false) } }
            let policy = covering.first { $0.strategy(for: column.column) != nil }
            // A generated column computed from a masked one is masked as NULL.
            var derivedFrom: TablePolicy?
            if policy == nil {
                for candidate in covering {
                    let key = "\(column.table)\u{0}\(candidate.qualifiedName)"
                    if derivedColumns[key] == nil {
                        derivedColumns[key] = Set(try await connection.query(
                            "SELECT pg_catalog.unnest(\(MaskView.derivedColumnsSQL(table: "pg_catalog.to_regclass($1)::pg_catalog.oid", sensitive: "$2::pg_catalog.text[]")))",
                            [SQL.qualified(schema, column.table), SQL.textArray(candidate.columns.map(\.name))]).strings.compactMap { $0 })
                    }
                    if derivedColumns[key]?.contains(column.column) == true { derivedFrom = candidate; break }
                }
            }
            guard finding != nil || policy != nil || broken != nil || derivedFrom != nil else { continue }
            var status: String
            var recommendation: String
            if let broken {
                let missing = broken.columns.map(\.name).filter { !(columnsOf[column.table]?.contains($0) ?? false) }
                status = "REFUSED (policy names missing column)"
                recommendation = "correct policy \(broken.qualifiedName): \(column.table) has no column \(missing.map { "\"\($0)\"" }.joined(separator: ", "))"
            } else if let policy, let strategy = policy.strategy(for: column.column) {
                status = policy.isFromStateDatabase && views.contains(column.table + "_masked") ? "MASKED (view)" : "MASKED (policy)"
                recommendation = "masked with \(strategy.json.text)"
                    + (policy.table == column.table ? "" : " (policy on \(schema).\(policy.table))")
                if case .regexReplace(let pattern, _) = strategy {
                    // Only what the pattern matches is replaced: a sample says how much that is.
                    if let sample = try? await connection.query("""
                        SELECT pg_catalog.count(*) FILTER (WHERE (v COLLATE pg_catalog."default") OPERATOR(pg_catalog.~) $1), pg_catalog.count(*)
                        FROM (SELECT \(SQL.identifier(column.column))::pg_catalog.text AS v FROM ONLY \(SQL.qualified(schema, column.table))
                              WHERE \(SQL.identifier(column.column)) IS NOT NULL LIMIT 1000) s
                        """, [pattern]) {
                        let (matched, sampled) = (Int(sample.string(0, 0) ?? "0") ?? 0, Int(sample.string(0, 1) ?? "0") ?? 0)
                        if matched < sampled {
                            status = "PARTLY MASKED (policy)"
                            recommendation += "; its pattern matches \(matched) of \(sampled) sampled values, the others are shown as they are"
                        }
                    }
                }
            } else if let derivedFrom {
                status = "MASKED (generated)"
                recommendation = "computed from a column policy \(derivedFrom.qualifiedName) masks: masked roles read NULL (name it in the policy to mask it otherwise)"
            } else {
                status = "UNMASKED"
                recommendation = "mask with \(finding!.strategy.json.text)"
            }
            rows.append([schema, column.table, column.column, finding?.category ?? "Configured", status, recommendation])
        }
        return .rows(columns: Self.reportColumns, rows: rows)
    }

    /// One row per policy: where it comes from, what it masks, and whether the server backs it
    /// up in the caller's database (`backstop`, the reconciler's pass there) and why not.
    static func status(_ store: PolicyStore, database: String, backstop: ServerBackstop.DatabaseState?) -> AdminResult {
        let status = store.status
        let lastError = [status.lastError, status.stateError.map { "state database: \($0)" }].compactMap { $0 }.joined(separator: "; ")
        var rows: [[String?]] = status.policies.policies.filter { $0.database == nil || $0.database == database }.map { policy in
            let (enforced, detail) = backstopStatus(of: policy, in: backstop)
            return [policy.source, policy.qualifiedName, policy.columns.map { "\($0.name): \($0.strategy.name)" }.joined(separator: ", "),
                    policy.unmaskedRoles.joined(separator: ", "), String(status.policies.version), lastError.isEmpty ? nil : lastError, enforced, detail]
        }
        if rows.isEmpty, !lastError.isEmpty {
            rows.append([store.directory, nil, nil, nil, String(status.policies.version), lastError, nil, nil])
        }
        return .rows(columns: statusColumns, rows: rows)
    }

    /// "yes", "no" or "unknown", and the reason when it is not "yes".
    static func backstopStatus(of policy: TablePolicy, in state: ServerBackstop.DatabaseState?) -> (String, String?) {
        guard let state else { return ("unknown", "the server backstop does not run in this proxy") }
        if let error = state.error { return ("unknown", "the server backstop could not check this database: \(error)") }
        let relations = state.relations.filter { $0.policy == policy.qualifiedName }
        guard !relations.isEmpty else { return ("no", "\(policy.qualifiedName) does not exist in this database") }
        if let refused = relations.first(where: { !$0.enforced }) {
            return ("no", "enforced by the proxy's rewrite alone: \(refused.reason ?? "")")
        }
        return ("yes", nil)
    }
}
