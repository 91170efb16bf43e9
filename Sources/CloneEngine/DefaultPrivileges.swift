import PQ

/// The default privileges some roles set for the objects they will create (ALTER DEFAULT
/// PRIVILEGES FOR ROLE ...), made on the target the same as on the source, as pg_dump does:
/// revocations included (a role that took EXECUTE away from PUBLIC for its future functions, or
/// its own rights on its future tables) and grants to any role, the owner's own entries too.
/// Only what differs is changed, so a second run changes nothing.
///
/// A role's global entry (no schema) replaces PostgreSQL's built-in defaults; both sides are
/// compared as what is in force (the stored entry, or the built-in one where none is stored).
/// An entry for a schema adds to the global one, and is compared as stored.
struct DefaultPrivileges {
    let source: PQConnection
    let target: PQConnection

    /// pg_default_acl's object type letters, with ALTER DEFAULT PRIVILEGES' words and
    /// acldefault()'s letters.
    static let objectTypes: [(letter: String, words: String, builtin: String)] = [
        ("r", "TABLES", "r"), ("S", "SEQUENCES", "s"), ("f", "FUNCTIONS", "f"), ("T", "TYPES", "T"), ("n", "SCHEMAS", "n"),
    ]

    struct Key: Hashable, Comparable {
        var owner: String
        /// nil: the global entry.
        var schema: String?
        var type: String
        /// nil: PUBLIC.
        var grantee: String?
        var privilege: String

        static func < (lhs: Key, rhs: Key) -> Bool {
            (lhs.owner, lhs.schema ?? "", lhs.type, lhs.grantee ?? "", lhs.privilege) < (rhs.owner, rhs.schema ?? "", rhs.type, rhs.grantee ?? "", rhs.privilege)
        }
    }

    static let query = """
        WITH owners AS (SELECT r.oid, r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])),
        types(letter, builtin) AS (VALUES ('r'::"char", 'r'::"char"), ('S', 's'), ('f', 'f'), ('T', 'T'), ('n', 'n')),
        entries AS (
            SELECT o.oid AS owner, NULL::pg_catalog.oid AS ns, t.letter,
                   COALESCE((SELECT d.defaclacl FROM pg_catalog.pg_default_acl d WHERE d.defaclrole OPERATOR(pg_catalog.=) o.oid
                               AND d.defaclnamespace OPERATOR(pg_catalog.=) 0 AND d.defaclobjtype OPERATOR(pg_catalog.=) t.letter),
                            pg_catalog.acldefault(t.builtin, o.oid)) AS acl
            FROM owners o CROSS JOIN types t
            UNION ALL
            SELECT d.defaclrole, d.defaclnamespace, d.defaclobjtype, d.defaclacl
            FROM pg_catalog.pg_default_acl d JOIN owners o ON o.oid OPERATOR(pg_catalog.=) d.defaclrole
            WHERE d.defaclnamespace OPERATOR(pg_catalog.<>) 0
        )
        SELECT o.rolname::pg_catalog.text, n.nspname::pg_catalog.text, e.letter::pg_catalog.text,
               CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN NULL ELSE pg_catalog.pg_get_userbyid(a.grantee)::pg_catalog.text END,
               a.privilege_type, a.is_grantable
        FROM entries e JOIN owners o ON o.oid OPERATOR(pg_catalog.=) e.owner
        LEFT JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.ns
        CROSS JOIN LATERAL pg_catalog.aclexplode(e.acl) a
        """

    static func entries(_ result: PQResult) -> [Key: Bool] {
        var entries: [Key: Bool] = [:]
        for row in result.rows.indices {
            let key = Key(owner: result.text(row, 0), schema: result.string(row, 1), type: result.text(row, 2),
                          grantee: result.string(row, 3), privilege: result.text(row, 4))
            entries[key] = (entries[key] ?? false) || result.string(row, 5) == "t"
        }
        return entries
    }

    /// Makes the target's default privileges of `owners` (roles that exist on both sides) those
    /// of the source; returns how many statements changed something.
    func sync(owners: [String], notes: inout [String]) async throws -> Int {
        guard !owners.isEmpty else { return 0 }
        let wanted = Self.entries(try await source.query(Self.query, [SQL.textArray(owners)]))
        let present = Self.entries(try await target.query(Self.query, [SQL.textArray(owners)]))
        // One statement per owner, scope, type, grantee and change, its privileges together.
        struct Change: Hashable, Comparable {
            var owner: String, schema: String?, type: String, grantee: String?
            /// 0 grant, 1 grant with grant option, 2 revoke, 3 revoke the grant option only.
            var action: Int
            static func < (lhs: Change, rhs: Change) -> Bool {
                (lhs.owner, lhs.schema ?? "", lhs.type, lhs.grantee ?? "", lhs.action) < (rhs.owner, rhs.schema ?? "", rhs.type, rhs.grantee ?? "", rhs.action)
            }
        }
        var changes: [Change: [String]] = [:]
        for key in Set(wanted.keys).union(present.keys).sorted() where Self.privileges.contains(key.privilege) {
            let action: Int
            switch (wanted[key], present[key]) {
            case (let grantable?, nil): action = grantable ? 1 : 0
            case (nil, _?): action = 2
            case (let grantable?, let had?) where grantable != had: action = grantable ? 1 : 3
            default: continue
            }
            changes[Change(owner: key.owner, schema: key.schema, type: key.type, grantee: key.grantee, action: action), default: []].append(key.privilege)
        }
        var statements: [(key: Change, sql: String)] = []
        for (change, privileges) in changes.sorted(by: { $0.key < $1.key }) {
            guard let words = Self.objectTypes.first(where: { $0.letter == change.type })?.words else { continue }
            let scope = "ALTER DEFAULT PRIVILEGES FOR ROLE \(SQL.identifier(change.owner))" + (change.schema.map { " IN SCHEMA \(SQL.identifier($0))" } ?? "")
            let grantee = change.grantee.map(SQL.identifier) ?? "PUBLIC"
            let list = privileges.joined(separator: ", ")
            switch change.action {
            case 0: statements.append((change, "\(scope) GRANT \(list) ON \(words) TO \(grantee)"))
            case 1: statements.append((change, "\(scope) GRANT \(list) ON \(words) TO \(grantee) WITH GRANT OPTION"))
            case 2: statements.append((change, "\(scope) REVOKE \(list) ON \(words) FROM \(grantee)"))
            default: statements.append((change, "\(scope) REVOKE GRANT OPTION FOR \(list) ON \(words) FROM \(grantee)"))
            }
        }
        var applied = 0
        var missing: Set<String> = []
        for (key, statement) in statements {
            if let schema = key.schema, try await target.query("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) $1", [schema]).rows.isEmpty {
                missing.insert("schema \(schema)")
                continue
            }
            if let grantee = key.grantee, try await target.query("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) $1", [grantee]).rows.isEmpty {
                missing.insert("role \(grantee)")
                continue
            }
            if let error = try await target.executeTolerating(["42501"], [statement]) {
                notes.append("default privileges not set (\(error.message)): \(statement)")
                continue
            }
            applied += 1
        }
        if !missing.isEmpty {
            let list = missing.sorted()
            notes.append("default privileges naming what the target lacks were skipped (\(list.count)): \(list.prefix(10).joined(separator: ", "))\(list.count > 10 ? ", ..." : "")")
        }
        return applied
    }

    static let privileges: Set<String> = ObjectGrants.privilegeWords
}
