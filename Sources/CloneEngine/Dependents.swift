import PQ

/// What `DROP ... CASCADE` of a relation would take with it, besides the relation's own parts
/// (indexes, constraints, defaults, its sequences): views, foreign keys and policies of other
/// tables, functions using its row type.
///
/// `conflict: replace` keeps what it can put back exactly: foreign keys of other tables are
/// added again (and checked against the new rows), plain views on the table (and views on
/// those) are created again with their definition, options, owner, grants and comment. It
/// drops anything else (materialized views, functions, policies of other tables...) only when
/// the caller allowed it (`"cascade": true`), and otherwise refuses, naming them.
struct Dependents {
    struct Dependent: Sendable, Hashable {
        /// As PostgreSQL names it: `view sales.v_orders`, `constraint orders_customer_fkey on table sales.orders`.
        var description: String
        /// `schema.name` of the relation the dependent belongs to (nil for a function or type).
        var relation: String?
        /// `view` (a plain view's rule), `foreign key` (of another table), or `other`.
        var kind: String
    }

    /// The statements that put back what a replace of one relation drops and can restore, and
    /// what it would drop and cannot.
    struct Plan: Sendable {
        var restore: [String] = []
        var restored: [String] = []
        var blocking: [Dependent] = []
    }

    /// `replacing`: relations (`schema.name`) the same call creates again, so not a loss.
    static func plan(_ qualified: String, replacing: Set<String>, on connection: PQConnection) async throws -> Plan {
        var plan = Plan()
        for dependent in try await of(qualified, on: connection) where !(dependent.relation.map(replacing.contains) ?? false) {
            if dependent.kind == "other" { plan.blocking.append(dependent) }
        }
        let keys = try await connection.query("""
            SELECT n.nspname, c.relname, co.conname, pg_catalog.pg_get_constraintdef(co.oid)
            FROM pg_catalog.pg_constraint co
            JOIN pg_catalog.pg_class c ON c.oid = co.conrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE co.contype = 'f' AND co.confrelid = $1::pg_catalog.regclass AND co.conrelid <> $1::pg_catalog.regclass
              AND co.conparentid = 0 -- the children of a partitioned table's key come back with it
            ORDER BY 1, 2, 3
            """, [qualified])
        for row in keys.rows.indices where !replacing.contains("\(keys.text(row, 0)).\(keys.text(row, 1))") {
            let table = SQL.qualified(keys.text(row, 0), keys.text(row, 1))
            plan.restore.append("ALTER TABLE \(table) ADD CONSTRAINT \(SQL.identifier(keys.text(row, 2))) \(keys.text(row, 3))")
            plan.restored.append("foreign key \(keys.text(row, 2)) of \(keys.text(row, 0)).\(keys.text(row, 1))")
        }
        let views = try await connection.query("""
            WITH RECURSIVE chain(oid, depth) AS (
                SELECT rw.ev_class, 1
                FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_rewrite rw ON rw.oid = d.objid
                WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                  AND d.refobjid = $1::pg_catalog.regclass AND d.deptype = 'n' AND rw.ev_class <> $1::pg_catalog.regclass
                UNION
                SELECT rw.ev_class, chain.depth + 1
                FROM chain JOIN pg_catalog.pg_depend d ON d.refobjid = chain.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                                                     AND d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.deptype = 'n'
                JOIN pg_catalog.pg_rewrite rw ON rw.oid = d.objid
                WHERE rw.ev_class <> chain.oid AND chain.depth < 50
            )
            SELECT n.nspname, c.relname, c.relkind, pg_catalog.pg_get_viewdef(c.oid),
                   pg_catalog.array_to_string(c.reloptions, ', '), pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(c.relowner)),
                   pg_catalog.obj_description(c.oid, 'pg_class'),
                   \(Privileges.sqlEntries(acl: "c.relacl", owner: "c.relowner")),
                   max(chain.depth)
            FROM chain JOIN pg_catalog.pg_class c ON c.oid = chain.oid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            GROUP BY c.oid, n.nspname, c.relname, c.relkind
            ORDER BY max(chain.depth), 1, 2
            """, [qualified])
        for row in views.rows.indices {
            let (schema, name) = (views.text(row, 0), views.text(row, 1))
            guard !replacing.contains("\(schema).\(name)") else { continue }
            let view = SQL.qualified(schema, name)
            guard views.string(row, 2) == "v" else {
                plan.blocking.append(Dependent(description: "materialized view \(schema).\(name)", relation: "\(schema).\(name)", kind: "other"))
                continue
            }
            // What hangs on this view and is not a view is lost with it too.
            for dependent in try await of(view, on: connection) where dependent.kind == "other" && !(dependent.relation.map(replacing.contains) ?? false) {
                plan.blocking.append(dependent)
            }
            var definition = views.string(row, 3) ?? ""
            while definition.last == ";" || definition.last?.isWhitespace == true { definition.removeLast() }
            let options = views.string(row, 4).flatMap { $0.isEmpty ? nil : " WITH (\($0))" } ?? ""
            plan.restore.append("CREATE VIEW \(view)\(options) AS \(definition)")
            plan.restore.append(Privileges.resetStatement(relation: view))
            if let owner = views.string(row, 5) { plan.restore.append("ALTER VIEW \(view) OWNER TO \(owner)") }
            if let comment = views.string(row, 6) { plan.restore.append("COMMENT ON VIEW \(view) IS \(SQL.literal(comment))") }
            plan.restore += Privileges(encoded: views.string(row, 7)).statements(on: "TABLE \(view)")
            plan.restore += try await extras(of: view, on: connection)
            plan.restored.append("view \(schema).\(name)")
        }
        return plan
    }

