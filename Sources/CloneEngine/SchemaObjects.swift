import PQ

/// Non-table objects of source schemas, each with its DDL, in an order derived
/// from pg_depend so that everything exists before what uses it.
struct SchemaObjects: Sendable {
    /// The statement that creates routine `p` (pg_proc, with `n` its pg_namespace and `a` its
    /// LEFT JOINed pg_aggregate): pg_get_functiondef for functions and procedures, built for
    /// window functions, built for aggregates (plain, ordered-set and hypothetical-set: their
    /// argument list says `ORDER BY`, and their FINALFUNC_MODIFY defaults to READ_WRITE, not
    /// READ_ONLY). Read on the target too, to tell a routine already there with the same
    /// definition from another one. Both forms say CREATE OR REPLACE (PostgreSQL 12 and later),
    /// so either puts a routine back.
    static let routineDefinition = """
           CASE WHEN p.prokind IN ('f', 'p', 'w') THEN pg_catalog.pg_get_functiondef(p.oid)
                WHEN p.prokind = 'a' THEN
                  'CREATE OR REPLACE AGGREGATE ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(p.proname)
                  || '(' || pg_catalog.pg_get_function_arguments(p.oid) || ') (SFUNC = ' || a.aggtransfn::pg_catalog.regproc
                  || ', STYPE = ' || pg_catalog.format_type(a.aggtranstype, NULL)
                  || CASE WHEN a.aggtransspace <> 0 THEN ', SSPACE = ' || a.aggtransspace ELSE '' END
                  || CASE WHEN a.aggfinalfn <> 0 THEN ', FINALFUNC = ' || a.aggfinalfn::pg_catalog.regproc ELSE '' END
                  || CASE WHEN a.aggfinalextra THEN ', FINALFUNC_EXTRA' ELSE '' END
                  || CASE WHEN a.aggcombinefn <> 0 THEN ', COMBINEFUNC = ' || a.aggcombinefn::pg_catalog.regproc ELSE '' END
                  || CASE WHEN a.aggserialfn <> 0 THEN ', SERIALFUNC = ' || a.aggserialfn::pg_catalog.regproc ELSE '' END
                  || CASE WHEN a.aggdeserialfn <> 0 THEN ', DESERIALFUNC = ' || a.aggdeserialfn::pg_catalog.regproc ELSE '' END
                  || CASE WHEN a.agginitval IS NOT NULL THEN ', INITCOND = ' || pg_catalog.quote_literal(a.agginitval) ELSE '' END
                  || CASE WHEN a.aggfinalfn = 0 OR a.aggfinalmodify = CASE a.aggkind WHEN 'n' THEN 'r' ELSE 'w' END THEN ''
                          WHEN a.aggfinalmodify = 's' THEN ', FINALFUNC_MODIFY = SHAREABLE' WHEN a.aggfinalmodify = 'w' THEN ', FINALFUNC_MODIFY = READ_WRITE'
                          ELSE ', FINALFUNC_MODIFY = READ_ONLY' END
                  || CASE WHEN a.aggmtransfn <> 0 THEN ', MSFUNC = ' || a.aggmtransfn::pg_catalog.regproc || ', MINVFUNC = ' || a.aggminvtransfn::pg_catalog.regproc
                       || ', MSTYPE = ' || pg_catalog.format_type(a.aggmtranstype, NULL)
                       || CASE WHEN a.aggmtransspace <> 0 THEN ', MSSPACE = ' || a.aggmtransspace ELSE '' END
                       || CASE WHEN a.aggmfinalfn <> 0 THEN ', MFINALFUNC = ' || a.aggmfinalfn::pg_catalog.regproc ELSE '' END
                       || CASE WHEN a.aggmfinalextra THEN ', MFINALFUNC_EXTRA' ELSE '' END
                       || CASE a.aggmfinalmodify WHEN 's' THEN ', MFINALFUNC_MODIFY = SHAREABLE' WHEN 'w' THEN ', MFINALFUNC_MODIFY = READ_WRITE' ELSE '' END
                       || CASE WHEN a.aggminitval IS NOT NULL THEN ', MINITCOND = ' || pg_catalog.quote_literal(a.aggminitval) ELSE '' END
                     ELSE '' END
                  || CASE WHEN a.aggsortop <> 0 THEN ', SORTOP = OPERATOR(' || (SELECT pg_catalog.quote_ident(onsp.nspname) || '.' || o.oprname
                       FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace onsp ON onsp.oid = o.oprnamespace WHERE o.oid = a.aggsortop) || ')' ELSE '' END
                  || CASE WHEN p.proparallel = 's' THEN ', PARALLEL = SAFE' WHEN p.proparallel = 'r' THEN ', PARALLEL = RESTRICTED' ELSE '' END
                  || CASE WHEN a.aggkind = 'h' THEN ', HYPOTHETICAL' ELSE '' END
                  || ')'
           END
        """

    struct Object: Sendable {
        var kind: String
        /// A view or materialized view (`views` also holds the functions that read them).
        var isView: Bool { kind == "view" || kind == "materialized view" }
        var schema: String
        var name: String
        var oid: String
        var ddl: [String]
        /// GRANT/REVOKE statements as on the source.
        var grants: [String] = []
        /// For a SECURITY DEFINER function: its owner on the source.
        var securityDefinerOwner: String? = nil
        /// For a function: `"schema"."name"(identity arguments)`.
        var signature: String? = nil
        /// For a function: its regprocedure text (argument types only, no names), which
        /// to_regprocedure takes on the target.
        var regprocedure: String? = nil
        /// For an operator class or family: its index access method.
        var accessMethod: String? = nil
        /// `"schema"."name" USING method` for an operator class or family, else the qualified name.
        var qualifiedName: String {
            SQL.qualified(schema, name) + (accessMethod.map { " USING " + SQL.identifier($0) } ?? "")
        }
    }

    /// Collations (before the types and tables that use them).
    var collations: [Object] = []
    /// Text search parsers, templates, dictionaries, then configurations.
    var textSearch: [Object] = []
    var types: [Object] = []
    /// Range types (after the functions: subtype_diff), operators and casts (after the functions
    /// they call), each created before the tables.
    var ranges: [Object] = []
    var operators: [Object] = []
    var casts: [(object: Object, source: String, target: String)] = []
    /// Operator families, classes, then the families' loose members (after the operators and
    /// casts; before the tables, whose indexes use them).
    var operatorClasses: [Object] = []
    /// Encoding conversions (after the functions they call).
    var conversions: [Object] = []
    /// Range types that need nothing of the cloned schemas, by oid: made before the types
    /// (a composite or domain may use them; round 41 F7), the others after the functions.
    var rangesBeforeTypes: Set<String> = []
    /// Range types with a canonical function (they need a shell type): not cloned, said.
    var skippedRanges: [String] = []
    /// Objects of kinds a clone does not recreate (text search, operator classes, foreign
    /// tables...), as "kind schema.name": said in the result.
    var notCloned: [String] = []
    /// Every function, ordered by their dependencies on each other.
    var functions: [Object] = []
    /// Functions that need a table (its row type as a parameter or result, or a `BEGIN ATOMIC`
    /// body that reads it), or a function that does, by oid: created after the tables.
    var functionsAfterTables: Set<String> = []
    /// Functions that text search parsers or templates of the cloned schemas call, by oid:
    /// created before them (they need nothing of the schema but C code).
    var functionsBeforeTextSearch: Set<String> = []
    /// Functions that need a view or materialized view: created among the views (`views`),
    /// after the ones they read and before the ones that call them.
    var functionsAfterViews: Set<String> = []
    /// What those functions need, as (function oid, view or function oid) pairs.
    var functionsAfterViewsNeed: [(String, String)] = []
    /// For each function created after the tables: the tables (`schema.name`) it needs.
    var tablesNeeded: [String: Set<String>] = [:]
    /// For each table (`schema.name`): the functions created after the tables that its
    /// defaults, checks, indexes, triggers or policies call (it waits for them).
    var functionsCalledByTable: [String: Set<String>] = [:]
    /// For each table (`schema.name`): its indexes that call a function created after the tables
    /// which needs this very table: made once the functions are.
    var indexesAfterFunctions: [String: Set<String>] = [:]
    /// A domain constraint that was NOT VALID on the source: added after the rows (which may
    /// break them), as pg_dump does.
    struct NotValidDomainConstraint: Sendable {
        /// `schema.name` of the domain, as `typesCreated` holds it.
        var domain: String
        var qualifiedDomain: String
        var name: String
        var statements: [String]
    }
    var domainConstraintsAfterData: [NotValidDomainConstraint] = []
    /// Validated domain constraints that call a function of the cloned schemas: added to the
    /// domains a clone made once the functions exist.
    var domainConstraintsAfterFunctions: [NotValidDomainConstraint] = []
    var skippedFunctions: [String] = []
    var sequences: [(object: Object, lastValue: String, isCalled: Bool)] = []
    var views: [Object] = []
    /// COMMENT ON SCHEMA statements, for the schemas a clone creates.
    var schemaComments: [String: String] = [:]
    /// GRANT statements on the schemas, for the schemas a clone creates.
    var schemaGrants: [String: [String]] = [:]
    /// ALTER DEFAULT PRIVILEGES ... IN SCHEMA statements, for the schemas a clone creates.
    var defaultPrivileges: [String: [String]] = [:]
    /// Extensions installed into the cloned schemas, in creation order: created on the target
    /// (their member objects are not cloned one by one, as pg_dump does).
    var extensions: [(name: String, schema: String)] = []
    /// GRANT and REVOKE statements that bring the extensions' own objects' privileges from what
    /// CREATE EXTENSION gives them to what the source has.
    var extensionMemberGrants: [String] = []

