import PQ

/// The privileges granted on a source object, to recreate on its clone (as pg_dump
/// does with its ACL entries). The source owner's own entry is left out: on the target
/// the calling role owns the object.
struct Privileges: Sendable, Equatable {
    struct Grant: Sendable, Equatable {
        /// `SELECT, UPDATE`, in the order the catalog lists them.
        var privileges: [String]
        /// A quoted role name, or PUBLIC.
        var grantee: String
        var withGrantOption: Bool
    }

    var grants: [Grant] = []
    /// Functions are executable by PUBLIC, and types usable by it, unless that was revoked:
    /// then this privilege (EXECUTE, USAGE) is revoked again.
    var revokeFromPublic: String?

    /// An SQL expression listing the entries of `acl` (an aclitem[] column) not granted to
    /// `owner`, encoded for `init(encoded:)`; NULL when the ACL is the default.
    static func sqlEntries(acl: String, owner: String) -> String {
        """
        (SELECT pg_catalog.string_agg(a.privilege_type || E'\\x1f' || a.is_grantable::pg_catalog.text || E'\\x1f'
                || CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END, E'\\x1e' ORDER BY a.grantee, a.privilege_type)
         FROM pg_catalog.aclexplode(\(acl)) a LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
         WHERE a.grantee <> \(owner))
        """
    }

    /// From `sqlEntries` output. `hasExplicitACL` says whether the object had an explicit ACL at all
    /// (for functions: without PUBLIC EXECUTE in it, that default was revoked).
    /// `publicDefault`: what PUBLIC holds on such an object by default (EXECUTE on functions,
    /// USAGE on types), revoked on the clone when the source's explicit ACL lacks it.
    init(encoded: String?, hasExplicitACL: Bool = false, publicDefault: String? = nil) {
        var byGrantee: [(key: String, grant: Grant)] = []
        for entry in (encoded ?? "").split(separator: "\u{1E}", omittingEmptySubsequences: true) {
            let fields = entry.split(separator: "\u{1F}", omittingEmptySubsequences: false).map(String.init)
            guard fields.count == 3, fields[0].allSatisfy({ $0.isLetter || $0 == " " }) else { continue }
            let key = fields[2] + "\u{0}" + fields[1]
            if let index = byGrantee.firstIndex(where: { $0.key == key }) {
                byGrantee[index].grant.privileges.append(fields[0])
            } else {
                byGrantee.append((key, Grant(privileges: [fields[0]], grantee: fields[2], withGrantOption: fields[1] == "true")))
            }
        }
        grants = byGrantee.map(\.grant)
        if let publicDefault, hasExplicitACL {
            if !grants.contains(where: { $0.grantee == "PUBLIC" && $0.privileges.contains(publicDefault) }) { revokeFromPublic = publicDefault }
            grants.removeAll { $0.grantee == "PUBLIC" && $0.privileges == [publicDefault] && !$0.withGrantOption }
        }
    }

    init() {}

    /// GRANT (and REVOKE) statements for `object`, e.g. `TABLE "s"."t"` or `FUNCTION "s"."f"(integer)`.
    func statements(on object: String) -> [String] {
        var statements: [String] = []
        if let revokeFromPublic { statements.append("REVOKE \(revokeFromPublic) ON \(object) FROM PUBLIC") }
        for grant in grants {
            statements.append("GRANT \(grant.privileges.joined(separator: ", ")) ON \(object) TO \(grant.grantee)\(grant.withGrantOption ? " WITH GRANT OPTION" : "")")
        }
        return statements
    }

    /// GRANT statements for one column of `object` (`TABLE "s"."t"`).
    func statements(column: String, on object: String) -> [String] {
        grants.map { grant in
            "GRANT \(grant.privileges.map { "\($0) (\(SQL.identifier(column)))" }.joined(separator: ", ")) ON \(object) TO \(grant.grantee)\(grant.withGrantOption ? " WITH GRANT OPTION" : "")"
        }
    }

    /// Runs `statements` on `connection`, inside a transaction each behind a savepoint: a grantee
    /// that does not exist on the target is reported in `notes`, not fatal.
    static func apply(_ statements: [String], on connection: PQConnection, inTransaction: Bool = true, notes: inout [String]) async throws {
        for statement in statements {
            if let error = try await connection.executeTolerating(["42704"], [statement], inTransaction: inTransaction) {
                notes.append("not granted (\(error.message)): \(statement)")
            }
        }
    }
}

extension Privileges {
    /// Where an object's ACL and owner are read, by the name `to_regclass` (relations),
    /// `to_regprocedure` (routines) or `to_regtype` (types) takes.
    enum Catalog {
        case relation, routine, type

        var lookup: String {
            switch self {
            case .relation: "SELECT c.relacl AS acl, c.relowner AS owner FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1)"
            case .routine: "SELECT p.proacl AS acl, p.proowner AS owner FROM pg_catalog.pg_proc p WHERE p.oid = pg_catalog.to_regprocedure($1)"
            case .type: "SELECT t.typacl AS acl, t.typowner AS owner FROM pg_catalog.pg_type t WHERE t.oid = pg_catalog.to_regtype($1)"
            }
        }
    }

    /// Puts the ACL of an object a clone just made (or replaced) back to the default, before the
    /// source's grants are applied: the target schema's default privileges (often set there by
    /// an earlier clone of the same schema), or an object replaced in place, would otherwise
    /// hand out what the source's object never granted (round 41 F2). `publicDefault`: what
    /// PUBLIC holds by default (EXECUTE on routines, USAGE on types), granted again.
    static func resetToDefault(_ object: String, named name: String, in catalog: Catalog, publicDefault: String? = nil,
                               on connection: PQConnection, inTransaction: Bool = true, notes: inout [String]) async throws {
        let entries = try await connection.query("""
            WITH o AS (\(catalog.lookup))
            SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END
            FROM o, pg_catalog.aclexplode(o.acl) a LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
            WHERE a.grantee <> o.owner
            GROUP BY a.grantee, r.rolname
            UNION ALL SELECT NULL FROM o WHERE o.acl IS NOT NULL
            """, [name])
        guard !entries.rows.isEmpty else { return }
        let grantees = Set(entries.rows.indices.compactMap { entries.string($0, 0) }).union(["PUBLIC"]).sorted()
        var statements = ["REVOKE ALL ON \(object) FROM \(grantees.joined(separator: ", "))"]
        if let publicDefault { statements.append("GRANT \(publicDefault) ON \(object) TO PUBLIC") }
        try await apply(statements, on: connection, inTransaction: inTransaction, notes: &notes)
    }

    /// One statement doing what `resetToDefault` does for a relation, for statement lists run
    /// later (a view put back after its table was replaced: round 43 N2).
    static func resetStatement(relation qualified: String) -> String {
        let literal = SQL.literal(qualified)
        // The relation's name comes from the source: the body's dollar quote is one it cannot hold.
        var tag = "$pgclone$"
        while literal.contains(tag) { tag = "$pgclone_\(UInt64.random(in: 0...UInt64.max))$" }
        return """
            DO \(tag) DECLARE grantee text; BEGIN
              FOR grantee IN SELECT DISTINCT CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END
                             FROM pg_catalog.pg_class c CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee
                             WHERE c.oid OPERATOR(pg_catalog.=) \(literal)::pg_catalog.regclass AND a.grantee OPERATOR(pg_catalog.<>) c.relowner
              LOOP
                EXECUTE pg_catalog.format('REVOKE ALL ON TABLE %s FROM %s', \(literal)::pg_catalog.regclass, grantee);
              END LOOP;
            END \(tag)
            """
    }
}