    /// What hangs on a view and goes with it: column defaults, comments and privileges, its
    /// rules other than its own, its triggers (INSTEAD OF...; a view's cannot be disabled).
    static func extras(of view: String, on connection: PQConnection) async throws -> [String] {
        let result = try await connection.query("""
            SELECT 'ALTER VIEW ' || $1 || ' ALTER COLUMN ' || pg_catalog.quote_ident(a.attname) || ' SET DEFAULT ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid), 0, a.attnum::pg_catalog.text
            FROM pg_catalog.pg_attrdef d JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
            WHERE d.adrelid = $1::pg_catalog.regclass
            UNION ALL
            SELECT 'COMMENT ON COLUMN ' || $1 || '.' || pg_catalog.quote_ident(a.attname) || ' IS ' || pg_catalog.quote_literal(ds.description), 1, a.attnum::pg_catalog.text
            FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_description ds ON ds.objoid = a.attrelid AND ds.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND ds.objsubid = a.attnum
            WHERE a.attrelid = $1::pg_catalog.regclass AND a.attnum > 0
            UNION ALL
            SELECT 'GRANT ' || x.privilege_type || ' (' || pg_catalog.quote_ident(a.attname) || ') ON TABLE ' || $1 || ' TO '
                   || CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(x.grantee)) END
                   || CASE WHEN x.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END, 2, a.attnum::pg_catalog.text
            FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid, pg_catalog.aclexplode(a.attacl) x
            WHERE a.attrelid = $1::pg_catalog.regclass AND a.attnum > 0 AND x.grantee <> c.relowner
            UNION ALL
            SELECT pg_catalog.pg_get_ruledef(r.oid), 3, r.rulename FROM pg_catalog.pg_rewrite r
            WHERE r.ev_class = $1::pg_catalog.regclass AND r.rulename <> '_RETURN'
            UNION ALL
            SELECT pg_catalog.pg_get_triggerdef(t.oid), 4, t.tgname FROM pg_catalog.pg_trigger t
            WHERE t.tgrelid = $1::pg_catalog.regclass AND NOT t.tgisinternal

            ORDER BY 2, 3
            """, [view])
        return result.rows.indices.map { result.text($0, 0) }
    }