    /// Enums, composites (free-standing only) and domains of the schemas `$1`: oid, typtype,
    /// schema, name, CREATE statement, comment.
    /// Whether constraint `oid` calls a function of the schemas `$1` lists.
    static func callsFunctionOfSchemas(_ oid: String) -> String {
        """
        EXISTS (SELECT 1 FROM pg_catalog.pg_depend dd JOIN pg_catalog.pg_proc dp ON dp.oid = dd.refobjid
                JOIN pg_catalog.pg_namespace dpn ON dpn.oid = dp.pronamespace
                WHERE dd.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND dd.objid = \(oid)
                  AND dd.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND dpn.nspname = ANY($1::pg_catalog.text[]))
        """
    }

    static let typeQuery = """
            SELECT t.oid, t.typtype, n.nspname, t.typname,
              CASE t.typtype
                WHEN 'e' THEN 'CREATE TYPE ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname) || ' AS ENUM ('
                  || COALESCE((SELECT pg_catalog.string_agg(pg_catalog.quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid), '') || ')'
                WHEN 'c' THEN 'CREATE TYPE ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname) || ' AS ('
                  || COALESCE((SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname) || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod)
                                    || CASE WHEN a.attcollation <> 0 AND a.attcollation <> at.typcollation THEN ' COLLATE ' || \(collationName("a.attcollation")) ELSE '' END,
                                    ', ' ORDER BY a.attnum)
                     FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type at ON at.oid = a.atttypid
                     WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '') || ')'
                WHEN 'd' THEN 'CREATE DOMAIN ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname) || ' AS '
                  || pg_catalog.format_type(t.typbasetype, t.typtypmod)
                  || CASE WHEN t.typcollation <> 0 AND t.typcollation <> (SELECT b.typcollation FROM pg_catalog.pg_type b WHERE b.oid = t.typbasetype)
                          THEN ' COLLATE ' || \(collationName("t.typcollation")) ELSE '' END
                  || CASE WHEN t.typdefault IS NOT NULL THEN ' DEFAULT ' || t.typdefault ELSE '' END
                  || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
                  -- NOT VALID constraints cannot be written inline: they are added after (as pg_dump does).
                  -- Nor those calling a function of the cloned schemas: added after the functions.
                  || COALESCE((SELECT pg_catalog.string_agg(' CONSTRAINT ' || pg_catalog.quote_ident(c.conname) || ' ' || pg_catalog.pg_get_constraintdef(c.oid), '' ORDER BY c.conname)
                     FROM pg_catalog.pg_constraint c WHERE c.contypid = t.oid AND c.convalidated AND NOT \(callsFunctionOfSchemas("c.oid"))), '')
              END,
              pg_catalog.obj_description(t.oid, 'pg_type'),
              t.typacl IS NOT NULL, \(Privileges.sqlEntries(acl: "t.typacl", owner: "t.typowner"))
            FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
            WHERE n.nspname = ANY($1::pg_catalog.text[])
              AND (t.typtype IN ('e', 'd') OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c'))
              AND NOT \(isExtensionMember(classOID: "t.oid", catalog: "pg_type")) AND NOT \(isExtensionMember(classOID: "t.typrelid"))
            """

    /// The CREATE statements of the types of `schemas` on `connection`, by `schema.name`: a
    /// type that already exists on the target is compared with the source's this way.
    static func typeDefinitions(_ connection: PQConnection, schemas: [String]) async throws -> [String: String] {
        let list = "{" + schemas.map { "\"" + $0.replacingQuotes() + "\"" }.joined(separator: ",") + "}"
        let rows = try await connection.query(typeQuery, [list])
        var definitions: [String: String] = [:]
        for row in rows.rows.indices { definitions["\(rows.text(row, 2)).\(rows.text(row, 3))"] = rows.text(row, 4) }
        return definitions
    }

