import PQ

/// Checks before a clone of one schema (or of the whole database), as rows of (check, status,
/// detail) with status `ok`, `warn` or `fail`: whether both servers can be reached and by which
/// versions, the privileges the clone needs on each side, name conflicts under the chosen
/// conflict strategy, the data size, extensions and collations the source objects need,
/// encodings, and roles that grants refer to. Read-only on both sides.
struct Preflight {
    struct Check: Sendable, Equatable {
        var name: String
        var status: String
        var detail: String

        static func ok(_ name: String, _ detail: String) -> Check { Check(name: name, status: "ok", detail: detail) }
        static func warn(_ name: String, _ detail: String) -> Check { Check(name: name, status: "warn", detail: detail) }
        static func fail(_ name: String, _ detail: String) -> Check { Check(name: name, status: "fail", detail: detail) }
    }

    /// The tables (and other relations) a clone of `$1` (NULL: every user schema) reads.
    static let scope = """
        n.nspname OPERATOR(pg_catalog.!~) '^pg_' AND n.nspname OPERATOR(pg_catalog.<>) ALL ('{information_schema,pgclone,pgclone_masked}')
        AND ($1::pg_catalog.text IS NULL OR n.nspname OPERATOR(pg_catalog.=) $1)
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                        AND d.objid OPERATOR(pg_catalog.=) c.oid AND d.deptype OPERATOR(pg_catalog.=) 'e')
        """

    static func list(_ names: [String], limit: Int = 10) -> String {
        names.prefix(limit).joined(separator: ", ") + (names.count > limit ? " and \(names.count - limit) more" : "")
    }

