import PQ

/// Non-table objects of source schemas, each with its DDL, in an order derived
/// from pg_depend so that everything exists before what uses it.
struct SchemaObjects: Sendable {
    struct Object: Sendable {
        var kind: String
        var schema: String
        var name: String
        var oid: String
        var ddl: [String]
        /// GRANT/REVOKE statements as on the source.
        var grants: [String] = []
    }

    var types: [Object] = []
    var functions: [Object] = []
    var skippedFunctions: [String] = []
    var sequences: [(object: Object, lastValue: String, isCalled: Bool)] = []
    var views: [Object] = []
    /// COMMENT ON SCHEMA statements, for the schemas a clone creates.
    var schemaComments: [String: String] = [:]
    /// GRANT statements on the schemas, for the schemas a clone creates.
    var schemaGrants: [String: [String]] = [:]
    /// Extensions installed into the cloned schemas, in creation order: created on the target
    /// (their member objects are not cloned one by one, as pg_dump does).
    var extensions: [(name: String, schema: String)] = []

    /// SQL condition: the pg_class row `alias` belongs to an extension.
    static func isExtensionMember(classOID alias: String, catalog: String = "pg_class") -> String {
        "EXISTS (SELECT 1 FROM pg_catalog.pg_depend x WHERE x.classid = 'pg_catalog.\(catalog)'::pg_catalog.regclass AND x.objid = \(alias) AND x.deptype = 'e')"
    }