    /// SQL expression: the qualified, quoted name of the collation whose oid is `oid`.
    static func collationName(_ oid: String) -> String {
        "(SELECT pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname) FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = \(oid))"
    }

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
            let schema = schemaRows.text(row, 0)
            if let comment = schemaRows.string(row, 1) {
                objects.schemaComments[schema] = "COMMENT ON SCHEMA \(SQL.identifier(schema)) IS \(SQL.literal(comment))"
            }
            objects.schemaGrants[schema] = Privileges(encoded: schemaRows.string(row, 2)).statements(on: "SCHEMA \(SQL.identifier(schema))")
        }

        // Default privileges set for the schemas (ALTER DEFAULT PRIVILEGES ... IN SCHEMA).
        let defaultACLs = try await source.query("""
            SELECT pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(d.defaclrole)), n.nspname,
                   CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS' WHEN 'T' THEN 'TYPES' WHEN 'n' THEN 'SCHEMAS' END,
                   a.privilege_type, a.is_grantable, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END
            FROM pg_catalog.pg_default_acl d JOIN pg_catalog.pg_namespace n ON n.oid = d.defaclnamespace, pg_catalog.aclexplode(d.defaclacl) a
            WHERE n.nspname = ANY($1::pg_catalog.text[])
            ORDER BY 1, 2, 3, 6, 4
            """, [list])
        for row in defaultACLs.rows.indices {
            guard let kind = defaultACLs.string(row, 2), let privilege = defaultACLs.string(row, 3),
                  privilege.allSatisfy({ $0.isLetter || $0 == " " }) else { continue }
            let schema = defaultACLs.text(row, 1)
            objects.defaultPrivileges[schema, default: []].append(
                "ALTER DEFAULT PRIVILEGES FOR ROLE \(defaultACLs.text(row, 0)) IN SCHEMA \(SQL.identifier(schema)) GRANT \(privilege) ON \(kind) TO \(defaultACLs.text(row, 5))"
                + (defaultACLs.string(row, 4) == "t" ? " WITH GRANT OPTION" : ""))
        }

        let extensionRows = try await source.query("""
            SELECT e.extname, n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
            WHERE n.nspname = ANY($1::pg_catalog.text[]) ORDER BY e.oid
            """, [list])
        objects.extensions = extensionRows.rows.indices.map { (extensionRows.text($0, 0), extensionRows.text($0, 1)) }

        // Privileges changed on the extensions' own objects since they were made (pg_init_privs
        // holds what CREATE EXTENSION gave them), as pg_dump carries them: REVOKE EXECUTE ... FROM
        // PUBLIC on an extension's function is kept (round 41 F5).
        let memberGrants = try await source.query("""
            WITH m AS (
              SELECT 'FUNCTION ' || p.oid::pg_catalog.regprocedure::pg_catalog.text AS object, p.proowner AS owner,
                     COALESCE(p.proacl, pg_catalog.acldefault('f'::pg_catalog."char", p.proowner)) AS acl, COALESCE(ip.initprivs, pg_catalog.acldefault('f'::pg_catalog."char", p.proowner)) AS init
              FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
              LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND ip.objoid = p.oid AND ip.objsubid = 0
              WHERE n.nspname = ANY($1::pg_catalog.text[]) AND \(isExtensionMember(classOID: "p.oid", catalog: "pg_proc"))
              UNION ALL
              SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE ' ELSE 'TABLE ' END || c.oid::pg_catalog.regclass::pg_catalog.text, c.relowner,
                     COALESCE(c.relacl, pg_catalog.acldefault((CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END)::pg_catalog."char", c.relowner)),
                     COALESCE(ip.initprivs, pg_catalog.acldefault((CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END)::pg_catalog."char", c.relowner))
              FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND ip.objoid = c.oid AND ip.objsubid = 0
              WHERE n.nspname = ANY($1::pg_catalog.text[]) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND \(isExtensionMember(classOID: "c.oid"))
              UNION ALL
              SELECT 'TYPE ' || pg_catalog.format_type(t.oid, NULL), t.typowner,
                     COALESCE(t.typacl, pg_catalog.acldefault('T'::pg_catalog."char", t.typowner)), COALESCE(ip.initprivs, pg_catalog.acldefault('T'::pg_catalog."char", t.typowner))
              FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
              LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = 'pg_catalog.pg_type'::pg_catalog.regclass AND ip.objoid = t.oid AND ip.objsubid = 0
              WHERE n.nspname = ANY($1::pg_catalog.text[]) AND \(isExtensionMember(classOID: "t.oid", catalog: "pg_type"))
            ), grantee AS (
              SELECT 0::pg_catalog.oid AS oid, 'PUBLIC'::pg_catalog.text AS name
              UNION ALL SELECT r.oid, pg_catalog.quote_ident(r.rolname) FROM pg_catalog.pg_roles r
            )
            SELECT 1, m.object, 'REVOKE ' || b.privilege_type || ' ON ' || m.object || ' FROM ' || g.name
            FROM m, pg_catalog.aclexplode(m.init) b JOIN grantee g ON g.oid = b.grantee
            WHERE b.grantee <> m.owner
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.aclexplode(m.acl) a WHERE a.grantee = b.grantee AND a.privilege_type = b.privilege_type)
            UNION ALL
            SELECT 2, m.object, 'GRANT ' || a.privilege_type || ' ON ' || m.object || ' TO ' || g.name || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END
            FROM m, pg_catalog.aclexplode(m.acl) a JOIN grantee g ON g.oid = a.grantee
            WHERE a.grantee <> m.owner
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.aclexplode(m.init) b WHERE b.grantee = a.grantee AND b.privilege_type = a.privilege_type
                                                                            AND b.is_grantable = a.is_grantable)
            ORDER BY 1, 2, 3
            """, [list])
        objects.extensionMemberGrants = memberGrants.rows.indices.map { memberGrants.text($0, 2) }

        // Types: enums, composites (free-standing only), domains; ordered by their dependencies.
        let typeRows = try await source.query(Self.typeQuery, [list])
        let typeDependencies = try await source.query("""
            SELECT DISTINCT t.oid, d.refobjid
            FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
            JOIN pg_catalog.pg_depend d ON (d.objid = t.oid AND d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass)
                                         OR (d.objid = t.typrelid AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass)
            WHERE n.nspname = ANY($1::pg_catalog.text[]) AND d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass
            """, [list])
        // After each type: its NOT VALID domain constraints, and comments on its constraints and attributes.
        let typeExtras = try await source.query("""
            SELECT t.oid, 'COMMENT ON CONSTRAINT ' || pg_catalog.quote_ident(c.conname) || ' ON DOMAIN ' || pg_catalog.quote_ident(n.nspname) || '.'
                          || pg_catalog.quote_ident(t.typname) || ' IS ' || pg_catalog.quote_literal(d.description), 1, c.conname
            FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace JOIN pg_catalog.pg_constraint c ON c.contypid = t.oid
            JOIN pg_catalog.pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_catalog.pg_constraint'::pg_catalog.regclass
            WHERE n.nspname = ANY($1::pg_catalog.text[]) AND c.convalidated AND NOT \(callsFunctionOfSchemas("c.oid"))
            UNION ALL
            SELECT t.oid, 'COMMENT ON COLUMN ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname) || '.'
                          || pg_catalog.quote_ident(a.attname) || ' IS ' || pg_catalog.quote_literal(d.description), 2, a.attname
            FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
            JOIN pg_catalog.pg_attribute a ON a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
            JOIN pg_catalog.pg_description d ON d.objoid = t.typrelid AND d.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid = a.attnum
            WHERE n.nspname = ANY($1::pg_catalog.text[]) AND t.typtype = 'c'
            ORDER BY 1, 3, 4
            """, [list])
        var extras: [String: [String]] = [:]
        for row in typeExtras.rows.indices { extras[typeExtras.text(row, 0), default: []].append(typeExtras.text(row, 1)) }
        // Domain constraints calling the schemas' own functions (round 41 F7: the domain came
        // before its function), added once the functions are there.
        let calling = try await source.query("""
            SELECT n.nspname, t.typname, c.conname, 'ALTER DOMAIN ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname)
                   || ' ADD CONSTRAINT ' || pg_catalog.quote_ident(c.conname) || ' ' || pg_catalog.pg_get_constraintdef(c.oid),
                   'COMMENT ON CONSTRAINT ' || pg_catalog.quote_ident(c.conname) || ' ON DOMAIN ' || pg_catalog.quote_ident(n.nspname) || '.'
                   || pg_catalog.quote_ident(t.typname) || ' IS ' || pg_catalog.quote_literal(pg_catalog.obj_description(c.oid, 'pg_constraint'))
            FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace JOIN pg_catalog.pg_constraint c ON c.contypid = t.oid
            WHERE n.nspname = ANY($1::pg_catalog.text[]) AND c.convalidated AND \(callsFunctionOfSchemas("c.oid"))
            ORDER BY n.nspname, t.typname, c.conname
            """, [list])
        for row in calling.rows.indices {
            let (schema, name) = (calling.text(row, 0), calling.text(row, 1))
            objects.domainConstraintsAfterFunctions.append(NotValidDomainConstraint(
                domain: "\(schema).\(name)", qualifiedDomain: SQL.qualified(schema, name), name: calling.text(row, 2),
                statements: [calling.text(row, 3)] + (calling.string(row, 4).map { [$0] } ?? [])))
        }
        let notValid = try await source.query("""
            SELECT n.nspname, t.typname, c.conname, 'ALTER DOMAIN ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname)
                   || ' ADD CONSTRAINT ' || pg_catalog.quote_ident(c.conname) || ' ' || pg_catalog.pg_get_constraintdef(c.oid),
                   'COMMENT ON CONSTRAINT ' || pg_catalog.quote_ident(c.conname) || ' ON DOMAIN ' || pg_catalog.quote_ident(n.nspname) || '.'
                   || pg_catalog.quote_ident(t.typname) || ' IS ' || pg_catalog.quote_literal(pg_catalog.obj_description(c.oid, 'pg_constraint'))
            FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace JOIN pg_catalog.pg_constraint c ON c.contypid = t.oid
            WHERE n.nspname = ANY($1::pg_catalog.text[]) AND NOT c.convalidated
            ORDER BY n.nspname, t.typname, c.conname
            """, [list])
        for row in notValid.rows.indices {
            let (schema, name) = (notValid.text(row, 0), notValid.text(row, 1))
            objects.domainConstraintsAfterData.append(NotValidDomainConstraint(
                domain: "\(schema).\(name)", qualifiedDomain: SQL.qualified(schema, name), name: notValid.text(row, 2),
                statements: [notValid.text(row, 3)] + (notValid.string(row, 4).map { [$0] } ?? [])))
        }
        let types = typeRows.rows.indices.map { row in
            // GRANT ... ON TYPE serves domains too.
            let privileges = Privileges(encoded: typeRows.string(row, 7), hasExplicitACL: typeRows.string(row, 6) == "t", publicDefault: "USAGE")
            return Object(kind: "type", schema: typeRows.text(row, 2), name: typeRows.text(row, 3), oid: typeRows.text(row, 0),
                          ddl: [typeRows.text(row, 4)] + (extras[typeRows.text(row, 0)] ?? []) + (typeRows.string(row, 5).map { comment in
                              "COMMENT ON \(typeRows.string(row, 1) == "d" ? "DOMAIN" : "TYPE") \(SQL.qualified(typeRows.text(row, 2), typeRows.text(row, 3))) IS \(SQL.literal(comment))"
                          }.map { [$0] } ?? []),
                          grants: privileges.statements(on: "TYPE \(SQL.qualified(typeRows.text(row, 2), typeRows.text(row, 3)))"))
        }
        objects.types = topologicalOrder(types, edges: typeDependencies)

        // Functions, procedures and aggregates. The identity arguments name the routine after
        // ROUTINE (GRANT, COMMENT, DROP): an ordered-set aggregate's say `ORDER BY` there, which
        // only AGGREGATE takes, so theirs are the plain argument types.
        let functionRows = try await source.query("""
            SELECT p.oid, n.nspname, p.proname, p.prokind,
                   \(routineDefinition),
                   CASE WHEN a.aggkind IN ('o', 'h')
                        THEN (SELECT pg_catalog.string_agg(pg_catalog.format_type(u.type, NULL), ', ' ORDER BY u.position)
                              FROM pg_catalog.unnest(p.proargtypes) WITH ORDINALITY AS u(type, position))
                        ELSE pg_catalog.pg_get_function_identity_arguments(p.oid) END,
                   pg_catalog.obj_description(p.oid, 'pg_proc'),
                   p.proacl IS NOT NULL, \(Privileges.sqlEntries(acl: "p.proacl", owner: "p.proowner")),
                   CASE WHEN p.prosecdef THEN pg_catalog.pg_get_userbyid(p.proowner) END,
                   p.oid::pg_catalog.regprocedure::pg_catalog.text
            FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
            LEFT JOIN pg_catalog.pg_aggregate a ON a.aggfnoid = p.oid
            WHERE n.nspname = ANY($1::pg_catalog.text[])
              -- Extension members, and functions a type made for itself (a range type's constructors).
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid AND d.deptype IN ('e', 'i'))
            -- Aggregates after the functions they call.
            ORDER BY p.prokind = 'a', n.nspname, p.proname, p.oid
            """, [list])
        for row in functionRows.rows.indices {
            let name = "\(functionRows.text(row, 1)).\(functionRows.text(row, 2))(\(functionRows.string(row, 5) ?? ""))"
            let comment = functionRows.string(row, 6)
            guard let ddl = functionRows.string(row, 4) else {
                objects.skippedFunctions.append(name)
                continue
            }
            var statements = [ddl]
            if let comment {
                statements.append("COMMENT ON ROUTINE \(SQL.qualified(functionRows.text(row, 1), functionRows.text(row, 2)))(\(functionRows.string(row, 5) ?? "")) IS \(SQL.literal(comment))")
            }
            let privileges = Privileges(encoded: functionRows.string(row, 8), hasExplicitACL: functionRows.string(row, 7) == "t", publicDefault: "EXECUTE")
            var function = Object(kind: functionRows.string(row, 3) == "a" ? "aggregate" : functionRows.string(row, 3) == "p" ? "procedure" : "function",
                                            schema: functionRows.text(row, 1), name: functionRows.text(row, 2),
                                            oid: functionRows.text(row, 0), ddl: statements,
                                            grants: privileges.statements(on: "ROUTINE \(SQL.qualified(functionRows.text(row, 1), functionRows.text(row, 2)))(\(functionRows.string(row, 5) ?? ""))"),
                                            securityDefinerOwner: functionRows.string(row, 9))
            function.signature = "\(SQL.qualified(functionRows.text(row, 1), functionRows.text(row, 2)))(\(functionRows.string(row, 5) ?? ""))"
            function.regprocedure = functionRows.string(row, 10)
            objects.functions.append(function)
        }

        // What the functions need: relations (directly, or through a relation's row type or its
        // array) and other functions. A function that needs a table waits for the tables.
        let functionNeeds = try await source.query("""
            WITH needs AS (
              SELECT d.objid, d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass AS calls, d.refobjid,
                     CASE WHEN d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass THEN d.refobjid
                          WHEN d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass THEN
                            (SELECT COALESCE(NULLIF(t.typrelid, 0), (SELECT e.typrelid FROM pg_catalog.pg_type e WHERE e.oid = t.typelem))
                             FROM pg_catalog.pg_type t WHERE t.oid = d.refobjid) END AS relation
              FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_proc p ON p.oid = d.objid JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
              WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND n.nspname = ANY($1::pg_catalog.text[]) AND d.deptype = 'n'
                AND d.refclassid IN ('pg_catalog.pg_class'::pg_catalog.regclass, 'pg_catalog.pg_type'::pg_catalog.regclass, 'pg_catalog.pg_proc'::pg_catalog.regclass)
            )
            SELECT needs.objid, needs.calls, needs.refobjid, c.relkind, rn.nspname || '.' || c.relname, needs.relation
            FROM needs LEFT JOIN pg_catalog.pg_class c ON c.oid = needs.relation LEFT JOIN pg_catalog.pg_namespace rn ON rn.oid = c.relnamespace
            """, [list])
        var callees: [String: Set<String>] = [:]
        for row in functionNeeds.rows.indices {
            let function = functionNeeds.text(row, 0)
            if functionNeeds.string(row, 1) == "t" {
                callees[function, default: []].insert(functionNeeds.text(row, 2))
            } else if let kind = functionNeeds.string(row, 3) {
                if ["v", "m"].contains(kind) {
                    objects.functionsAfterViews.insert(function)
                    if let view = functionNeeds.string(row, 5) { objects.functionsAfterViewsNeed.append((function, view)) }
                }
                else if ["r", "p", "f"].contains(kind) {
                    objects.functionsAfterTables.insert(function)
                    if let table = functionNeeds.string(row, 4) { objects.tablesNeeded[function, default: []].insert(table) }
                }
            }
        }
        // A function that calls a later one is later too, and needs what it needs.
        var changed = true
        while changed {
            changed = false
            for (function, called) in callees {
                if !objects.functionsAfterViews.contains(function), !called.isDisjoint(with: objects.functionsAfterViews) {
                    objects.functionsAfterViews.insert(function)
                    changed = true
                }
                for callee in called where objects.functionsAfterTables.contains(callee) {
                    let before = objects.tablesNeeded[function]
                    let wasLater = objects.functionsAfterTables.contains(function)
                    objects.functionsAfterTables.insert(function)
                    objects.tablesNeeded[function, default: []].formUnion(objects.tablesNeeded[callee] ?? [])
                    if !wasLater || objects.tablesNeeded[function] != before { changed = true }
                }
            }
        }
        objects.functionsAfterTables.subtract(objects.functionsAfterViews)
        for (function, called) in callees where objects.functionsAfterViews.contains(function) {
            objects.functionsAfterViewsNeed += called.map { (function, $0) }
        }
        // Tables whose definitions call one of those functions.
        let tableCalls = try await source.query("""
            WITH calls AS (
              SELECT d.refobjid AS function,
                     CASE d.classid
                       WHEN 'pg_catalog.pg_attrdef'::pg_catalog.regclass THEN (SELECT ad.adrelid FROM pg_catalog.pg_attrdef ad WHERE ad.oid = d.objid)
                       WHEN 'pg_catalog.pg_constraint'::pg_catalog.regclass THEN (SELECT co.conrelid FROM pg_catalog.pg_constraint co WHERE co.oid = d.objid)
                       WHEN 'pg_catalog.pg_class'::pg_catalog.regclass THEN COALESCE((SELECT i.indrelid FROM pg_catalog.pg_index i WHERE i.indexrelid = d.objid), d.objid)
                       WHEN 'pg_catalog.pg_trigger'::pg_catalog.regclass THEN (SELECT tg.tgrelid FROM pg_catalog.pg_trigger tg WHERE tg.oid = d.objid)
                       WHEN 'pg_catalog.pg_policy'::pg_catalog.regclass THEN (SELECT po.polrelid FROM pg_catalog.pg_policy po WHERE po.oid = d.objid)
                     END AS relation
              FROM pg_catalog.pg_depend d WHERE d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
            )
            SELECT DISTINCT calls.function, n.nspname || '.' || c.relname
            FROM calls JOIN pg_catalog.pg_class c ON c.oid = calls.relation JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = ANY($1::pg_catalog.text[]) AND c.relkind IN ('r', 'p')
            """, [list])
        for row in tableCalls.rows.indices where objects.functionsAfterTables.contains(tableCalls.text(row, 0)) {
            objects.functionsCalledByTable[tableCalls.text(row, 1), default: []].insert(tableCalls.text(row, 0))
        }
        // Indexes calling such a function that needs their own table (its row type: round 41
        // F7): the function can only follow the table, so the index follows the function.
        let indexCalls = try await source.query("""
            SELECT d.refobjid, n.nspname || '.' || t.relname, ic.relname
            FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_index i ON i.indexrelid = d.objid
            JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
            JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
            WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
              AND n.nspname = ANY($1::pg_catalog.text[])
            """, [list])
        for row in indexCalls.rows.indices {
            let (function, table) = (indexCalls.text(row, 0), indexCalls.text(row, 1))
            guard objects.functionsAfterTables.contains(function), objects.tablesNeeded[function]?.contains(table) == true else { continue }
            objects.indexesAfterFunctions[table, default: []].insert(indexCalls.text(row, 2))
        }
        let calls = try await source.query("""
            SELECT d.objid, d.refobjid FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_proc p ON p.oid = d.objid JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
            WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
              AND n.nspname = ANY($1::pg_catalog.text[])
            """, [list])
        // Aggregates keep coming after ordinary functions (their support functions record no
        // dependency an ordering could use for every case); within each group, callees first.
        objects.functions = topologicalOrder(objects.functions.filter { $0.kind != "aggregate" }, edges: calls)
            + topologicalOrder(objects.functions.filter { $0.kind == "aggregate" }, edges: calls)

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
            let schema = sequenceRows.text(row, 1)
            let name = sequenceRows.text(row, 2)
            let state = try await source.exec("SELECT last_value, is_called FROM \(SQL.qualified(schema, name))")
            objects.sequences.append((
                Object(kind: "sequence", schema: schema, name: name, oid: sequenceRows.text(row, 0),
                       ddl: ["CREATE SEQUENCE \(SQL.qualified(schema, name)) \(sequenceRows.text(row, 3))"]
                           + (sequenceRows.string(row, 4).map { ["COMMENT ON SEQUENCE \(SQL.qualified(schema, name)) IS \(SQL.literal($0))"] } ?? []),
                       grants: Privileges(encoded: sequenceRows.string(row, 5)).statements(on: "SEQUENCE \(SQL.qualified(schema, name))")),
                state.text(0, 0), state.string(0, 1) == "t"))
        }

        try await loadOperatorsAndFriends(source, list: list, into: &objects)

        // Kinds a clone does not recreate: said, never skipped silently.
        let unsupported = try await source.query("""
            SELECT kind || ' ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(name)
            FROM (
              SELECT 'foreign table' AS kind, relnamespace AS ns, relname::pg_catalog.text AS name, oid, 'pg_catalog.pg_class'::pg_catalog.regclass AS cls FROM pg_catalog.pg_class WHERE relkind = 'f'
            ) o JOIN pg_catalog.pg_namespace n ON n.oid = o.ns
            WHERE n.nspname = ANY($1::pg_catalog.text[])
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = o.cls AND d.objid = o.oid AND d.deptype IN ('e', 'i'))
            ORDER BY 1
            """, [list])
        objects.notCloned = unsupported.rows.indices.map { unsupported.text($0, 0) }

        let (textSearch, textSearchFunctions) = try await textSearchObjects(source, list: list)
        objects.textSearch = textSearch
        let clonedFunctions = Set(objects.functions.map(\.oid))
        for called in textSearchFunctions.values { objects.functionsBeforeTextSearch.formUnion(called.filter { clonedFunctions.contains($0) }) }

        guard includeViews else { return objects }
        // Views and materialized views, ordered by what their rules read.
        let viewRows = try await source.query("""
            SELECT c.oid, c.relkind, n.nspname, c.relname, pg_catalog.pg_get_viewdef(c.oid),
                   pg_catalog.obj_description(c.oid, 'pg_class'), \(Privileges.sqlEntries(acl: "c.relacl", owner: "c.relowner")),
                   c.reloptions::pg_catalog.text, c.relispopulated, pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = ANY($1::pg_catalog.text[]) AND c.relkind IN ('v', 'm') AND NOT \(isExtensionMember(classOID: "c.oid"))
            """, [list])
        // What hangs off a view once it exists: column defaults and comments, rules other than
        // its own, INSTEAD OF (and other) triggers (a view's cannot be disabled), index comments.
        let viewExtras = try await source.query("""
            SELECT c.oid, 'ALTER VIEW ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) || ' ALTER COLUMN '
                          || pg_catalog.quote_ident(a.attname) || ' SET DEFAULT ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid), 0, a.attnum::pg_catalog.text
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_catalog.pg_attrdef d ON d.adrelid = c.oid JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.adnum
            WHERE n.nspname = ANY($1::pg_catalog.text[]) AND c.relkind = 'v'
            UNION ALL
            SELECT c.oid, 'COMMENT ON COLUMN ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) || '.'
                          || pg_catalog.quote_ident(a.attname) || ' IS ' || pg_catalog.quote_literal(ds.description), 1, a.attnum::pg_catalog.text
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
            JOIN pg_catalog.pg_description ds ON ds.objoid = c.oid AND ds.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND ds.objsubid = a.attnum
            WHERE n.nspname = ANY($1::pg_catalog.text[]) AND c.relkind IN ('v', 'm')
            UNION ALL
            SELECT c.oid, pg_catalog.pg_get_ruledef(r.oid), 2, r.rulename
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace JOIN pg_catalog.pg_rewrite r ON r.ev_class = c.oid
            WHERE n.nspname = ANY($1::pg_catalog.text[]) AND c.relkind = 'v' AND r.rulename <> '_RETURN'
            UNION ALL
            SELECT c.oid, 'COMMENT ON RULE ' || pg_catalog.quote_ident(r.rulename) || ' ON ' || pg_catalog.quote_ident(n.nspname) || '.'
                          || pg_catalog.quote_ident(c.relname) || ' IS ' || pg_catalog.quote_literal(ds.description), 3, r.rulename
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace JOIN pg_catalog.pg_rewrite r ON r.ev_class = c.oid
            JOIN pg_catalog.pg_description ds ON ds.objoid = r.oid AND ds.classoid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
            WHERE n.nspname = ANY($1::pg_catalog.text[]) AND c.relkind = 'v' AND r.rulename <> '_RETURN'
            UNION ALL
            SELECT c.oid, pg_catalog.pg_get_triggerdef(t.oid), 4, t.tgname
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace JOIN pg_catalog.pg_trigger t ON t.tgrelid = c.oid
            WHERE n.nspname = ANY($1::pg_catalog.text[]) AND c.relkind = 'v' AND NOT t.tgisinternal

            UNION ALL
            SELECT c.oid, 'COMMENT ON TRIGGER ' || pg_catalog.quote_ident(t.tgname) || ' ON ' || pg_catalog.quote_ident(n.nspname) || '.'
                          || pg_catalog.quote_ident(c.relname) || ' IS ' || pg_catalog.quote_literal(ds.description), 6, t.tgname
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace JOIN pg_catalog.pg_trigger t ON t.tgrelid = c.oid
            JOIN pg_catalog.pg_description ds ON ds.objoid = t.oid AND ds.classoid = 'pg_catalog.pg_trigger'::pg_catalog.regclass
            WHERE n.nspname = ANY($1::pg_catalog.text[]) AND c.relkind = 'v' AND NOT t.tgisinternal
            UNION ALL
            SELECT c.oid, 'COMMENT ON INDEX ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(ic.relname) || ' IS '
                          || pg_catalog.quote_literal(ds.description), 7, ic.relname
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace JOIN pg_catalog.pg_index i ON i.indrelid = c.oid
            JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
            JOIN pg_catalog.pg_description ds ON ds.objoid = ic.oid AND ds.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND ds.objsubid = 0
            WHERE n.nspname = ANY($1::pg_catalog.text[]) AND c.relkind = 'm'
            ORDER BY 1, 3, 4
            """, [list])
        var extrasByView: [String: [String]] = [:]
        for row in viewExtras.rows.indices { extrasByView[viewExtras.text(row, 0), default: []].append(viewExtras.text(row, 1)) }
        let viewDependencies = try await source.query("""
            SELECT DISTINCT r.ev_class, d.refobjid
            FROM pg_catalog.pg_rewrite r
            JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid
            JOIN pg_catalog.pg_class c ON c.oid = r.ev_class
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = ANY($1::pg_catalog.text[]) AND d.refobjid <> r.ev_class
              AND d.refclassid IN ('pg_catalog.pg_class'::pg_catalog.regclass, 'pg_catalog.pg_proc'::pg_catalog.regclass)
            """, [list])
        var views: [Object] = []
        for row in viewRows.rows.indices {
            let schema = viewRows.text(row, 2)
            let name = viewRows.text(row, 3)
            var definition = viewRows.text(row, 4)
            while definition.hasSuffix(";") || definition.hasSuffix("\n") || definition.hasSuffix(" ") { definition.removeLast() }
            let qualified = SQL.qualified(schema, name)
            // Options (security_barrier, security_invoker, check_option, storage parameters).
            var with = ""
            if let options = viewRows.string(row, 7) {
                let list = try await source.query("SELECT pg_catalog.unnest($1::pg_catalog.text[])", [options])
                let items = try list.rows.indices.compactMap { list.string($0, 0) }.map { try TableCloner.storageParameter($0) }
                if !items.isEmpty { with = " WITH (\(items.joined(separator: ", ")))" }
            }
            var ddl: [String]
            if viewRows.string(row, 1) == "m" {
                ddl = ["CREATE MATERIALIZED VIEW \(qualified)\(with) AS\n\(definition)\nWITH NO DATA"]
                let indexRows = try await source.query("""
                    SELECT ic.relname, pg_catalog.pg_get_indexdef(i.indexrelid), pg_catalog.quote_ident(ic.relname), i.indisunique,
                           pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)
                    FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
                    JOIN pg_catalog.pg_class c ON c.oid = i.indrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                    WHERE i.indrelid = $1 ORDER BY ic.relname
                    """, [viewRows.text(row, 0)])
                for index in indexRows.rows.indices {
                    ddl.append(indexRows.text(index, 1))
                }
                // Left unpopulated where it was (created WITH NO DATA, never refreshed).
                if viewRows.string(row, 8) == "t" { ddl.append("REFRESH MATERIALIZED VIEW \(qualified)") }
            } else {
                ddl = ["CREATE VIEW \(qualified)\(with) AS\n\(definition)"]
            }
            ddl += extrasByView[viewRows.text(row, 0)] ?? []
            if let comment = viewRows.string(row, 5) {
                ddl.append("COMMENT ON \(viewRows.string(row, 1) == "m" ? "MATERIALIZED VIEW" : "VIEW") \(qualified) IS \(SQL.literal(comment))")
            }
            views.append(Object(kind: viewRows.string(row, 1) == "m" ? "materialized view" : "view", schema: schema, name: name,
                                oid: viewRows.text(row, 0), ddl: ddl,
                                grants: Privileges(encoded: viewRows.string(row, 6)).statements(on: "TABLE \(qualified)")))
        }
        // The functions that read views go among them: after what they read, before the views
        // that call them (a BEGIN ATOMIC body is checked when it is created; round 31).
        let functionsAmongViews = objects.functions.filter { objects.functionsAfterViews.contains($0.oid) }
        objects.views = topologicalOrder(views + functionsAmongViews,
                                         edges: pairs(viewDependencies) + objects.functionsAfterViewsNeed)
        return objects
    }

    /// Collations, range types, operators and casts of the schemas.
    private static func loadOperatorsAndFriends(_ source: PQConnection, list: String, into objects: inout SchemaObjects) async throws {
        // Column names differ between server versions (colliculocale, colllocale): read as JSON.
        let collationRows = try await source.query("""
            SELECT c.oid, n.nspname, c.collname,
                   'CREATE COLLATION ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.collname) || ' (provider = '
                   || CASE c.collprovider WHEN 'i' THEN 'icu, locale = ' || pg_catalog.quote_literal(COALESCE(j.doc ->> 'colllocale', j.doc ->> 'colliculocale', c.collcollate))
                                          ELSE 'libc, lc_collate = ' || pg_catalog.quote_literal(c.collcollate) || ', lc_ctype = ' || pg_catalog.quote_literal(c.collctype) END
                   || CASE WHEN NOT c.collisdeterministic THEN ', deterministic = false' ELSE '' END || ')',
                   pg_catalog.obj_description(c.oid, 'pg_collation')
            FROM pg_catalog.pg_collation c JOIN pg_catalog.pg_namespace n ON n.oid = c.collnamespace,
                 LATERAL (SELECT pg_catalog.to_jsonb(c) AS doc) j
            WHERE n.nspname = ANY($1::pg_catalog.text[]) AND c.collprovider IN ('i', 'c')
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_collation'::pg_catalog.regclass AND d.objid = c.oid AND d.deptype = 'e')
            ORDER BY n.nspname, c.collname
            """, [list])
        objects.collations = try collationRows.rows.indices.map { row in
            guard let schema = collationRows.string(row, 1), let name = collationRows.string(row, 2), let oid = collationRows.string(row, 0),
                  let ddl = collationRows.string(row, 3) else {
                throw CloneError("XX000", "unexpected definition of collation \(collationRows.string(row, 2) ?? "?") on the source")
            }
            return Object(kind: "collation", schema: schema, name: name, oid: oid,
                          ddl: [ddl] + (collationRows.string(row, 4).map { ["COMMENT ON COLLATION \(SQL.qualified(schema, name)) IS \(SQL.literal($0))"] } ?? []))
        }

        let rangeRows = try await source.query("""
            SELECT t.oid, n.nspname, t.typname, r.rngcanonical <> 0,
                   'CREATE TYPE ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname) || ' AS RANGE (subtype = '
                   || pg_catalog.format_type(r.rngsubtype, NULL)
                   || ', subtype_opclass = ' || (SELECT pg_catalog.quote_ident(on_.nspname) || '.' || pg_catalog.quote_ident(oc.opcname)
                                                 FROM pg_catalog.pg_opclass oc JOIN pg_catalog.pg_namespace on_ ON on_.oid = oc.opcnamespace WHERE oc.oid = r.rngsubopc)
                   || CASE WHEN r.rngcollation <> 0 AND r.rngcollation <> (SELECT st.typcollation FROM pg_catalog.pg_type st WHERE st.oid = r.rngsubtype)
                           THEN ', collation = ' || \(collationName("r.rngcollation")) ELSE '' END
                   || CASE WHEN r.rngsubdiff <> 0 THEN ', subtype_diff = ' || r.rngsubdiff::pg_catalog.regproc::pg_catalog.text ELSE '' END
                   || COALESCE((SELECT ', multirange_type_name = ' || pg_catalog.quote_ident(mn.nspname) || '.' || pg_catalog.quote_ident(mt.typname)
                                FROM pg_catalog.pg_type mt JOIN pg_catalog.pg_namespace mn ON mn.oid = mt.typnamespace
                                WHERE mt.oid = (pg_catalog.to_jsonb(r) ->> 'rngmultitypid')::pg_catalog.oid), '')
                   || ')',
                   pg_catalog.obj_description(t.oid, 'pg_type'),
                   -- Needs nothing of the cloned schemas (subtype, subtype_diff, opclass,
                   -- collation): made before the types, which may use it.
                   NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                               LEFT JOIN pg_catalog.pg_type dt ON d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass AND dt.oid = d.refobjid
                               LEFT JOIN pg_catalog.pg_proc dp ON d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND dp.oid = d.refobjid
                               LEFT JOIN pg_catalog.pg_opclass dc ON d.refclassid = 'pg_catalog.pg_opclass'::pg_catalog.regclass AND dc.oid = d.refobjid
                               LEFT JOIN pg_catalog.pg_collation dl ON d.refclassid = 'pg_catalog.pg_collation'::pg_catalog.regclass AND dl.oid = d.refobjid
                               JOIN pg_catalog.pg_namespace dn ON dn.oid = COALESCE(dt.typnamespace, dp.pronamespace, dc.opcnamespace, dl.collnamespace)
                               WHERE d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.objid = t.oid AND d.deptype = 'n'
                                 AND dn.nspname = ANY($1::pg_catalog.text[]))
            FROM pg_catalog.pg_range r JOIN pg_catalog.pg_type t ON t.oid = r.rngtypid JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
            WHERE n.nspname = ANY($1::pg_catalog.text[]) AND NOT \(isExtensionMember(classOID: "t.oid", catalog: "pg_type"))
            ORDER BY n.nspname, t.typname
            """, [list])
        for row in rangeRows.rows.indices {
            guard let schema = rangeRows.string(row, 1), let name = rangeRows.string(row, 2), let oid = rangeRows.string(row, 0) else { continue }
            guard rangeRows.string(row, 3) == "f" else {
                objects.skippedRanges.append("\(schema).\(name)")
                continue
            }
            guard let ddl = rangeRows.string(row, 4) else { throw CloneError("XX000", "unexpected definition of range type \(schema).\(name) on the source") }
            objects.ranges.append(Object(kind: "range type", schema: schema, name: name, oid: oid,
                                         ddl: [ddl] + (rangeRows.string(row, 5).map { ["COMMENT ON TYPE \(SQL.qualified(schema, name)) IS \(SQL.literal($0))"] } ?? [])))
            if rangeRows.string(row, 6) == "t" { objects.rangesBeforeTypes.insert(oid) }
        }

        objects.operators = try await operators(source, list: list)
        objects.casts = try await casts(source, list: list)

        objects.operatorClasses = try await operatorClasses(source, list: list)
        objects.conversions = try await conversions(source, list: list)
    }

    /// Operators of `list`'s schemas on `connection` (the source, or the target: one already
    /// there is compared this way).
    static func operators(_ connection: PQConnection, list: String) async throws -> [Object] {
        let operatorName = { (oid: String) in
            "(SELECT pg_catalog.quote_ident(xn.nspname) || '.' || x.oprname FROM pg_catalog.pg_operator x JOIN pg_catalog.pg_namespace xn ON xn.oid = x.oprnamespace WHERE x.oid = \(oid))"
        }
        let operatorRows = try await connection.query("""
            SELECT o.oid, n.nspname, o.oprname,
                   'CREATE OPERATOR ' || pg_catalog.quote_ident(n.nspname) || '.' || o.oprname || ' (FUNCTION = ' || o.oprcode::pg_catalog.regproc::pg_catalog.text
                   || CASE WHEN o.oprleft <> 0 THEN ', LEFTARG = ' || pg_catalog.format_type(o.oprleft, NULL) ELSE '' END
                   || ', RIGHTARG = ' || pg_catalog.format_type(o.oprright, NULL)
                   || CASE WHEN o.oprcom <> 0 THEN ', COMMUTATOR = OPERATOR(' || \(operatorName("o.oprcom")) || ')' ELSE '' END
                   || CASE WHEN o.oprnegate <> 0 THEN ', NEGATOR = OPERATOR(' || \(operatorName("o.oprnegate")) || ')' ELSE '' END
                   || CASE WHEN o.oprrest <> 0 THEN ', RESTRICT = ' || o.oprrest::pg_catalog.regproc::pg_catalog.text ELSE '' END
                   || CASE WHEN o.oprjoin <> 0 THEN ', JOIN = ' || o.oprjoin::pg_catalog.regproc::pg_catalog.text ELSE '' END
                   || CASE WHEN o.oprcanhash THEN ', HASHES' ELSE '' END
                   || CASE WHEN o.oprcanmerge THEN ', MERGES' ELSE '' END || ')',
                   pg_catalog.obj_description(o.oid, 'pg_operator'),
                   pg_catalog.quote_ident(n.nspname) || '.' || o.oprname || '(' || CASE WHEN o.oprleft = 0 THEN 'NONE' ELSE pg_catalog.format_type(o.oprleft, NULL) END
                   || ', ' || pg_catalog.format_type(o.oprright, NULL) || ')'
            FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
            WHERE n.nspname = ANY($1::pg_catalog.text[]) AND o.oprcode <> 0
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_operator'::pg_catalog.regclass AND d.objid = o.oid AND d.deptype = 'e')
            ORDER BY n.nspname, o.oprname, o.oid
            """, [list])
        return try operatorRows.rows.indices.map { row in
            guard let schema = operatorRows.string(row, 1), let signature = operatorRows.string(row, 5), let oid = operatorRows.string(row, 0),
                  let ddl = operatorRows.string(row, 3) else {
                throw CloneError("XX000", "unexpected definition of operator \(operatorRows.string(row, 2) ?? "?") on the source")
            }
            return Object(kind: "operator", schema: schema, name: signature, oid: oid,
                          ddl: [ddl] + (operatorRows.string(row, 4).map { ["COMMENT ON OPERATOR \(signature) IS \(SQL.literal($0))"] } ?? []))
        }

    }

    /// Casts whose function or one of whose types is in `list`'s schemas, on `connection`.
    static func casts(_ connection: PQConnection, list: String) async throws -> [(object: Object, source: String, target: String)] {
        // Casts are not in a schema: those whose function or one of whose types is in one cloned.
        let castRows = try await connection.query("""
            SELECT c.oid, pg_catalog.format_type(c.castsource, NULL), pg_catalog.format_type(c.casttarget, NULL),
                   'CREATE CAST (' || pg_catalog.format_type(c.castsource, NULL) || ' AS ' || pg_catalog.format_type(c.casttarget, NULL) || ') '
                   || CASE c.castmethod WHEN 'f' THEN 'WITH FUNCTION ' || c.castfunc::pg_catalog.regprocedure::pg_catalog.text WHEN 'i' THEN 'WITH INOUT' ELSE 'WITHOUT FUNCTION' END
                   || CASE c.castcontext WHEN 'a' THEN ' AS ASSIGNMENT' WHEN 'i' THEN ' AS IMPLICIT' ELSE '' END,
                   pg_catalog.obj_description(c.oid, 'pg_cast')
            FROM pg_catalog.pg_cast c
            WHERE c.oid >= 16384
              -- Extension members, and casts a type made for itself (a multirange's from its range).
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_cast'::pg_catalog.regclass AND d.objid = c.oid AND d.deptype IN ('e', 'i'))
              AND (EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE p.oid = c.castfunc AND n.nspname = ANY($1::pg_catalog.text[]))
                   OR EXISTS (SELECT 1 FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
                              WHERE t.oid IN (c.castsource, c.casttarget) AND n.nspname = ANY($1::pg_catalog.text[])))
            ORDER BY 2, 3
            """, [list])
        return try castRows.rows.indices.map { row in
            guard let oid = castRows.string(row, 0), let from = castRows.string(row, 1), let to = castRows.string(row, 2), let ddl = castRows.string(row, 3) else {
                throw CloneError("XX000", "unexpected definition of a cast on the source")
            }
            let pair = "(\(from) AS \(to))"
            return (Object(kind: "cast", schema: "", name: pair, oid: oid,
                           ddl: [ddl] + (castRows.string(row, 4).map { ["COMMENT ON CAST \(pair) IS \(SQL.literal($0))"] } ?? [])), from, to)
        }
    }

    /// Text search parsers, templates, dictionaries, then configurations of `list`'s schemas on
    /// `connection` (the source, or the target: one already there is compared this way), with
    /// the functions each parser or template calls (by oid).
    static func textSearchObjects(_ connection: PQConnection, list: String) async throws -> (objects: [Object], functions: [String: [String]]) {
        var textSearch: [Object] = []
        var functions: [String: [String]] = [:]
        // Text search parsers and templates (their functions are C code: the server's own, an
        // extension's, or functions of the cloned schemas, which are then made before them),
        // dictionaries, then configurations, as pg_dump writes them (a configuration made with
        // its parser, then one ADD MAPPING per token type). Round 27: a table using a
        // configuration could not be cloned at all.
        let parserRows = try await connection.query("""
            SELECT o.oid, n.nspname, o.name, 'CREATE TEXT SEARCH ' || o.kind || ' ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(o.name) || o.body,
                   o.comment, pg_catalog.array_to_string(o.functions, ','), o.kind
            FROM (
              SELECT p.oid, p.prsnamespace AS ns, p.prsname::pg_catalog.text AS name, 'PARSER' AS kind,
                     ' (START = ' || p.prsstart::pg_catalog.regproc || ', GETTOKEN = ' || p.prstoken::pg_catalog.regproc
                     || ', END = ' || p.prsend::pg_catalog.regproc || ', LEXTYPES = ' || p.prslextype::pg_catalog.regproc
                     || CASE WHEN p.prsheadline <> 0 THEN ', HEADLINE = ' || p.prsheadline::pg_catalog.regproc ELSE '' END || ')' AS body,
                     pg_catalog.obj_description(p.oid, 'pg_ts_parser') AS comment,
                     ARRAY[p.prsstart::pg_catalog.oid, p.prstoken::pg_catalog.oid, p.prsend::pg_catalog.oid, p.prslextype::pg_catalog.oid, p.prsheadline::pg_catalog.oid] AS functions, 'pg_catalog.pg_ts_parser'::pg_catalog.regclass AS cls, 1 AS rank
              FROM pg_catalog.pg_ts_parser p
              UNION ALL
              SELECT t.oid, t.tmplnamespace, t.tmplname::pg_catalog.text, 'TEMPLATE',
                     ' (' || CASE WHEN t.tmplinit <> 0 THEN 'INIT = ' || t.tmplinit::pg_catalog.regproc || ', ' ELSE '' END
                     || 'LEXIZE = ' || t.tmpllexize::pg_catalog.regproc || ')',
                     pg_catalog.obj_description(t.oid, 'pg_ts_template'),
                     ARRAY[t.tmplinit::pg_catalog.oid, t.tmpllexize::pg_catalog.oid], 'pg_catalog.pg_ts_template'::pg_catalog.regclass, 2
              FROM pg_catalog.pg_ts_template t
            ) o JOIN pg_catalog.pg_namespace n ON n.oid = o.ns
            WHERE n.nspname = ANY($1::pg_catalog.text[])
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = o.cls AND d.objid = o.oid AND d.deptype IN ('e', 'i'))
            ORDER BY o.rank, n.nspname, o.name
            """, [list])
        for row in parserRows.rows.indices {
            let (schema, name) = (parserRows.text(row, 1), parserRows.text(row, 2))
            let kind = parserRows.text(row, 6)
            let create = parserRows.text(row, 3)
            textSearch.append(Object(kind: "text search \(kind.lowercased())", schema: schema, name: name, oid: parserRows.text(row, 0),
                                             ddl: [create] + (parserRows.string(row, 4).map {
                                                 ["COMMENT ON TEXT SEARCH \(kind) \(SQL.qualified(schema, name)) IS \(SQL.literal($0))"]
                                             } ?? [])))
            functions[parserRows.text(row, 0)] = parserRows.text(row, 5).split(separator: ",").map(String.init)
        }
        let dictionaryRows = try await connection.query("""
            SELECT d.oid, n.nspname, d.dictname,
                   'CREATE TEXT SEARCH DICTIONARY ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(d.dictname)
                   || ' (TEMPLATE = ' || pg_catalog.quote_ident(tn.nspname) || '.' || pg_catalog.quote_ident(t.tmplname)
                   || COALESCE(', ' || d.dictinitoption, '') || ')',
                   pg_catalog.obj_description(d.oid, 'pg_ts_dict')
            FROM pg_catalog.pg_ts_dict d JOIN pg_catalog.pg_namespace n ON n.oid = d.dictnamespace
            JOIN pg_catalog.pg_ts_template t ON t.oid = d.dicttemplate JOIN pg_catalog.pg_namespace tn ON tn.oid = t.tmplnamespace
            WHERE n.nspname = ANY($1::pg_catalog.text[]) AND NOT \(isExtensionMember(classOID: "d.oid", catalog: "pg_ts_dict"))
            ORDER BY n.nspname, d.dictname
            """, [list])
        textSearch += dictionaryRows.rows.indices.map { row in
            let (schema, name) = (dictionaryRows.text(row, 1), dictionaryRows.text(row, 2))
            return Object(kind: "text search dictionary", schema: schema, name: name, oid: dictionaryRows.text(row, 0),
                          ddl: [dictionaryRows.text(row, 3)] + (dictionaryRows.string(row, 4).map {
                              ["COMMENT ON TEXT SEARCH DICTIONARY \(SQL.qualified(schema, name)) IS \(SQL.literal($0))"]
                          } ?? []))
        }
        let configurationRows = try await connection.query("""
            SELECT c.oid, n.nspname, c.cfgname,
                   'CREATE TEXT SEARCH CONFIGURATION ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.cfgname)
                   || ' (PARSER = ' || pg_catalog.quote_ident(pn.nspname) || '.' || pg_catalog.quote_ident(p.prsname) || ')',
                   (SELECT pg_catalog.string_agg('ALTER TEXT SEARCH CONFIGURATION ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.cfgname)
                                                 || ' ADD MAPPING FOR ' || pg_catalog.quote_ident(x.token) || ' WITH ' || x.dictionaries, E'\\x1e' ORDER BY x.tokid)
                    FROM (SELECT m.maptokentype AS tokid,
                                 (SELECT tt.alias FROM pg_catalog.ts_token_type(c.cfgparser) tt WHERE tt.tokid = m.maptokentype) AS token,
                                 pg_catalog.string_agg(m.mapdict::pg_catalog.regdictionary::pg_catalog.text, ', ' ORDER BY m.mapseqno) AS dictionaries
                          FROM pg_catalog.pg_ts_config_map m WHERE m.mapcfg = c.oid GROUP BY m.maptokentype) x),
                   pg_catalog.obj_description(c.oid, 'pg_ts_config')
            FROM pg_catalog.pg_ts_config c JOIN pg_catalog.pg_namespace n ON n.oid = c.cfgnamespace
            JOIN pg_catalog.pg_ts_parser p ON p.oid = c.cfgparser JOIN pg_catalog.pg_namespace pn ON pn.oid = p.prsnamespace
            WHERE n.nspname = ANY($1::pg_catalog.text[]) AND NOT \(isExtensionMember(classOID: "c.oid", catalog: "pg_ts_config"))
            ORDER BY n.nspname, c.cfgname
            """, [list])
        textSearch += configurationRows.rows.indices.map { row in
            let (schema, name) = (configurationRows.text(row, 1), configurationRows.text(row, 2))
            let mappings = (configurationRows.string(row, 4) ?? "").split(separator: "\u{1E}").map(String.init)
            return Object(kind: "text search configuration", schema: schema, name: name, oid: configurationRows.text(row, 0),
                          ddl: [configurationRows.text(row, 3)] + mappings + (configurationRows.string(row, 5).map {
                              ["COMMENT ON TEXT SEARCH CONFIGURATION \(SQL.qualified(schema, name)) IS \(SQL.literal($0))"]
                          } ?? []))
        }

        return (textSearch, functions)
    }

    /// Operator families, classes, then the families' loose members, of `list`'s schemas on
    /// `connection` (the source, or the target: a class already there is compared this way).
    static func operatorClasses(_ connection: PQConnection, list: String) async throws -> [Object] {
        var operatorClasses: [Object] = []
        // Operator families, then classes, then the families' loose members (ALTER OPERATOR
        // FAMILY ... ADD), as pg_dump writes them. A class always names its family (made first),
        // which is what CREATE OPERATOR CLASS would have made implicitly too.
        let member = { (owner: String, ownerOID: String) in """
            (SELECT pg_catalog.string_agg(m.text, ', ' ORDER BY m.kind, m.number, m.text) FROM (
               SELECT 1 AS kind, ao.amopstrategy AS number, 'OPERATOR ' || ao.amopstrategy || ' ' || ao.amopopr::pg_catalog.regoperator::pg_catalog.text
                      || CASE WHEN ao.amoppurpose = 'o' THEN ' FOR ORDER BY ' || pg_catalog.quote_ident(sn.nspname) || '.' || pg_catalog.quote_ident(sf.opfname) ELSE '' END AS text
               FROM pg_catalog.pg_amop ao
               JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_amop'::pg_catalog.regclass AND d.objid = ao.oid
                 AND d.refclassid = '\(owner)'::pg_catalog.regclass AND d.refobjid = \(ownerOID)
               LEFT JOIN pg_catalog.pg_opfamily sf ON sf.oid = ao.amopsortfamily LEFT JOIN pg_catalog.pg_namespace sn ON sn.oid = sf.opfnamespace
               UNION ALL
               SELECT 2, ap.amprocnum, 'FUNCTION ' || ap.amprocnum || ' (' || pg_catalog.format_type(ap.amproclefttype, NULL) || ', '
                      || pg_catalog.format_type(ap.amprocrighttype, NULL) || ') ' || ap.amproc::pg_catalog.regprocedure::pg_catalog.text
               FROM pg_catalog.pg_amproc ap
               JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_amproc'::pg_catalog.regclass AND d.objid = ap.oid
                 AND d.refclassid = '\(owner)'::pg_catalog.regclass AND d.refobjid = \(ownerOID)
             ) m)
            """ }
        let familyRows = try await connection.query("""
            SELECT f.oid, n.nspname, f.opfname, am.amname,
                   'CREATE OPERATOR FAMILY ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(f.opfname) || ' USING ' || pg_catalog.quote_ident(am.amname),
                   pg_catalog.obj_description(f.oid, 'pg_opfamily'),
                   \(member("pg_catalog.pg_opfamily", "f.oid"))
            FROM pg_catalog.pg_opfamily f JOIN pg_catalog.pg_namespace n ON n.oid = f.opfnamespace JOIN pg_catalog.pg_am am ON am.oid = f.opfmethod
            WHERE n.nspname = ANY($1::pg_catalog.text[])
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_opfamily'::pg_catalog.regclass AND d.objid = f.oid AND d.deptype IN ('e', 'i'))
            ORDER BY n.nspname, f.opfname, am.amname
            """, [list])
        var looseMembers: [Object] = []
        for row in familyRows.rows.indices {
            let (schema, name, method) = (familyRows.text(row, 1), familyRows.text(row, 2), familyRows.text(row, 3))
            let qualified = "\(SQL.qualified(schema, name)) USING \(SQL.identifier(method))"
            operatorClasses.append(Object(kind: "operator family", schema: schema, name: name, oid: familyRows.text(row, 0),
                                                  ddl: [familyRows.text(row, 4)] + (familyRows.string(row, 5).map {
                                                      ["COMMENT ON OPERATOR FAMILY \(qualified) IS \(SQL.literal($0))"]
                                                  } ?? []), accessMethod: method))
            if let members = familyRows.string(row, 6) {
                looseMembers.append(Object(kind: "operator family members", schema: schema, name: name, oid: familyRows.text(row, 0),
                                           ddl: ["ALTER OPERATOR FAMILY \(qualified) ADD \(members)"], accessMethod: method))
            }
        }
        let classRows = try await connection.query("""
            SELECT c.oid, n.nspname, c.opcname, am.amname,
                   'CREATE OPERATOR CLASS ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.opcname)
                   || CASE WHEN c.opcdefault THEN ' DEFAULT' ELSE '' END || ' FOR TYPE ' || pg_catalog.format_type(c.opcintype, NULL)
                   || ' USING ' || pg_catalog.quote_ident(am.amname) || ' FAMILY ' || pg_catalog.quote_ident(fn.nspname) || '.' || pg_catalog.quote_ident(f.opfname)
                   || ' AS ' || COALESCE(pg_catalog.concat_ws(', ', CASE WHEN c.opckeytype <> 0 THEN 'STORAGE ' || pg_catalog.format_type(c.opckeytype, NULL) END,
                                                                \(member("pg_catalog.pg_opclass", "c.oid"))),
                                         'STORAGE ' || pg_catalog.format_type(c.opcintype, NULL)),
                   pg_catalog.obj_description(c.oid, 'pg_opclass')
            FROM pg_catalog.pg_opclass c JOIN pg_catalog.pg_namespace n ON n.oid = c.opcnamespace JOIN pg_catalog.pg_am am ON am.oid = c.opcmethod
            JOIN pg_catalog.pg_opfamily f ON f.oid = c.opcfamily JOIN pg_catalog.pg_namespace fn ON fn.oid = f.opfnamespace
            WHERE n.nspname = ANY($1::pg_catalog.text[])
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_opclass'::pg_catalog.regclass AND d.objid = c.oid AND d.deptype IN ('e', 'i'))
            ORDER BY n.nspname, c.opcname, am.amname
            """, [list])
        for row in classRows.rows.indices {
            let (schema, name, method) = (classRows.text(row, 1), classRows.text(row, 2), classRows.text(row, 3))
            let qualified = "\(SQL.qualified(schema, name)) USING \(SQL.identifier(method))"
            operatorClasses.append(Object(kind: "operator class", schema: schema, name: name, oid: classRows.text(row, 0),
                                                  ddl: [classRows.text(row, 4)] + (classRows.string(row, 5).map {
                                                      ["COMMENT ON OPERATOR CLASS \(qualified) IS \(SQL.literal($0))"]
                                                  } ?? []), accessMethod: method))
        }
        operatorClasses += looseMembers

        return operatorClasses
    }

    /// Encoding conversions of `list`'s schemas on `connection`.
    static func conversions(_ connection: PQConnection, list: String) async throws -> [Object] {
        let conversionRows = try await connection.query("""
            SELECT c.oid, n.nspname, c.conname,
                   'CREATE ' || CASE WHEN c.condefault THEN 'DEFAULT ' ELSE '' END || 'CONVERSION ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.conname)
                   || ' FOR ' || pg_catalog.quote_literal(pg_catalog.pg_encoding_to_char(c.conforencoding)) || ' TO ' || pg_catalog.quote_literal(pg_catalog.pg_encoding_to_char(c.contoencoding))
                   || ' FROM ' || c.conproc::pg_catalog.regproc::pg_catalog.text,
                   pg_catalog.obj_description(c.oid, 'pg_conversion')
            FROM pg_catalog.pg_conversion c JOIN pg_catalog.pg_namespace n ON n.oid = c.connamespace
            WHERE n.nspname = ANY($1::pg_catalog.text[]) AND NOT \(isExtensionMember(classOID: "c.oid", catalog: "pg_conversion"))
            ORDER BY n.nspname, c.conname
            """, [list])
        let conversions = conversionRows.rows.indices.map { row in
            let (schema, name) = (conversionRows.text(row, 1), conversionRows.text(row, 2))
            return Object(kind: "conversion", schema: schema, name: name, oid: conversionRows.text(row, 0),
                          ddl: [conversionRows.text(row, 3)] + (conversionRows.string(row, 4).map {
                              ["COMMENT ON CONVERSION \(SQL.qualified(schema, name)) IS \(SQL.literal($0))"]
                          } ?? []))
        }
        return conversions
    }

    /// Orders objects so that each comes after the objects (of the same list) it depends on.
    /// `edges` rows are (dependent oid, referenced oid); unknown oids are ignored.
    static func topologicalOrder(_ objects: [Object], edges: PQResult) -> [Object] {
        topologicalOrder(objects, edges: pairs(edges))
    }

    /// (from, to) oid pairs of a two-column result.
    static func pairs(_ edges: PQResult) -> [(String, String)] {
        edges.rows.indices.compactMap { row in edges.string(row, 0).flatMap { from in edges.string(row, 1).map { (from, $0) } } }
    }

    static func topologicalOrder(_ objects: [Object], edges: [(String, String)]) -> [Object] {
        let byOID = Dictionary(objects.map { ($0.oid, $0) }, uniquingKeysWith: { first, _ in first })
        var dependsOn: [String: Set<String>] = [:]
        for (from, to) in edges where from != to && byOID[to] != nil {
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