    static func run(sourceConnInfo: String, credentials: SourceCredentials, target: CloneTarget, schema: String?, options: CloneOptions) async -> [Check] {
        var checks: [Check] = []
        let session: SourceSession
        do {
            session = try await SourceSession.open(sourceConnInfo, credentials: credentials, pool: target.pool)
        } catch {
            return [.fail("source connection", error.message)]
        }
        let source = session.primary
        let connection: PQConnection
        do {
            connection = try await target.connect()
        } catch {
            return [.ok("source connection", "connected"), .fail("target connection", error.message)]
        }
        do {
            try await connection.exec("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            checks += try await serverChecks(source, connection)
            checks += try await scopeChecks(source, connection, schema: schema, options: options)
            try await connection.exec("COMMIT")
        } catch {
            checks.append(.fail("catalog", CloneError.from(error, context: "reading the catalogs").message))
        }
        return checks
    }

    private static let versionQuery = """
        SELECT pg_catalog.current_setting('server_version'), pg_catalog.current_setting('server_version_num')::pg_catalog.int4 OPERATOR(pg_catalog./) 10000,
               pg_catalog.pg_encoding_to_char(d.encoding), CURRENT_USER::pg_catalog.text, pg_catalog.current_database()::pg_catalog.text
        FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()
        """

    private static func serverChecks(_ source: PQConnection, _ target: PQConnection) async throws -> [Check] {
        async let mine = source.exec(versionQuery)
        async let theirs = target.exec(versionQuery)
        let (a, b) = (try await mine, try await theirs)
        var checks: [Check] = [
            .ok("source connection", "PostgreSQL \(a.string(0, 0) ?? "?") as \(a.string(0, 3) ?? "?"), database \(a.string(0, 4) ?? "?")"),
            .ok("target connection", "PostgreSQL \(b.string(0, 0) ?? "?") as \(b.string(0, 3) ?? "?"), database \(b.string(0, 4) ?? "?")"),
        ]
        let (sourceMajor, targetMajor) = (Int(a.string(0, 1) ?? "") ?? 0, Int(b.string(0, 1) ?? "") ?? 0)
        checks.append(targetMajor >= sourceMajor
            ? .ok("server versions", "source \(sourceMajor), target \(targetMajor)")
            : .warn("server versions", "the target (\(targetMajor)) is older than the source (\(sourceMajor)): definitions using newer features will not load"))
        let (sourceEncoding, targetEncoding) = (a.string(0, 2) ?? "?", b.string(0, 2) ?? "?")
        checks.append(sourceEncoding == targetEncoding
            ? .ok("encodings", sourceEncoding)
            : .warn("encodings", "source \(sourceEncoding), target \(targetEncoding): characters the target's encoding lacks will fail to copy"))
        return checks
    }

    private static func scopeChecks(_ source: PQConnection, _ target: PQConnection, schema: String?, options: CloneOptions) async throws -> [Check] {
        var checks: [Check] = []
        if let schema {
            let exists = try await source.query("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) $1", [schema])
            guard !exists.rows.isEmpty else { return [.fail("schema", "schema \"\(schema)\" does not exist on source")] }
        }
        // Source privileges: every relation of the scope must be readable.
        let unreadable = try await source.query("""
            SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
            WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,S,m}') AND \(scope) AND NOT pg_catalog.has_table_privilege(c.oid, 'SELECT')
            ORDER BY 1
            """, [schema]).strings.compactMap { $0 }
        checks.append(unreadable.isEmpty ? .ok("source privileges", "every relation in scope is readable")
                                         : .fail("source privileges", "the source role cannot read \(list(unreadable))"))
        // Target privileges: CREATE in the schema, or in the database to make it.
        let canCreate = try await target.query("""
            SELECT CASE WHEN $1::pg_catalog.text IS NOT NULL AND pg_catalog.to_regnamespace(pg_catalog.quote_ident($1)) IS NOT NULL
                        THEN pg_catalog.has_schema_privilege(pg_catalog.to_regnamespace(pg_catalog.quote_ident($1))::pg_catalog.oid, 'CREATE')
                        ELSE pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE') END
            """, [schema]).string(0, 0) == "t"
        checks.append(canCreate ? .ok("target privileges", "the calling role may create \(schema.map { "in schema \($0)" } ?? "schemas")")
                                : .fail("target privileges", "the calling role may not create \(schema.map { "in schema \($0)" } ?? "schemas in this database")"))
        // Name conflicts under the chosen strategy.
        let tablesQuery = """
            SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
            WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p}') AND NOT c.relispartition AND \(scope) ORDER BY 1
            """
        let sourceTables = try await source.query(tablesQuery, [schema]).strings.compactMap { $0 }
        let targetTables = Set(try await target.query(tablesQuery, [schema]).strings.compactMap { $0 })
        let conflicts = sourceTables.filter(targetTables.contains)
        if conflicts.isEmpty {
            checks.append(.ok("name conflicts", "none of the \(sourceTables.count) tables exists on the target"))
        } else {
            let names = list(conflicts)
            switch options.conflict {
            case .error: checks.append(.fail("name conflicts", "already on the target (conflict \"error\"): \(names)"))
            case .skip: checks.append(.warn("name conflicts", "already on the target, will be skipped: \(names)"))
            case .replace: checks.append(.warn("name conflicts", "already on the target, will be replaced: \(names)"))
            case .rename: checks.append(.warn("name conflicts", "already on the target, will be renamed to <name>_old: \(names)"))
            }
        }
        // Size.
        let size = try await source.query("""
            SELECT pg_catalog.pg_size_pretty(COALESCE(pg_catalog.sum(pg_catalog.pg_total_relation_size(c.oid)), 0)::pg_catalog.int8)
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
            WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{r,m}') AND \(scope)
            """, [schema]).string(0, 0) ?? "?"
        checks.append(.ok("size", "\(size) on the source (tables with their indexes and TOAST); PostgreSQL does not report the target's free disk space"))
        // Extensions.
        let extensions = try await source.exec("""
            SELECT e.extname::pg_catalog.text, n.nspname::pg_catalog.text FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace
            WHERE e.extname OPERATOR(pg_catalog.<>) 'plpgsql' ORDER BY 1
            """)
        var missing: [String] = [], toCreate: [String] = [], notCreated: [String] = [], elsewhere: [String] = []
        for row in extensions.rows.indices {
            let name = extensions.string(row, 0) ?? "", home = extensions.string(row, 1) ?? ""
            let state = try await target.query("""
                SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) $1),
                       EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name OPERATOR(pg_catalog.=) $1),
                       (SELECT n.nspname::pg_catalog.text FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace
                        WHERE e.extname OPERATOR(pg_catalog.=) $1)
                """, [name])
            if state.string(0, 0) == "t" {
                // Installed elsewhere on the target: what the clone makes names it by the source's schema.
                if let there = state.string(0, 2), there != home, schema == nil || schema == home {
                    elsewhere.append("\(name) (in schema \(there) on the target, \(home) on the source)")
                }
                continue
            }
            // A clone creates the extensions installed in the schemas it clones (all of them for a
            // database); one installed elsewhere is left to the target's administrator.
            if let schema, home != schema {
                notCreated.append("\(name) (in schema \(home))")
            } else if state.string(0, 1) == "t" {
                toCreate.append(name)
            } else {
                missing.append(name)
            }
        }
        if !missing.isEmpty || !elsewhere.isEmpty {
            checks.append(.fail("extensions", [missing.isEmpty ? nil : "not available on the target server: \(list(missing))",
                                               elsewhere.isEmpty ? nil : "installed in another schema on the target: \(list(elsewhere))"]
                .compactMap { $0 }.joined(separator: "; ")))
        } else if !notCreated.isEmpty {
            checks.append(.warn("extensions", "installed on the source but not on the target, and not created by a clone of schema \(schema ?? ""): \(list(notCreated)); objects that use them will fail"
                                + (toCreate.isEmpty ? "" : "; will be created on the target: \(list(toCreate))")))
        } else if !toCreate.isEmpty {
            checks.append(.warn("extensions", "will be created on the target: \(list(toCreate))"))
        } else {
            checks.append(.ok("extensions", extensions.rows.isEmpty ? "none needed" : "all installed on the target"))
        }
        // Collations of the columns in scope.
        let collations = try await source.query("""
            SELECT DISTINCT pg_catalog.format('%I.%I', cn.nspname, co.collname), cn.nspname::pg_catalog.text, co.collname::pg_catalog.text
            FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.attrelid
            JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
            JOIN pg_catalog.pg_collation co ON co.oid OPERATOR(pg_catalog.=) a.attcollation
            JOIN pg_catalog.pg_namespace cn ON cn.oid OPERATOR(pg_catalog.=) co.collnamespace
            WHERE a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped AND co.collname OPERATOR(pg_catalog.<>) 'default' AND \(scope)
            ORDER BY 1
            """, [schema])
        var absent: [String] = []
        for row in collations.rows.indices {
            let collationSchema = collations.string(row, 1) ?? "", name = collations.string(row, 2) ?? ""
            // Collations in the cloned schema itself are created by the clone.
            if collationSchema == schema { continue }
            let found = try await target.query("""
                SELECT 1 FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn ON cn.oid OPERATOR(pg_catalog.=) co.collnamespace
                WHERE cn.nspname OPERATOR(pg_catalog.=) $1 AND co.collname OPERATOR(pg_catalog.=) $2
                """, [collationSchema, name])
            if found.rows.isEmpty { absent.append(collations.string(row, 0) ?? name) }
        }
        checks.append(absent.isEmpty ? .ok("collations", collations.rows.isEmpty ? "only database defaults" : "all present on the target")
                                     : .fail("collations", "missing on the target: \(list(absent))"))
        // Kinds a clone does not make, and what in scope uses them (a view over a foreign table):
        // those fail the clone.
        let uncloned = try await source.query("""
            SELECT o.kind || ' ' || pg_catalog.format('%I.%I', n.nspname, o.name),
                   -- (What uses them in the scope only: a rule's schema is its relation's.)
                   (SELECT pg_catalog.string_agg(DISTINCT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid), ', ')
                    FROM pg_catalog.pg_depend d
                    LEFT JOIN pg_catalog.pg_rewrite dr ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND dr.oid OPERATOR(pg_catalog.=) d.objid
                    LEFT JOIN pg_catalog.pg_class dc ON dc.oid OPERATOR(pg_catalog.=) dr.ev_class
                    LEFT JOIN pg_catalog.pg_namespace dn ON dn.oid OPERATOR(pg_catalog.=) dc.relnamespace
                    WHERE d.refclassid OPERATOR(pg_catalog.=) o.cls AND d.refobjid OPERATOR(pg_catalog.=) o.oid AND d.deptype OPERATOR(pg_catalog.=) 'n'
                      AND ($1::pg_catalog.text IS NULL
                           OR COALESCE((pg_catalog.pg_identify_object(d.classid, d.objid, d.objsubid)).schema, dn.nspname::pg_catalog.text) OPERATOR(pg_catalog.=) $1))
            FROM (
              SELECT 'foreign table' AS kind, oid, 'pg_catalog.pg_class'::pg_catalog.regclass AS cls, relnamespace AS ns, relname::pg_catalog.text AS name FROM pg_catalog.pg_class
                WHERE relkind OPERATOR(pg_catalog.=) 'f'
              UNION ALL SELECT 'range type with a canonical function', t.oid, 'pg_catalog.pg_type'::pg_catalog.regclass, t.typnamespace, t.typname::pg_catalog.text
                FROM pg_catalog.pg_type t JOIN pg_catalog.pg_range r ON r.rngtypid OPERATOR(pg_catalog.=) t.oid WHERE r.rngcanonical OPERATOR(pg_catalog.<>) 0
            ) o JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) o.ns
            WHERE n.nspname OPERATOR(pg_catalog.!~) '^pg_' AND n.nspname OPERATOR(pg_catalog.<>) ALL ('{information_schema,pgclone,pgclone_masked}')
              AND ($1::pg_catalog.text IS NULL OR n.nspname OPERATOR(pg_catalog.=) $1)
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e WHERE e.classid OPERATOR(pg_catalog.=) o.cls AND e.objid OPERATOR(pg_catalog.=) o.oid
                              AND e.deptype OPERATOR(pg_catalog.=) ANY ('{e,i}'))
            UNION ALL
            -- Foreign tables of other schemas that views of the cloned schema read.
            SELECT 'foreign table ' OPERATOR(pg_catalog.||) pg_catalog.format('%I.%I', fn.nspname, f.relname),
                   pg_catalog.string_agg(DISTINCT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid), ', ')
            FROM pg_catalog.pg_class f JOIN pg_catalog.pg_namespace fn ON fn.oid OPERATOR(pg_catalog.=) f.relnamespace
            JOIN pg_catalog.pg_depend d ON d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid OPERATOR(pg_catalog.=) f.oid
              AND d.deptype OPERATOR(pg_catalog.=) 'n' AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass
            JOIN pg_catalog.pg_rewrite r ON r.oid OPERATOR(pg_catalog.=) d.objid
            JOIN pg_catalog.pg_class v ON v.oid OPERATOR(pg_catalog.=) r.ev_class JOIN pg_catalog.pg_namespace vn ON vn.oid OPERATOR(pg_catalog.=) v.relnamespace
            WHERE f.relkind OPERATOR(pg_catalog.=) 'f' AND $1::pg_catalog.text IS NOT NULL
              AND fn.nspname OPERATOR(pg_catalog.<>) $1 AND vn.nspname OPERATOR(pg_catalog.=) $1
            GROUP BY fn.nspname, f.relname
            ORDER BY 1
            """, [schema])
        let unclonedNames = uncloned.rows.indices.map { uncloned.text($0, 0) }
        let used = uncloned.rows.indices.compactMap { row in uncloned.string(row, 1).map { "\($0) uses \(uncloned.text(row, 0))" } }
        if !used.isEmpty {
            checks.append(.fail("objects not cloned", "a clone does not make these, and the clone would fail on what uses them: \(list(used)); create them on the target first"))
        } else if !unclonedNames.isEmpty {
            checks.append(.warn("objects not cloned", "a clone does not make these (create them on the target if needed): \(list(unclonedNames))"))
        } else {
            checks.append(.ok("objects not cloned", "none: a clone makes every object in scope"))
        }
        // Objects of other schemas the cloned one uses (a text search parser, an operator class,
        // an aggregate, a type): a schema the target lacks fails the clone (round 43 N6: preflight
        // said ok, and the error named no object). Extensions' objects are the extensions check's.
        if let schema {
            let used = try await source.query("""
                SELECT DISTINCT r.schema, r.type OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) r.identity
                FROM pg_catalog.pg_depend d
                LEFT JOIN pg_catalog.pg_rewrite rw ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND rw.oid OPERATOR(pg_catalog.=) d.objid
                LEFT JOIN pg_catalog.pg_class rc ON rc.oid OPERATOR(pg_catalog.=) rw.ev_class
                CROSS JOIN LATERAL pg_catalog.pg_identify_object(d.classid, d.objid, d.objsubid) o
                CROSS JOIN LATERAL pg_catalog.pg_identify_object(d.refclassid, d.refobjid, 0) r
                WHERE d.objid OPERATOR(pg_catalog.>=) 16384 AND d.refobjid OPERATOR(pg_catalog.>=) 16384 AND d.deptype OPERATOR(pg_catalog.=) 'n'
                  -- (pg_identify_object gives schemas as identifiers, quoted where needed.)
                  AND COALESCE(o.schema, (SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_namespace n WHERE n.oid OPERATOR(pg_catalog.=) rc.relnamespace))
                      OPERATOR(pg_catalog.=) pg_catalog.quote_ident($1)
                  AND r.schema IS NOT NULL AND r.schema OPERATOR(pg_catalog.<>) pg_catalog.quote_ident($1)
                  AND r.schema OPERATOR(pg_catalog.<>) ALL ('{pg_catalog,information_schema,pgclone,pgclone_masked}')
                  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e WHERE e.classid OPERATOR(pg_catalog.=) d.refclassid AND e.objid OPERATOR(pg_catalog.=) d.refobjid
                                  AND e.deptype OPERATOR(pg_catalog.=) 'e')
                ORDER BY 1, 2
                """, [schema])
            var missingSchemas: [String: [String]] = [:]
            for row in used.rows.indices {
                let home = used.text(row, 0)
                let present = try await target.query("SELECT pg_catalog.to_regnamespace($1) IS NOT NULL", [home]).string(0, 0) == "t"
                if !present { missingSchemas[home, default: []].append(used.text(row, 1)) }
            }
            if missingSchemas.isEmpty {
                checks.append(.ok("other schemas", used.rows.isEmpty ? "none used" : "the schemas whose objects it uses are on the target"))
            } else {
                checks.append(.fail("other schemas", missingSchemas.keys.sorted().map { "schema \($0), which the target lacks, holds \(list(missingSchemas[$0] ?? []))" }
                    .joined(separator: "; ") + "; clone those schemas first"))
            }
        }
        // Routines in C or internal are a superuser's to make (round 44f M3: the clone failed
        // with 42501 after preflight said ok).
        let superuser = try await target.query("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) current_user").string(0, 0) == "t"
        if !superuser {
            let native = try await source.query("""
                SELECT pg_catalog.format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid))
                FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
                JOIN pg_catalog.pg_language l ON l.oid OPERATOR(pg_catalog.=) p.prolang
                WHERE l.lanname OPERATOR(pg_catalog.=) ANY ('{c,internal}')
                  AND n.nspname OPERATOR(pg_catalog.!~) '^pg_' AND n.nspname OPERATOR(pg_catalog.<>) ALL ('{information_schema,pgclone,pgclone_masked}')
                  AND ($1::pg_catalog.text IS NULL OR n.nspname OPERATOR(pg_catalog.=) $1)
                  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e WHERE e.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
                                  AND e.objid OPERATOR(pg_catalog.=) p.oid AND e.deptype OPERATOR(pg_catalog.=) ANY ('{e,i}'))
                ORDER BY 1
                """, [schema]).strings.compactMap { $0 }
            checks.append(native.isEmpty ? .ok("superuser objects", "none in scope")
                                         : .fail("superuser objects", "routines in C or internal, which only a superuser may create: \(list(native)); create them on the target as a superuser first"))
        }
        // Roles that grants refer to.
        let grantees = try await source.query("""
            SELECT DISTINCT pg_catalog.pg_get_userbyid(a.grantee)::pg_catalog.text
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace, pg_catalog.aclexplode(c.relacl) a
            WHERE a.grantee OPERATOR(pg_catalog.<>) 0 AND a.grantee OPERATOR(pg_catalog.<>) c.relowner AND \(scope)
            ORDER BY 1
            """, [schema]).strings.compactMap { $0 }
        var unknownRoles: [String] = []
        for role in grantees where try await target.query("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) $1", [role]).rows.isEmpty {
            unknownRoles.append(role)
        }
        checks.append(unknownRoles.isEmpty ? .ok("roles", grantees.isEmpty ? "no grants to roles" : "every role that grants name exists on the target")
                                           : .warn("roles", "grants to roles missing on the target will be skipped (pgclone.clone_roles creates them): \(list(unknownRoles))"))
        return checks
    }
}