    static func of(_ qualified: String, on connection: PQConnection) async throws -> [Dependent] {
        let result = try await connection.query("""
            WITH rel AS (
                SELECT c.oid, c.reltype FROM pg_catalog.pg_class c WHERE c.oid = $1::pg_catalog.regclass
            ), sequences AS (
                -- Sequences the table owns (serial, identity, OWNED BY) go with it: what else
                -- uses them (another table's DEFAULT nextval) depends on the table too (round 41 F4).
                SELECT d.objid FROM pg_catalog.pg_depend d, rel
                WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                  AND d.refobjid = rel.oid AND d.deptype IN ('a', 'i')
                  AND (SELECT s.relkind FROM pg_catalog.pg_class s WHERE s.oid = d.objid) = 'S'
            ), dep AS (
                SELECT d.classid, d.objid
                FROM pg_catalog.pg_depend d, rel
                WHERE d.deptype = 'n'
                  AND ((d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND (d.refobjid = rel.oid OR d.refobjid IN (SELECT objid FROM sequences)))
                    OR (d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.refobjid = rel.reltype))
            ), owned AS (
                SELECT dep.classid, dep.objid,
                       COALESCE(rw.ev_class, co.conrelid, po.polrelid, tg.tgrelid, ad.adrelid,
                                CASE WHEN dep.classid = 'pg_catalog.pg_class'::pg_catalog.regclass THEN dep.objid END) AS relid
                FROM dep
                LEFT JOIN pg_catalog.pg_rewrite rw ON dep.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND rw.oid = dep.objid
                LEFT JOIN pg_catalog.pg_constraint co ON dep.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND co.oid = dep.objid
                LEFT JOIN pg_catalog.pg_policy po ON dep.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass AND po.oid = dep.objid
                LEFT JOIN pg_catalog.pg_trigger tg ON dep.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass AND tg.oid = dep.objid
                LEFT JOIN pg_catalog.pg_attrdef ad ON dep.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND ad.oid = dep.objid
            )
            SELECT DISTINCT
                   CASE WHEN o.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND c.oid IS NOT NULL
                        THEN pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass, c.oid, 0)
                        ELSE pg_catalog.pg_describe_object(o.classid, o.objid, 0) END,
                   n.nspname, c.relname,
                   CASE WHEN o.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND c.relkind = 'v' THEN 'view'
                        WHEN o.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass
                             AND (SELECT contype FROM pg_catalog.pg_constraint WHERE oid = o.objid) = 'f' THEN 'foreign key'
                        ELSE 'other' END
            FROM owned o JOIN rel ON true
            LEFT JOIN pg_catalog.pg_class c ON c.oid = o.relid
            LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE o.relid IS DISTINCT FROM rel.oid
            ORDER BY 1
            """, [qualified])
        return result.rows.indices.map { row in
            let relation = result.string(row, 1).flatMap { schema in result.string(row, 2).map { "\(schema).\($0)" } }
            return Dependent(description: result.string(row, 0) ?? "?", relation: relation, kind: result.string(row, 3) ?? "other")
        }
    }

    /// Each dependent's description once, in order (a materialized view is found through its
    /// rule and itself).
    static func describe(_ dependents: [Dependent]) -> [String] {
        dependents.map(\.description).reduce(into: [String]()) { names, name in
            if !names.contains(name) { names.append(name) }
        }
    }

    /// The refusal when dependents outside the clone would be dropped.
    static func refusal(_ what: String, _ dependents: [Dependent]) -> CloneError {
        CloneError("2BP01", "cannot replace \(what) because other objects on the target depend on it",
                   detail: describe(dependents).map { "\($0) depends on \(what)" }.joined(separator: "\n"),
                   hint: "Drop or move them first, or add \"cascade\": true to the options to drop them with it.")
    }
}