    static func load(_ source: PQConnection, schemas: [String], includeViews: Bool = true) async throws -> SchemaObjects {
        var objects = SchemaObjects()
        let list = "{" + schemas.map { "\"" + $0.replacingQuotes() + "\"" }.joined(separator: ",") + "}"

        let schemaRows = try await source.query("""
            SELECT n.nspname, pg_catalog.obj_description(n.oid, 'pg_namespace'), \(Privileges.sqlEntries(acl: "n.nspacl", owner: "n.nspowner"))
            FROM pg_catalog.pg_namespace n
            WHERE n.nspname = ANY($1::pg_catalog.text[])
            """, [list])
        for row in schemaRows.rows.indices {
            let schema = schemaRows.string(row, 0)!
            if let comment = schemaRows.string(row, 1) {
                objects.schemaComments[schema] = "COMMENT ON SCHEMA \(SQL.identifier(schema)) IS \(SQL.literal(comment))"
            }
            objects.schemaGrants[schema] = Privileges(encoded: schemaRows.string(row, 2)).statements(on: "SCHEMA \(SQL.identifier(schema))")
        }

        let extensionRows = try await source.query("""
            SELECT e.extname, n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
            WHERE n.nspname = ANY($1::pg_catalog.text[]) ORDER BY e.oid
            """, [list])
        objects.extensions = extensionRows.rows.indices.map { (extensionRows.string($0, 0)!, extensionRows.string($0, 1)!) }

        // Types: enums, composites (free-standing only), domains; ordered by their dependencies.
        let typeRows = try await source.query("""
            SELECT t.oid, t.typtype, n.nspname, t.typname,
              CASE t.typtype
                WHEN 'e' THEN 'CREATE TYPE ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname) || ' AS ENUM ('
                  || COALESCE((SELECT pg_catalog.string_agg(pg_catalog.quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid), '') || ')'
                WHEN 'c' THEN 'CREATE TYPE ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname) || ' AS ('
                  || COALESCE((SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname) || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
                     FROM pg_catalog.pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '') || ')'
                WHEN 'd' THEN 'CREATE DOMAIN ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname) || ' AS '
                  || pg_catalog.format_type(t.typbasetype, t.typtypmod)
                  || CASE WHEN t.typdefault IS NOT NULL THEN ' DEFAULT ' || t.typdefault ELSE '' END
                  || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
                  || COALESCE((SELECT pg_catalog.string_agg(' CONSTRAINT ' || pg_catalog.quote_ident(c.conname) || ' ' || pg_catalog.pg_get_constraintdef(c.oid), '' ORDER BY c.conname)
                     FROM pg_catalog.pg_constraint c WHERE c.contypid = t.oid), '')
              END,
              pg_catalog.obj_description(t.oid, 'pg_type')
            FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
            WHERE n.nspname = ANY($1::pg_catalog.text[])
              AND (t.typtype IN ('e', 'd') OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c'))
              AND NOT \(isExtensionMember(classOID: "t.oid", catalog: "pg_type")) AND NOT \(isExtensionMember(classOID: "t.typrelid"))
            """, [list])
        let typeDependencies = try await source.query("""
            SELECT DISTINCT t.oid, d.refobjid
            FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
            JOIN pg_catalog.pg_depend d ON (d.objid = t.oid AND d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass)
                                         OR (d.objid = t.typrelid AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass)
            WHERE n.nspname = ANY($1::pg_catalog.text[]) AND d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass
            """, [list])
        let types = typeRows.rows.indices.map { row in
            Object(kind: "type", schema: typeRows.string(row, 2)!, name: typeRows.string(row, 3)!, oid: typeRows.string(row, 0)!,
                   ddl: [typeRows.string(row, 4)!] + (typeRows.string(row, 5).map { comment in
                       "COMMENT ON \(typeRows.string(row, 1) == "d" ? "DOMAIN" : "TYPE") \(SQL.qualified(typeRows.string(row, 2)!, typeRows.string(row, 3)!)) IS \(SQL.literal(comment))"
                   }.map { [$0] } ?? []))
        }
        objects.types = topologicalOrder(types, edges: typeDependencies)

        // Functions and procedures; aggregates and window functions have no pg_get_functiondef.
        let functionRows = try await source.query("""
            SELECT p.oid, n.nspname, p.proname, p.prokind,
                   CASE WHEN p.prokind IN ('f', 'p') THEN pg_catalog.pg_get_functiondef(p.oid)
                        WHEN p.prokind = 'a' AND a.aggkind = 'n' THEN
                          'CREATE AGGREGATE ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(p.proname)
                          || '(' || pg_catalog.pg_get_function_arguments(p.oid) || ') (SFUNC = ' || a.aggtransfn::pg_catalog.regproc
                          || ', STYPE = ' || pg_catalog.format_type(a.aggtranstype, NULL)
                          || CASE WHEN a.aggtransspace <> 0 THEN ', SSPACE = ' || a.aggtransspace ELSE '' END
                          || CASE WHEN a.aggfinalfn <> 0 THEN ', FINALFUNC = ' || a.aggfinalfn::pg_catalog.regproc ELSE '' END
                          || CASE WHEN a.aggfinalextra THEN ', FINALFUNC_EXTRA' ELSE '' END
                          || CASE WHEN a.aggcombinefn <> 0 THEN ', COMBINEFUNC = ' || a.aggcombinefn::pg_catalog.regproc ELSE '' END
                          || CASE WHEN a.aggserialfn <> 0 THEN ', SERIALFUNC = ' || a.aggserialfn::pg_catalog.regproc ELSE '' END
                          || CASE WHEN a.aggdeserialfn <> 0 THEN ', DESERIALFUNC = ' || a.aggdeserialfn::pg_catalog.regproc ELSE '' END
                          || CASE WHEN a.agginitval IS NOT NULL THEN ', INITCOND = ' || pg_catalog.quote_literal(a.agginitval) ELSE '' END
                          || CASE WHEN p.proparallel = 's' THEN ', PARALLEL = SAFE' WHEN p.proparallel = 'r' THEN ', PARALLEL = RESTRICTED' ELSE '' END
                          || ')'
                   END,
                   pg_catalog.pg_get_function_identity_arguments(p.oid),
                   pg_catalog.obj_description(p.oid, 'pg_proc'),
                   p.proacl IS NOT NULL, \(Privileges.sqlEntries(acl: "p.proacl", owner: "p.proowner"))
            FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
            LEFT JOIN pg_catalog.pg_aggregate a ON a.aggfnoid = p.oid
            WHERE n.nspname = ANY($1::pg_catalog.text[])
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid AND d.deptype = 'e')
            -- Aggregates after the functions they call.
            ORDER BY p.prokind = 'a', n.nspname, p.proname, p.oid
            """, [list])
        for row in functionRows.rows.indices {
            let name = "\(functionRows.string(row, 1)!).\(functionRows.string(row, 2)!)(\(functionRows.string(row, 5) ?? ""))"
            let comment = functionRows.string(row, 6)
            guard let ddl = functionRows.string(row, 4) else {
                objects.skippedFunctions.append(name)
                continue
            }
            var statements = [ddl]
            if let comment {
                let kind = functionRows.string(row, 3) == "p" ? "PROCEDURE" : functionRows.string(row, 3) == "a" ? "AGGREGATE" : "FUNCTION"
                statements.append("COMMENT ON \(kind) \(SQL.qualified(functionRows.string(row, 1)!, functionRows.string(row, 2)!))(\(functionRows.string(row, 5) ?? "")) IS \(SQL.literal(comment))")
            }
            let privileges = Privileges(encoded: functionRows.string(row, 8), hasExplicitACL: functionRows.string(row, 7) == "t", isFunction: true)
            objects.functions.append(Object(kind: "function", schema: functionRows.string(row, 1)!, name: functionRows.string(row, 2)!,
                                            oid: functionRows.string(row, 0)!, ddl: statements,
                                            grants: privileges.statements(on: "ROUTINE \(SQL.qualified(functionRows.string(row, 1)!, functionRows.string(row, 2)!))(\(functionRows.string(row, 5) ?? ""))")))
        }

        // Sequences not owned by a column (owned ones travel with their table).
        let sequenceRows = try await source.query("""
            SELECT c.oid, n.nspname, c.relname,
                   'AS ' || pg_catalog.format_type(s.seqtypid, NULL) || ' INCREMENT BY ' || s.seqincrement
                   || ' MINVALUE ' || s.seqmin || ' MAXVALUE ' || s.seqmax || ' START WITH ' || s.seqstart
                   || ' CACHE ' || s.seqcache || CASE WHEN s.seqcycle THEN ' CYCLE' ELSE ' NO CYCLE' END,
                   pg_catalog.obj_description(c.oid, 'pg_class'), \(Privileges.sqlEntries(acl: "c.relacl", owner: "c.relowner"))
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid
            WHERE n.nspname = ANY($1::pg_catalog.text[]) AND c.relkind = 'S' AND NOT \(isExtensionMember(classOID: "c.oid"))
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.objid = c.oid AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                              AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype IN ('a', 'i'))
            ORDER BY n.nspname, c.relname
            """, [list])
        for row in sequenceRows.rows.indices {
            let schema = sequenceRows.string(row, 1)!
            let name = sequenceRows.string(row, 2)!
            let state = try await source.exec("SELECT last_value, is_called FROM \(SQL.qualified(schema, name))")
            objects.sequences.append((
                Object(kind: "sequence", schema: schema, name: name, oid: sequenceRows.string(row, 0)!,
                       ddl: ["CREATE SEQUENCE \(SQL.qualified(schema, name)) \(sequenceRows.string(row, 3)!)"]
                           + (sequenceRows.string(row, 4).map { ["COMMENT ON SEQUENCE \(SQL.qualified(schema, name)) IS \(SQL.literal($0))"] } ?? []),
                       grants: Privileges(encoded: sequenceRows.string(row, 5)).statements(on: "SEQUENCE \(SQL.qualified(schema, name))")),
                state.string(0, 0)!, state.string(0, 1) == "t"))
        }

        guard includeViews else { return objects }
        // Views and materialized views, ordered by what their rules read.
        let viewRows = try await source.query("""
            SELECT c.oid, c.relkind, n.nspname, c.relname, pg_catalog.pg_get_viewdef(c.oid),
                   pg_catalog.obj_description(c.oid, 'pg_class'), \(Privileges.sqlEntries(acl: "c.relacl", owner: "c.relowner"))
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = ANY($1::pg_catalog.text[]) AND c.relkind IN ('v', 'm') AND NOT \(isExtensionMember(classOID: "c.oid"))
            """, [list])
        let viewDependencies = try await source.query("""
            SELECT DISTINCT r.ev_class, d.refobjid
            FROM pg_catalog.pg_rewrite r
            JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid
            JOIN pg_catalog.pg_class c ON c.oid = r.ev_class
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = ANY($1::pg_catalog.text[]) AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid <> r.ev_class
            """, [list])
        var views: [Object] = []
        for row in viewRows.rows.indices {
            let schema = viewRows.string(row, 2)!
            let name = viewRows.string(row, 3)!
            var definition = viewRows.string(row, 4)!
            while definition.hasSuffix(";") || definition.hasSuffix("\n") || definition.hasSuffix(" ") { definition.removeLast() }
            let qualified = SQL.qualified(schema, name)
            var ddl: [String]
            if viewRows.string(row, 1) == "m" {
                ddl = ["CREATE MATERIALIZED VIEW \(qualified) AS\n\(definition)\nWITH NO DATA"]
                let indexRows = try await source.query("""
                    SELECT ic.relname, pg_catalog.pg_get_indexdef(i.indexrelid), pg_catalog.quote_ident(ic.relname), i.indisunique,
                           pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)
                    FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
                    JOIN pg_catalog.pg_class c ON c.oid = i.indrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                    WHERE i.indrelid = $1 ORDER BY ic.relname
                    """, [viewRows.string(row, 0)!])
                for index in indexRows.rows.indices {
                    ddl.append(indexRows.string(index, 1)!)
                }
                ddl.append("REFRESH MATERIALIZED VIEW \(qualified)")
            } else {
                ddl = ["CREATE VIEW \(qualified) AS\n\(definition)"]
            }
            if let comment = viewRows.string(row, 5) {
                ddl.append("COMMENT ON \(viewRows.string(row, 1) == "m" ? "MATERIALIZED VIEW" : "VIEW") \(qualified) IS \(SQL.literal(comment))")
            }
            views.append(Object(kind: viewRows.string(row, 1) == "m" ? "materialized view" : "view", schema: schema, name: name,
                                oid: viewRows.string(row, 0)!, ddl: ddl,
                                grants: Privileges(encoded: viewRows.string(row, 6)).statements(on: "TABLE \(qualified)")))
        }
        objects.views = topologicalOrder(views, edges: viewDependencies)
        return objects
    }

    /// Orders objects so that each comes after the objects (of the same list) it depends on.
    /// `edges` rows are (dependent oid, referenced oid); unknown oids are ignored.
    static func topologicalOrder(_ objects: [Object], edges: PQResult) -> [Object] {
        let byOID = Dictionary(uniqueKeysWithValues: objects.map { ($0.oid, $0) })
        var dependsOn: [String: Set<String>] = [:]
        for row in edges.rows.indices {
            guard let from = edges.string(row, 0), let to = edges.string(row, 1), from != to, byOID[to] != nil else { continue }
            dependsOn[from, default: []].insert(to)
        }
        var ordered: [Object] = []
        var done: Set<String> = []
        var visiting: Set<String> = []
        func visit(_ oid: String) {
            guard !done.contains(oid), !visiting.contains(oid), let object = byOID[oid] else { return }
            visiting.insert(oid)
            for dependency in (dependsOn[oid] ?? []).sorted() { visit(dependency) }
            visiting.remove(oid)
            done.insert(oid)
            ordered.append(object)
        }
        for object in objects.sorted(by: { ($0.schema, $0.name) < ($1.schema, $1.name) }) { visit(object.oid) }
        return ordered
    }
}
