import Foundation
import PQ

/// Where and as whom the target side of a clone acts.
public struct CloneTarget: Sendable {
    /// The proxy's service conninfo (its `dbname` is replaced by `database`).
    public var serviceConnInfo: ConnInfo
    public var database: String
    /// The calling role: objects are created as this role and end up owned by it.
    public var role: String
    /// Where the target connections' libpq calls run.
    public var pool: PQThreadPool

    public init(serviceConnInfo: ConnInfo, database: String, role: String, pool: PQThreadPool = .shared) {
        self.serviceConnInfo = serviceConnInfo
        self.database = database
        self.role = role
        self.pool = pool
    }

    /// A target session acting as the caller. When the service login is the caller itself, or
    /// the caller is a superuser, that is `SET ROLE` on a service connection. Otherwise code the
    /// caller wrote (a trigger, a CHECK constraint, a domain check that the clone or
    /// `mask_in_place` sets off) could `RESET ROLE` back to the service login and act with its
    /// rights (attack round 20). Such a caller's session logs in as a throwaway role that is a
    /// member of the caller and nothing else, becomes the caller, and the throwaway role is
    /// dropped at once: a `RESET ROLE` then leaves a session with no role at all.
    public func connect(database: String? = nil) async throws(CloneError) -> PQConnection {
        var info = serviceConnInfo
        info["dbname"] = database ?? self.database
        let service = try await open(info, as: "target", database: database)
        let standing: PQResult
        do {
            standing = try await service.query("""
                SELECT pg_catalog.session_user() OPERATOR(pg_catalog.=) $1,
                       COALESCE((SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) $1), false)
                """, [role])
        } catch {
            throw CloneError.from(error, context: "target")
        }
        if standing.string(0, 0) == "t" || standing.string(0, 1) == "t" {
            try await becomeCaller(service)
            return service
        }
        return try await ownLogin(service: service, info: info, database: database)
    }

    /// A connection as the proxy's service login itself, for work PostgreSQL runs safely as a
    /// table's owner whoever asks (ANALYZE switches to the owner in a security-restricted operation).
    public func serviceConnection(database: String? = nil) async throws(CloneError) -> PQConnection {
        var info = serviceConnInfo
        info["dbname"] = database ?? self.database
        return try await open(info, as: "target", database: database)
    }

    private func open(_ info: ConnInfo, as label: String, database: String?) async throws(CloneError) -> PQConnection {
        do {
            return try await PQConnection.connect(info.connectionString, label: label, pool: pool)
        } catch {
            throw CloneError("08006", "could not connect to target database \"\(database ?? self.database)\": \((error as? PQError)?.message ?? "\(error)")")
        }
    }

    private func becomeCaller(_ connection: PQConnection) async throws(CloneError) {
        do {
            try await connection.execute("SET ROLE \(SQL.identifier(role))")
        } catch {
            throw CloneError("42501", "pgclone cannot act as role \"\(role)\" on the target: \((error as? PQError)?.message ?? "\(error)")",
                             hint: "The proxy's service user must be a superuser or a member of the calling role.")
        }
        do {
            try await connection.exec("SET search_path = ''; SET statement_timeout = 0; SET check_function_bodies = off; " + PortableSettings.sql)
        } catch {
            throw CloneError.from(error, context: "target")
        }
    }

    /// The throwaway logins' names: this prefix and 16 hexadecimal digits.
    public static let throwawayLoginPrefix = "pgclone_call_"
    public static let throwawayLoginPattern = "^" + throwawayLoginPrefix + "[0-9a-f]{16}$"

    /// The session of a caller that is not a superuser, under a login of its own (see `connect`).
    private func ownLogin(service: PQConnection, info: ConnInfo, database: String?) async throws(CloneError) -> PQConnection {
        var random = SystemRandomNumberGenerator()
        func hex(_ count: Int) -> String { (0..<count).map { _ in String(random.next(upperBound: 16 as UInt8), radix: 16) }.joined() }
        let login = Self.throwawayLoginPrefix + hex(16)
        let password = hex(40)
        let quoted = SQL.identifier(login)
        do {
            let verifier = try await service.encryptPassword(password, user: login)
            // Should the proxy die before the DROP below, the password also expires.
            let expiry = try await service.execute("SELECT (pg_catalog.now() OPERATOR(pg_catalog.+) interval '5 minutes')::pg_catalog.text").string(0, 0) ?? ""
            try await service.execute("CREATE ROLE \(quoted) LOGIN NOINHERIT PASSWORD \(SQL.literal(verifier)) VALID UNTIL \(SQL.literal(expiry))")
        } catch {
            throw CloneError((error as? PQError)?.sqlState ?? "42501",
                             "pgclone cannot create a login of its own for role \"\(role)\": \((error as? PQError)?.message ?? "\(error)")",
                             hint: "Admin calls of roles that are not superusers run under a throwaway login that is a member of the caller: the proxy's service user must be a superuser (or have CREATEROLE).")
        }
        var connection: PQConnection?
        var failure: CloneError?
        do {
            try await service.execute("GRANT \(SQL.identifier(role)) TO \(quoted)")
            var own = info
            own["user"] = login
            own["password"] = password
            own["passfile"] = nil
            do {
                connection = try await PQConnection.connect(own.connectionString, label: "target", pool: pool)
            } catch {
                throw CloneError("28000", "pgclone cannot log in for role \"\(role)\" on the target: \((error as? PQError)?.message ?? "\(error)")",
                                 hint: "Admin calls of roles that are not superusers log in as a throwaway role (pgclone_call_...) with a password, from where the proxy's service connection comes: pg_hba.conf must allow password (scram-sha-256 or md5) logins there.")
            }
            if let connection { try await becomeCaller(connection) }
        } catch let error as CloneError {
            failure = error
        } catch {
            failure = CloneError.from(error, context: "target")
        }
        // Dropped whatever happened: the session (if any) has become the caller, and the login
        // must not outlive this moment. The caller can see the role in pg_roles and hold it up
        // (a privilege granted to it, a lock on it): then the call does not run, the session is
        // closed and the role is left unable to log in, holding at most what the caller gave it.
        do {
            try await service.exec("SET lock_timeout = '5s'")
            try await service.execute("DROP ROLE \(quoted)")
        } catch {
            _ = try? await service.execute("ALTER ROLE \(quoted) NOLOGIN PASSWORD NULL")
            _ = try? await service.execute("REVOKE \(SQL.identifier(role)) FROM \(quoted)")
            throw CloneError((error as? PQError)?.sqlState ?? "XX000",
                             "pgclone cannot drop its throwaway login \(login) for role \"\(role)\": \((error as? PQError)?.message ?? "\(error)")",
                             detail: "The call did not run. The role can no longer log in.",
                             hint: "Drop it by hand (DROP OWNED BY \(quoted) in each database that granted it something, then DROP ROLE \(quoted)).")
        }
        if let failure { throw failure }
        guard let connection else { throw CloneError("XX000", "no target session for role \"\(role)\"") }
        return connection
    }
}

/// The clone engine: one implementation behind the admin SQL API and the CLI.
public struct CloneEngine: Sendable {
    /// Whose credentials source connections may use.
    public let sourceCredentials: SourceCredentials
    /// Where the source connections' libpq calls run (the target's come with the CloneTarget).
    public let pool: PQThreadPool

    public init(sourceCredentials: SourceCredentials = .any, pool: PQThreadPool = .shared) {
        self.sourceCredentials = sourceCredentials
        self.pool = pool
    }

    // MARK: - Tables

    public func cloneTable(source: String, target: CloneTarget, schema: String, table: String,
                           targetName: String?, options: CloneOptions) async throws(CloneError) -> TableCloneOutcome {
        if let targetName, targetName.utf8.count > Self.maximumIdentifierBytes {
            // PostgreSQL would cut it to 63 bytes, and the names made from it (its key, its
            // indexes) to the same 63: a clash with itself that reads "already exists".
            throw CloneError("42622", "target name \"\(targetName)\" is too long (\(targetName.utf8.count) bytes; PostgreSQL names have at most \(Self.maximumIdentifierBytes))")
        }
        let session = try await SourceSession.open(source, credentials: sourceCredentials, pool: pool)
        let definition = try await loadTable(session.primary, schema: schema, table: table)
        let options = try options.forTable(definition, strict: true)
        let connection = try await target.connect()
        let cloner = TableCloner(source: session.primary, target: connection)
        // One large table with several workers: its rows are copied in parts at once.
        var split: SplitCopy?
        if options.parallel > 1 && options.copyData {
            let (large, _) = try await splitCandidates([(schema, table)], session: session, options: options)
            if !large.isEmpty {
                split = try await splitCopy(definition, session: session, target: target, options: options, progress: nil)
            }
        }
        return try await cloner.clone(definition, into: schema, as: targetName ?? table, options: options, split: split)
    }

    func loadTable(_ source: PQConnection, schema: String, table: String) async throws(CloneError) -> TableDefinition {
        let definition: TableDefinition?
        do {
            definition = try await TableDefinition.load(source, schema: schema, table: table, asTableOfItsOwn: true)
        } catch {
            throw CloneError.from(error, context: "reading \(schema).\(table) on source")
        }
        guard let definition else {
            let kind = try? await source.query("""
                SELECT CASE c.relkind WHEN 'v' THEN 'a view' WHEN 'm' THEN 'a materialized view' WHEN 'f' THEN 'a foreign table'
                                      WHEN 'S' THEN 'a sequence' WHEN 'i' THEN 'an index' WHEN 'I' THEN 'an index' WHEN 'c' THEN 'a composite type' END
                FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = $1 AND c.relname = $2
                """, [schema, table]).string(0, 0)
            if let kind {
                throw CloneError("42809", "\"\(schema).\(table)\" is \(kind) on source, not a table",
                                 hint: "pgclone.table clones tables; pgclone.schema clones a schema's views, materialized views and sequences with it.")
            }
            throw CloneError("42P01", "relation \"\(schema).\(table)\" does not exist on source")
        }
        return definition
    }

    /// NAMEDATALEN - 1: the longest name PostgreSQL keeps whole.
    static let maximumIdentifierBytes = 63

    // MARK: - Schemas and databases

    /// What a schema or database clone did, for its result text.
    public struct SchemaCloneSummary: Sendable {
        public var schemas: [String] = []
        public var tables = 0
        public var skippedTables = 0
        public var rows = 0
        public var indexes = 0
        public var constraints = 0
        public var triggers = 0
        public var functions = 0
        public var types = 0
        public var sequences = 0
        public var views = 0
        public var materializedViews = 0
        public var largeObjects = 0
        public var notes: [String] = []

        public var counts: String {
            var parts = ["\(tables) \(tables == 1 ? "table" : "tables")"]
            if skippedTables > 0 { parts.append("\(skippedTables) skipped") }
            parts.append("\(rows) rows")
            parts.append("\(indexes) indexes")
            parts.append("\(constraints) constraints")
            parts.append("\(triggers) triggers")
            parts.append("\(functions) functions")
            parts.append("\(types) types")
            parts.append("\(sequences) sequences")
            parts.append("\(views) views")
            parts.append("\(materializedViews) materialized views")
            if largeObjects > 0 { parts.append("\(largeObjects) large \(largeObjects == 1 ? "object" : "objects")") }
            return parts.joined(separator: ", ")
        }
    }

    public func cloneSchema(source: String, target: CloneTarget, schema: String, options: CloneOptions,
                            progress: (any CloneProgress)? = nil) async throws(CloneError) -> SchemaCloneSummary {
        let session = try await SourceSession.open(source, credentials: sourceCredentials, pool: pool)
        let exists = try await run("source") { try await session.primary.query("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1", [schema]) }
        guard exists.rows.count == 1 else {
            throw CloneError("3F000", "schema \"\(schema)\" does not exist on source")
        }
        return try await cloneSchemas(session: session, target: target, schemas: [schema], options: options, progress: progress)
    }

    public func cloneDatabase(source: String, target: CloneTarget, options: CloneOptions,
                              progress: (any CloneProgress)? = nil) async throws(CloneError) -> SchemaCloneSummary {
        let session = try await SourceSession.open(source, credentials: sourceCredentials, pool: pool)
        let schemas = try await run("source") { try await Self.databaseSchemas(session.primary) }
        return try await cloneSchemas(session: session, target: target, schemas: schemas, options: options, progress: progress, largeObjects: true)
    }

    /// The schemas a database clone covers: all but the system's and those extensions create.
    static func databaseSchemas(_ source: PQConnection) async throws -> [String] {
        try await source.exec("""
            SELECT n.nspname FROM pg_catalog.pg_namespace n
            WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname NOT LIKE 'pg\\_temp\\_%'
              AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND d.objid = n.oid AND d.deptype = 'e')
            ORDER BY n.nspname
            """).strings.compactMap { $0 }
    }

    /// CREATE DATABASE on the target server (as the caller), then a database clone into it.
    public func createDatabase(source: String, target: CloneTarget, name: String, options: CloneOptions,
                               progress: (any CloneProgress)? = nil) async throws(CloneError) -> SchemaCloneSummary {
        let session = try await SourceSession.open(source, credentials: sourceCredentials, pool: pool)
        let connection = try await target.connect()
        var creationNotes: [String] = []
        do {
            // The source's encoding and locale, as pg_dump -C (from template0, the only template
            // that takes another encoding); when the target server cannot make them (a locale it
            // lacks), its defaults, and the result says so.
            let faithful = try await Self.createDatabaseStatement(name, like: session.primary)
            if let error = try await connection.executeTolerating(["22023", "42809", "42601", "0A000"], [faithful], inTransaction: false) {
                try await connection.execute("CREATE DATABASE \(SQL.identifier(name)) TEMPLATE template0")
                creationNotes.append("database \(name) created with the target server's default encoding and locale: \(error.message)")
            }
        } catch let error as PQError {
            throw CloneError(error.sqlState ?? "XX000", "could not create database \"\(name)\": \(error.message)")
        } catch {
            throw CloneError("XX000", "could not create database \"\(name)\": \(error)")
        }
        // Marked until it is complete: should this process die before it can drop a database it
        // could not fill, the database says what it is.
        _ = try? await connection.execute("COMMENT ON DATABASE \(SQL.identifier(name)) IS "
            + SQL.literal("pgclone: incomplete clone, interrupted while being created; drop it (DROP DATABASE \(SQL.identifier(name))) and clone again"))
        var newTarget = target
        newTarget.database = name
        do {
            let schemas = try await Self.databaseSchemas(session.primary)
            var summary = try await cloneSchemas(session: session, target: newTarget, schemas: schemas, options: options, progress: progress,
                                                 largeObjects: true, freshDatabase: true)
            summary.notes.insert(contentsOf: creationNotes, at: 0)
            // The database's own comment and settings (ALTER DATABASE ... SET), as pg_dump -C.
            let own = try await session.primary.query("""
                SELECT pg_catalog.shobj_description(d.oid, 'pg_database'), s.setting
                FROM pg_catalog.pg_database d
                LEFT JOIN LATERAL (SELECT pg_catalog.unnest(rs.setconfig) AS setting FROM pg_catalog.pg_db_role_setting rs
                                   WHERE rs.setdatabase = d.oid AND rs.setrole = 0) s ON true
                WHERE d.datname = pg_catalog.current_database()
                """)
            let comment = own.rows.isEmpty ? nil : own.string(0, 0)
            try await connection.execute("COMMENT ON DATABASE \(SQL.identifier(name)) IS \(comment.map(SQL.literal) ?? "NULL")")
            for row in own.rows.indices {
                guard let setting = own.string(row, 1) else { continue }
                guard let clause = RoleCloner.setClause(setting) else {
                    summary.notes.append("database setting not copied (not a setting name): \(setting)")
                    continue
                }
                if let error = try await connection.executeTolerating(["42704", "42501", "22023", "55P02"], ["ALTER DATABASE \(SQL.identifier(name)) SET \(clause)"], inTransaction: false) {
                    summary.notes.append("database setting not copied (\(error.message)): \(setting)")
                }
            }
            try await copyDatabaseGrantsAndRoleSettings(from: session.primary, to: connection, name: name, notes: &summary.notes)
            return summary
        } catch {
            // All or nothing: a database that could not be filled is removed again, also when the
            // call was cancelled (in a task of its own: a cancelled task's statements do not run).
            let dropped = await Task {
                (try? await connection.execute("DROP DATABASE IF EXISTS \(SQL.identifier(name)) WITH (FORCE)")) != nil
            }.value
            var failure = CloneError.from(error, context: "cloning into \(name)")
            if dropped {
                // What the schema clone says it committed went with the database (round 26).
                failure.detail = "Database \(name) was dropped again: the target server is as it was."
            } else {
                failure.detail = [failure.detail, "The incomplete database \(name) could not be dropped; its comment marks it incomplete. Drop it before cloning again."]
                    .compactMap { $0 }.joined(separator: "\n")
            }
            throw failure
        }
    }

    /// The database's grants (CONNECT, TEMPORARY, CREATE) and the roles' settings in it (ALTER
    /// ROLE ... IN DATABASE ... SET), as pg_dump -C: a source that took CONNECT away from PUBLIC
    /// must not be open to everyone on the target (round 33). The source owner's own privileges
    /// are the caller's here, who owns the new database.
    private func copyDatabaseGrantsAndRoleSettings(from source: PQConnection, to connection: PQConnection, name: String, notes: inout [String]) async throws {
        let database = SQL.identifier(name)
        let acl = try await source.query("""
            SELECT d.datacl IS NOT NULL, a.grantee OPERATOR(pg_catalog.=) 0, pg_catalog.pg_get_userbyid(a.grantee)::pg_catalog.text,
                   a.privilege_type, a.is_grantable, a.grantee OPERATOR(pg_catalog.=) d.datdba
            FROM pg_catalog.pg_database d LEFT JOIN LATERAL pg_catalog.aclexplode(d.datacl) a ON true
            WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()
            ORDER BY 3, 4
            """)
        if acl.string(0, 0) == "t" {
            try await connection.execute("REVOKE ALL ON DATABASE \(database) FROM PUBLIC")
            for row in acl.rows.indices where acl.string(row, 5) == "f" {
                guard let privilege = acl.string(row, 3), ["CONNECT", "TEMPORARY", "CREATE"].contains(privilege) else { continue }
                let grantee = acl.string(row, 1) == "t" ? "PUBLIC" : SQL.identifier(acl.text(row, 2))
                let statement = "GRANT \(privilege) ON DATABASE \(database) TO \(grantee)\(acl.string(row, 4) == "t" ? " WITH GRANT OPTION" : "")"
                if let error = try await connection.executeTolerating(["42704", "42501"], [statement], inTransaction: false) {
                    notes.append("database grant not copied (\(error.message)): \(statement)")
                }
            }
        }
        let roleSettings = try await source.query("""
            SELECT r.rolname::pg_catalog.text, s.setting
            FROM pg_catalog.pg_db_role_setting rs JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) rs.setrole
            CROSS JOIN LATERAL pg_catalog.unnest(rs.setconfig) s(setting)
            WHERE rs.setdatabase OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
            ORDER BY 1, 2
            """)
        for row in roleSettings.rows.indices {
            let role = roleSettings.text(row, 0), setting = roleSettings.text(row, 1)
            guard let clause = RoleCloner.setClause(setting) else {
                notes.append("setting of role \(role) in the database not copied (not a setting name): \(setting)")
                continue
            }
            let statement = "ALTER ROLE \(SQL.identifier(role)) IN DATABASE \(database) SET \(clause)"
            if let error = try await connection.executeTolerating(["42704", "42501", "22023", "55P02"], [statement], inTransaction: false) {
                notes.append("setting of role \(role) in the database not copied (\(error.message)): \(setting)")
            }
        }
    }

    /// CREATE DATABASE with the source database's encoding, locale provider and locales.
    static func createDatabaseStatement(_ name: String, like source: PQConnection) async throws -> String {
        // to_jsonb reads columns that only some versions have (datlocprovider since 15,
        // daticulocale in 15-16, datlocale from 17).
        let row = try await source.query("""
            SELECT pg_catalog.pg_encoding_to_char(d.encoding)::pg_catalog.text, d.datcollate::pg_catalog.text, d.datctype::pg_catalog.text,
                   j OPERATOR(pg_catalog.->>) 'datlocprovider', COALESCE(j OPERATOR(pg_catalog.->>) 'daticulocale', j OPERATOR(pg_catalog.->>) 'datlocale')
            FROM pg_catalog.pg_database d, pg_catalog.to_jsonb(d) j
            WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()
            """)
        var statement = "CREATE DATABASE \(SQL.identifier(name)) TEMPLATE template0"
        guard row.rows.count == 1, let encoding = row.string(0, 0) else { return statement }
        statement += " ENCODING \(SQL.literal(encoding))"
        switch row.string(0, 3) {
        case "i":
            statement += " LOCALE_PROVIDER icu"
            if let icu = row.string(0, 4) { statement += " ICU_LOCALE \(SQL.literal(icu))" }
        case "c":
            statement += " LOCALE_PROVIDER libc"
        default:
            break
        }
        if let collate = row.string(0, 1) { statement += " LC_COLLATE \(SQL.literal(collate))" }
        if let ctype = row.string(0, 2) { statement += " LC_CTYPE \(SQL.literal(ctype))" }
        return statement
    }

    public func cloneFunctions(source: String, target: CloneTarget, schema: String) async throws(CloneError) -> Int {
        let session = try await SourceSession.open(source, credentials: sourceCredentials, pool: pool)
        let exists = try await run("source") { try await session.primary.query("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1", [schema]) }
        guard exists.rows.count == 1 else {
            throw CloneError("3F000", "schema \"\(schema)\" does not exist on source")
        }
        let objects = try await run("reading functions on source") { try await SchemaObjects.load(session.primary, schemas: [schema], includeViews: false) }
        let connection = try await target.connect()
        var notes: [String] = []
        try await run("creating functions") {
            try await connection.execute("BEGIN")
            do {
                try await ensureSchema(schema, on: connection)
                // pgclone.functions asks for the source's routines: one the target has with another
                // definition is replaced (an aggregate too).
                var summary = SchemaCloneSummary()
                for function in objects.functions {
                    try await Self.create(function, on: connection, conflict: .replace, summary: &summary)
                }
                notes += summary.notes
                try await connection.execute("COMMIT")
            } catch {
                _ = try? await connection.execute("ROLLBACK")
                throw error
            }
        }
        return objects.functions.count
    }

    // MARK: - Roles

    /// Clones the source's roles (or those named in `only`) and the privileges they hold on
    /// objects that exist on the target.
    public func cloneRoles(source: String, target: CloneTarget, only: String?) async throws(CloneError) -> RoleCloneSummary {
        let session = try await SourceSession.open(source, credentials: sourceCredentials, pool: pool)
        let connection = try await target.connect()
        let names = only.map(RoleCloner.parseNames)
        if let names, names.isEmpty {
            throw CloneError("22023", "no role names in \(SQL.literal(only ?? ""))", hint: "Name roles separated by commas, e.g. 'reader, writer'; double-quote names with commas.")
        }
        let summary = try await run("cloning roles") {
            try await RoleCloner(source: session.primary, target: connection, caller: target.role).run(only: names)
        }
        return RoleCloneSummary(created: summary.created, updated: summary.updated, grants: summary.grants, notes: summary.notes)
    }

    // MARK: - Verification

    /// Compares the target with the source, table by table (`schema` or every user schema).
    public func verify(source: String, target: CloneTarget, schema: String?, options: String?) async throws(CloneError) -> [VerifyRow] {
        let parsed = try Verifier.Options.parse(options)
        let session = try await SourceSession.open(source, credentials: sourceCredentials, pool: pool)
        let connection = try await target.connect()
        let rows = try await run("verifying") {
            try await Verifier(source: session.primary, target: connection, options: parsed).run(schema: schema)
        }
        return rows.map { VerifyRow(schema: $0.schema, table: $0.table, sourceRows: $0.sourceRows, targetRows: $0.targetRows, match: $0.match, detail: $0.detail) }
    }

    /// What differs between the source's and the target's definitions (`schema` or every user schema).
    public func diff(source: String, target: CloneTarget, schema: String?) async throws(CloneError) -> SchemaDifferences {
        let session = try await SourceSession.open(source, credentials: sourceCredentials, pool: pool)
        let connection = try await target.connect()
        if let schema {
            // As verify and preflight: a schema on neither side is a typo, not "no differences".
            let found = try await run("comparing definitions") {
                (try await session.primary.query("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1", [schema]).rows.count,
                 try await connection.query("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1", [schema]).rows.count)
            }
            if found == (0, 0) { throw CloneError("3F000", "schema \"\(schema)\" does not exist on source or target") }
        }
        let (mine, theirs) = try await run("comparing definitions") {
            try await SchemaDiff.read(source: session.primary, target: connection, schema: schema)
        }
        let differences = SchemaDiff.compare(mine, theirs)
        return SchemaDifferences(json: SchemaDiff.json(differences), listing: SchemaDiff.listing(differences),
                                 count: differences.reduce(0) { $0 + $1.1.onlyInSource.count + $1.1.onlyInTarget.count + $1.1.modified.count })
    }

    /// Checks before a clone of `schema` (or of the whole database) with `options`.
    public func preflight(source: String, target: CloneTarget, schema: String?, options: String?) async throws(CloneError) -> [PreflightCheck] {
        let parsed = try CloneOptions.parse(options)
        var checks = await Preflight.run(sourceConnInfo: source, credentials: sourceCredentials, target: target, schema: schema, options: parsed)
        if parsed.masksAnything || parsed.columns != nil, !checks.contains(where: { $0.status == "fail" && $0.name.hasSuffix("connection") }) {
            checks.append(await maskCheck(source: source, schema: schema, options: parsed))
        }
        return checks.map { PreflightCheck(name: $0.name, status: $0.status, detail: $0.detail) }
    }

    /// The clone's own check of its masks, run before anything is made: a mask that would make
    /// the clone fail (a typo, a column no table of the scope has) fails the preflight too.
    private func maskCheck(source: String, schema: String?, options: CloneOptions) async -> Preflight.Check {
        do throws(CloneError) {
            let session = try await SourceSession.open(source, credentials: sourceCredentials, pool: pool)
            let schemas = try await run("source") {
                if let schema { [schema] } else { try await Self.databaseSchemas(session.primary) }
            }
            try await checkMasks(options, schemas: schemas, session: session)
            return .ok("masks", "every mask finds a column to mask in the clone's tables")
        } catch {
            return .fail("masks", error.message)
        }
    }

    /// `freshDatabase`: the target database was just created for this clone, so the schemas it
    /// already has (public) take the source's comments and grants too.
    private func cloneSchemas(session: SourceSession, target: CloneTarget, schemas: [String], options: CloneOptions,
                              progress: (any CloneProgress)?, largeObjects: Bool = false, freshDatabase: Bool = false) async throws(CloneError) -> SchemaCloneSummary {
        var summary = SchemaCloneSummary()
        summary.schemas = schemas
        let objects = try await run("reading source catalog") { try await SchemaObjects.load(session.primary, schemas: schemas) }
        // Largest first: the longest copy starts at once and the small tables fill the gaps.
        let tables = try await run("reading source catalog") {
            try await session.primary.query("""
                SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = ANY($1::pg_catalog.text[]) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
                  AND NOT \(SchemaObjects.isExtensionMember(classOID: "c.oid"))
                ORDER BY (SELECT pg_catalog.sum(pg_catalog.pg_total_relation_size(i.relid)) FROM pg_catalog.pg_partition_tree(c.oid) i) DESC,
                         n.nspname, c.relname
                """, ["{" + schemas.map { "\"" + $0.replacingQuotes() + "\"" }.joined(separator: ",") + "}"])
        }
        try await checkMasks(options, schemas: schemas, session: session)
        let connection = try await target.connect()
        // Under conflict error a table already on the target is said before anything is made
        // (round 35 J7: it was found when the clone reached it, after earlier tables committed).
        if options.conflict == .error, !tables.rows.isEmpty {
            let existing = try await run("reading the target") {
                try await connection.query("""
                    SELECT w.s || '.' || w.t FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.text[])) WITH ORDINALITY AS w(s, t, n)
                    WHERE pg_catalog.to_regclass(pg_catalog.quote_ident(w.s) || '.' || pg_catalog.quote_ident(w.t)) IS NOT NULL
                      -- (What an interrupted split copy left, marked, is removed by the clone.)
                      AND pg_catalog.obj_description(pg_catalog.to_regclass(pg_catalog.quote_ident(w.s) || '.' || pg_catalog.quote_ident(w.t)), 'pg_class')
                          IS DISTINCT FROM $3
                    ORDER BY w.n
                    """, [SQL.textArray(tables.rows.indices.map { tables.text($0, 0) }), SQL.textArray(tables.rows.indices.map { tables.text($0, 1) }),
                          TableCloner.incompleteMarker])
            }
            if let first = existing.rows.isEmpty ? nil : existing.text(0, 0) {
                let others = existing.rows.indices.dropFirst().map { existing.text($0, 0) }
                throw CloneError("42P07", "relation \"\(first)\" already exists on target",
                                 detail: (others.isEmpty ? "" : "So do: \(Preflight.list(others, limit: 20)).\n") + "Nothing was made: the target is as it was.",
                                 hint: "Use the \"conflict\" option (skip, replace or rename), or drop the tables first.")
            }
        }
        var schemasCreated: [String] = []
        var schemasDescribed: [String] = []
        // What this call created before its tables, newest last: a failure that keeps no table
        // drops it again (a half-made clone is not left behind).
        var undo: [String] = []
        // Types (`schema.name`) this call made: the domains that take NOT VALID constraints.
        var typesCreated: Set<String> = []
        // NOT VALID constraints (`schema.domain.constraint`) of domains the target had, taken off
        // while rows that may break them are copied, and put back after them.
        var constraintsSetAside: Set<String> = []

        // Types, functions and free-standing sequences first: tables may use them.
        try await run("creating schema objects") {
            try await connection.execute("BEGIN")
            do {
                for schema in schemas {
                    let created = try await ensureSchema(schema, on: connection)
                    // A schema this call made, or one it is asked to bring in line with the source
                    // (skip finishes a clone that failed half-way; replace and rename make it
                    // again): it takes the source's comment, grants and default privileges
                    // (round 41 F3). A schema of the target's own, cloned into without a conflict
                    // mode, keeps its own.
                    guard created || freshDatabase || options.conflict != .error else { continue }
                    if let comment = objects.schemaComments[schema] { try await connection.execute(comment) }
                    try await Privileges.apply(objects.schemaGrants[schema] ?? [], on: connection, notes: &summary.notes)
                    schemasDescribed.append(schema)
                    if created { schemasCreated.append(schema) }
                }
                for (name, schema) in objects.extensions {
                    let present = try await connection.query("""
                        SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = $1
                        """, [name])
                    if let home = present.rows.isEmpty ? nil : present.string(0, 0) {
                        // The schema's objects name the extension's types and functions by the
                        // source's schema (round 41 F9: the clone failed half-way).
                        guard home == schema else {
                            throw CloneError("42704", "extension \"\(name)\" is installed in schema \(home) on the target, and in schema \(schema) on the source",
                                             hint: "Move it on the target (ALTER EXTENSION \(SQL.identifier(name)) SET SCHEMA \(SQL.identifier(schema))) if nothing there depends on where it is, or clone into another database.")
                        }
                        continue
                    }
                    do {
                        try await connection.execute("CREATE EXTENSION \(SQL.identifier(name)) WITH SCHEMA \(SQL.identifier(schema)) CASCADE")
                    } catch let error as PQError {
                        throw CloneError(error.sqlState ?? "XX000", "extension \"\(name)\" (installed in schema \(schema) on the source) could not be created on the target: \(error.message)",
                                         hint: "Install the extension's package on the target server, or create the extension there as a superuser first.")
                    }
                    summary.notes.append("extension \(name) created in schema \(schema)")
                }
                for collation in objects.collations {
                    if try await Self.createUnlessPresent(collation, as: "collation", lookup: "to_regcollation", on: connection, notes: &summary.notes) {
                        undo.append("DROP COLLATION \(SQL.qualified(collation.schema, collation.name))")
                    }
                }
                for function in objects.functions where objects.functionsBeforeTextSearch.contains(function.oid) {
                    let creation = try await Self.create(function, on: connection, conflict: options.conflict, summary: &summary)
                    undo += Self.undoEntries(creation, function)
                }
                // What the target already has of these is compared with the source's (round 44f
                // H1: an operator or text search configuration of another definition was kept
                // silently, and indexes built on it gave other results).
                var targetDefinitions: [String: String]?
                for object in objects.textSearch {
                    let (catalog, namespace, name) = switch object.kind {
                    case "text search parser": ("pg_ts_parser", "prsnamespace", "prsname")
                    case "text search template": ("pg_ts_template", "tmplnamespace", "tmplname")
                    case "text search dictionary": ("pg_ts_dict", "dictnamespace", "dictname")
                    default: ("pg_ts_config", "cfgnamespace", "cfgname")
                    }
                    let present = try await connection.query("""
                        SELECT 1 FROM pg_catalog.\(catalog) o JOIN pg_catalog.pg_namespace n ON n.oid = o.\(namespace) WHERE n.nspname = $1 AND o.\(name) = $2
                        """, [object.schema, object.name])
                    if !present.rows.isEmpty {
                        if targetDefinitions == nil { targetDefinitions = try await Self.targetDefinitions(connection, schemas: schemas) }
                        try Self.keepOrRefuse(object.kind, "\(object.schema).\(object.name)", theirs: targetDefinitions?["\(object.kind)\u{0}\(object.schema).\(object.name)"],
                                              ours: Self.definition(object), conflict: options.conflict, notes: &summary.notes)
                        continue
                    }
                    // A dictionary or template of an extension the target lacks, or a parser or
                    // template a caller who is not a superuser may not make: said, and what uses
                    // it then fails with the server's own error.
                    if let error = try await connection.executeTolerating(["42704", "42883", "0A000", "42501"], object.ddl) {
                        summary.notes.append("\(object.kind) \(object.schema).\(object.name) not created: \(error.message)")
                        continue
                    }
                    undo.append("DROP \(object.kind.uppercased()) \(SQL.qualified(object.schema, object.name))")
                }
                // Named first: what uses them fails further on, and says so.
                for skipped in objects.skippedRanges {
                    summary.notes.append("range type \(skipped) has a canonical function: not cloned (create it on the target first; pg_dump -s shows it)")
                }
                for range in objects.ranges where objects.rangesBeforeTypes.contains(range.oid) {
                    if try await Self.createUnlessPresent(range, as: "type", lookup: "to_regtype", on: connection, notes: &summary.notes) {
                        undo.append("DROP TYPE \(SQL.qualified(range.schema, range.name))")
                        typesCreated.insert("\(range.schema).\(range.name)")
                        summary.types += 1
                    }
                }
                var existingTypes: [String: String]?
                for type in objects.types {
                    let present = try await connection.query("SELECT pg_catalog.to_regtype($1) IS NOT NULL", [SQL.qualified(type.schema, type.name)])
                    if present.string(0, 0) == "t" {
                        // The same definition is simply kept; another one is a conflict like a table's.
                        if existingTypes == nil { existingTypes = try await SchemaObjects.typeDefinitions(connection, schemas: schemas) }
                        let theirs = existingTypes?["\(type.schema).\(type.name)"]
                        if theirs == type.ddl.first {
                            summary.notes.append("type \(type.schema).\(type.name) already exists on target with the same definition; kept")
                        } else if options.conflict == .error {
                            throw CloneError("42710", "type \"\(type.schema).\(type.name)\" already exists on target with a different definition",
                                             detail: "source: \(type.ddl.first ?? "")\ntarget: \(theirs ?? "(not an enum, composite or domain)")",
                                             hint: "Use the \"conflict\" option (skip keeps the target's type), or change or drop it first.")
                        } else {
                            summary.notes.append("type \(type.schema).\(type.name) already exists on target with a different definition; kept the target's (source: \(type.ddl.first ?? ""))")
                        }
                        continue
                    }
                    for statement in type.ddl { try await connection.execute(statement) }
                    try await Privileges.resetToDefault("TYPE \(SQL.qualified(type.schema, type.name))", named: SQL.qualified(type.schema, type.name), in: .type,
                                                        publicDefault: "USAGE", on: connection, notes: &summary.notes)
                    try await Privileges.apply(type.grants, on: connection, notes: &summary.notes)
                    undo.append("DROP TYPE \(SQL.qualified(type.schema, type.name))")
                    typesCreated.insert("\(type.schema).\(type.name)")
                    summary.types += 1
                }
                // A domain kept on the target with the source's NOT VALID constraint would refuse
                // the rows that break it (round 41 F6): the constraint is set aside until the rows
                // are in, then made again as on the source.
                for constraint in objects.domainConstraintsAfterData where !typesCreated.contains(constraint.domain) && options.copyData {
                    let present = try await connection.query("""
                        SELECT 1 FROM pg_catalog.pg_constraint WHERE contypid = pg_catalog.to_regtype($1) AND conname = $2 AND NOT convalidated
                        """, [constraint.qualifiedDomain, constraint.name])
                    guard !present.rows.isEmpty else { continue }
                    try await connection.execute("ALTER DOMAIN \(constraint.qualifiedDomain) DROP CONSTRAINT \(SQL.identifier(constraint.name))")
                    constraintsSetAside.insert("\(constraint.domain).\(constraint.name)")
                }
                for function in objects.functions where !objects.functionsAfterTables.contains(function.oid) && !objects.functionsAfterViews.contains(function.oid)
                                                        && !objects.functionsBeforeTextSearch.contains(function.oid) {
                    let creation = try await Self.create(function, on: connection, conflict: options.conflict, summary: &summary)
                    undo += Self.undoEntries(creation, function)
                }
                for constraint in objects.domainConstraintsAfterFunctions where typesCreated.contains(constraint.domain) {
                    for statement in constraint.statements { try await connection.execute(statement) }
                }
                for range in objects.ranges where !objects.rangesBeforeTypes.contains(range.oid) {
                    if try await Self.createUnlessPresent(range, as: "type", lookup: "to_regtype", on: connection, notes: &summary.notes) {
                        undo.append("DROP TYPE \(SQL.qualified(range.schema, range.name))")
                        summary.types += 1
                    }
                }
                for object in objects.notCloned {
                    summary.notes.append("\(object) not cloned: pgclone does not recreate this kind of object; create it on the target (pg_dump -s shows its definition)")
                }
                for op in objects.operators {
                    let present = try await connection.query("SELECT pg_catalog.to_regoperator($1) IS NOT NULL", [op.name])
                    if present.string(0, 0) == "t" {
                        // A commutator or negator named earlier left a shell: this fills it in.
                        let shell = try await connection.query("SELECT o.oprcode = 0 FROM pg_catalog.pg_operator o WHERE o.oid = pg_catalog.to_regoperator($1)", [op.name])
                        guard shell.string(0, 0) == "t" else {
                            if targetDefinitions == nil { targetDefinitions = try await Self.targetDefinitions(connection, schemas: schemas) }
                            try Self.keepOrRefuse("operator", op.name, theirs: targetDefinitions?["operator\u{0}\(op.schema).\(op.name)"], ours: Self.definition(op),
                                                  conflict: options.conflict, notes: &summary.notes)
                            continue
                        }
                    }
                    for statement in op.ddl { try await connection.execute(statement) }
                    undo.append("DROP OPERATOR \(op.name)")
                }
                for (cast, sourceType, targetType) in objects.casts {
                    let present = try await connection.query("""
                        SELECT 1 FROM pg_catalog.pg_cast WHERE castsource = pg_catalog.to_regtype($1) AND casttarget = pg_catalog.to_regtype($2)
                        """, [sourceType, targetType])
                    if !present.rows.isEmpty {
                        if targetDefinitions == nil { targetDefinitions = try await Self.targetDefinitions(connection, schemas: schemas) }
                        try Self.keepOrRefuse("cast", cast.name, theirs: targetDefinitions?["cast\u{0}\(cast.name)"], ours: Self.definition(cast),
                                              conflict: options.conflict, notes: &summary.notes)
                        continue
                    }
                    for statement in cast.ddl { try await connection.execute(statement) }
                    undo.append("DROP CAST \(cast.name)")
                }
                undo += try await Self.createOperatorClassesAndConversions(objects, schemas: schemas, conflict: options.conflict, on: connection, summary: &summary)
                for skipped in objects.skippedFunctions {
                    summary.notes.append("routine \(skipped) not cloned (the source gave no definition of it)")
                }
                for (sequence, lastValue, isCalled) in objects.sequences {
                    let present = try await connection.query("SELECT pg_catalog.to_regclass($1) IS NOT NULL", [SQL.qualified(sequence.schema, sequence.name)])
                    if present.string(0, 0) == "t" {
                        guard options.conflict == .replace || options.conflict == .rename else {
                            summary.notes.append("sequence \(sequence.schema).\(sequence.name) already exists on target; kept")
                            continue
                        }
                        // The tables take the source's rows: a sequence their keys come from must
                        // go on from the source's value, or the next INSERT collides (round 26).
                        try await connection.query("SELECT pg_catalog.setval($1::pg_catalog.regclass, $2::pg_catalog.int8, $3::pg_catalog.bool)",
                                                   [SQL.qualified(sequence.schema, sequence.name), lastValue, isCalled ? "true" : "false"])
                        summary.notes.append("sequence \(sequence.schema).\(sequence.name) already exists on target; set to the source's value")
                        continue
                    }
                    for statement in sequence.ddl { try await connection.execute(statement) }
                    undo.append("DROP SEQUENCE \(SQL.qualified(sequence.schema, sequence.name))")
                    try await Privileges.resetToDefault("SEQUENCE \(SQL.qualified(sequence.schema, sequence.name))", named: SQL.qualified(sequence.schema, sequence.name),
                                                        in: .relation, on: connection, notes: &summary.notes)
                    try await Privileges.apply(sequence.grants, on: connection, notes: &summary.notes)
                    try await connection.query("SELECT pg_catalog.setval($1::pg_catalog.regclass, $2::pg_catalog.int8, $3::pg_catalog.bool)",
                                               [SQL.qualified(sequence.schema, sequence.name), lastValue, isCalled ? "true" : "false"])
                    summary.sequences += 1
                }
                try await connection.execute("COMMIT")
            } catch {
                _ = try? await connection.execute("ROLLBACK")
                // What this call could not make (a range with a canonical function, a parser a
                // caller may not make) is often why (round 43 N9).
                var failure = CloneError.from(error, context: "creating schema objects")
                if let line = Self.notClonedLine(summary.notes) {
                    failure.detail = [failure.detail, line].compactMap { $0 }.joined(separator: "\n")
                }
                throw failure
            }
        }
        // From here on the schema objects are committed: a failure says so.
        let objectsLine = summary.types + summary.functions + summary.sequences == 0 ? nil
            : "Already created and committed on the target: \(summary.types) types, \(summary.functions) functions, \(summary.sequences) sequences."

        // Tables, each in its own transaction; foreign keys wait until every table exists.
        // Inheritance children wait for their parents: one round per generation.
        var deferred: [[String]] = []
        var keptForeignKeys: [KeptForeignKey] = []
        var deferredRules: [[String]] = []
        var indexesAfterFunctions: [[String]] = []
        let work = tables.rows.indices.map { (tables.text($0, 0), tables.text($0, 1)) }
        let inheritance = try await run("reading source catalog") {
            try await session.primary.query("""
                SELECT cn.nspname, c.relname, pn.nspname, p.relname
                FROM pg_catalog.pg_inherits i
                JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace
                JOIN pg_catalog.pg_class p ON p.oid = i.inhparent JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
                WHERE cn.nspname = ANY($1::pg_catalog.text[]) AND NOT c.relispartition
                """, ["{" + schemas.map { "\"" + $0.replacingQuotes() + "\"" }.joined(separator: ",") + "}"])
        }
        // What this call creates (tables and the views recreated after them): objects of these that
        // depend on a replaced table are recreated, so dropping them with it is no loss.
        let clonedTogether = Set(work.map { "\($0.0).\($0.1)" }).union(objects.views.filter(\.isView).map { "\($0.schema).\($0.name)" })
        var parents: [String: [String]] = [:]
        for row in inheritance.rows.indices {
            parents["\(inheritance.text(row, 0)).\(inheritance.text(row, 1))", default: []].append("\(inheritance.text(row, 2)).\(inheritance.text(row, 3))")
        }
        // A table whose default, check, index... calls a function that reads other tables waits
        // for them (and the function is created between them).
        for (table, functions) in objects.functionsCalledByTable {
            for function in functions {
                for needed in objects.tablesNeeded[function] ?? [] where needed != table {
                    parents[table, default: []].append(needed)
                }
            }
        }
        let generations = Self.generations(work, parents: parents, cloned: clonedTogether)
        let laterFunctions = objects.functions.filter { objects.functionsAfterTables.contains($0.oid) }
        var createdFunctions: Set<String> = []
        var tablesDone: Set<String> = []
        let workNames = Set(work.map { "\($0.0).\($0.1)" })
        var outcomes: [TableCloneOutcome] = []
        progress?.start(tables: work.count)
        let committed = CommittedTables()
        do {
            for generation in generations {
                // The functions (that need tables) that this generation's tables call, once what they read exists.
                let called = generation.reduce(into: Set<String>()) { $0.formUnion(objects.functionsCalledByTable["\($1.0).\($1.1)"] ?? []) }
                for function in laterFunctions where called.contains(function.oid) && !createdFunctions.contains(function.oid)
                    && (objects.tablesNeeded[function.oid] ?? []).allSatisfy({ tablesDone.contains($0) || !workNames.contains($0) }) {
                    let creation = try await run("creating functions") {
                        try await Self.create(function, on: connection, inTransaction: false, conflict: options.conflict, summary: &summary)
                    }
                    createdFunctions.insert(function.oid)
                    undo += Self.undoEntries(creation, function)
                }
                var tableOptions = options
                tableOptions.indexesAfterFunctions = objects.indexesAfterFunctions
                outcomes += try await copyTables(generation, session: session, target: target, primaryTarget: connection, options: tableOptions,
                                                 progress: progress, clonedTogether: clonedTogether, committed: committed)
                tablesDone.formUnion(generation.map { "\($0.0).\($0.1)" })
            }
        } catch {
            // Each table is its own transaction: say which ones are already on the target.
            var failure = error
            let done = committed.names
            if done.isEmpty {
                // Nothing the caller asked for got through: what this call made goes again.
                let left = await Self.undo(undo, schemas: schemasCreated, on: connection)
                failure.detail = Self.undoneDetail(failure.detail, left: left, prefix: "No table was cloned; ", notes: summary.notes)
                throw failure
            }
            let line = Self.committedLine(done, of: work.count)
            // Their foreign keys would come only after the last table: added now where what they
            // reference is there, or a skip re-run (which keeps these tables) never adds them
            // (round 27). A cancelled call's statements do not run: none is tried then.
            var keysLine: String?
            if !Task.isCancelled, !committed.foreignKeys.isEmpty {
                _ = try? await connection.execute("ROLLBACK")
                var added = 0
                var missing = 0
                for statements in committed.foreignKeys {
                    do {
                        for statement in statements { try await connection.execute(statement) }
                        added += 1
                    } catch {
                        missing += 1
                    }
                }
                keysLine = "Foreign keys of those tables: \(added) added\(missing > 0 ? ", \(missing) not (what they reference is not there): clone again to add them" : "")."
            }
            // Domain constraints set aside for the rows go back (NOT VALID, as on the source).
            for constraint in objects.domainConstraintsAfterData where constraintsSetAside.contains("\(constraint.domain).\(constraint.name)") {
                _ = try? await connection.executeTolerating(["42710"], constraint.statements, inTransaction: false)
            }
            failure.detail = [failure.detail, objectsLine, line, keysLine,
                              "Not made: the other tables, and what comes after them (rules, routines that read tables, views, default privileges); clone again with {\"conflict\": \"skip\"} once the cause is fixed to finish.",
                              Self.notClonedLine(summary.notes)].compactMap { $0 }.joined(separator: "\n")
            throw failure
        }
        // Tables are committed; what follows (foreign keys, rules, later functions, views, default
        // privileges, large objects) failing is said with what is already there.
        do {
            for outcome in outcomes {
                switch outcome.action {
                case .skipped: summary.skippedTables += 1
                case .cloned:
                    summary.tables += 1
                    summary.rows += outcome.rows ?? 0
                    summary.indexes += outcome.indexes
                    summary.constraints += outcome.constraints
                    summary.triggers += outcome.triggers
                }
                summary.notes += outcome.notes
                deferred += outcome.deferredForeignKeys
                keptForeignKeys += outcome.keptTableForeignKeys
                deferredRules += outcome.deferredRules
                indexesAfterFunctions += outcome.indexesAfterFunctions
                summary.indexes += outcome.indexesAfterFunctions.count
            }
            progress?.stepStarted("adding foreign keys")
            try await run("adding foreign keys") {
                for statements in deferred {
                    do {
                        for statement in statements { try await connection.execute(statement) }
                        summary.constraints += 1
                    } catch let error as PQError where error.sqlState == "42P01" {
                        summary.notes.append("foreign key not added (\(error.message)): its referenced schema is not being cloned")
                    }
                }
                // Tables kept as they were: the source's foreign keys they lack, where their rows (and
                // columns) allow; said where not.
                for key in keptForeignKeys {
                    if let error = try await connection.executeTolerating(["42P01", "42703", "42830", "23503", "42804", "42P16"], key.statements, inTransaction: false) {
                        summary.notes.append("foreign key \(key.name) of a table kept as it was not added (\(error.message))")
                    } else {
                        summary.constraints += 1
                    }
                }
            }

            progress?.stepStarted("adding domain constraints")
            try await run("adding domain constraints") {
                // Domain constraints NOT VALID on the source (rows may break them) follow the rows,
                // on the domains this call made (a domain kept on the target has its own).
                for constraint in objects.domainConstraintsAfterData
                where typesCreated.contains(constraint.domain) || constraintsSetAside.contains("\(constraint.domain).\(constraint.name)") {
                    for statement in constraint.statements { try await connection.execute(statement) }
                }
            }
            progress?.stepStarted("creating rules")
            try await run("creating rules") {
                for statements in deferredRules {
                    if let error = try await connection.executeTolerating(["42P01", "42703"], statements, inTransaction: false) {
                        summary.notes.append("rule not created (\(error.message)): \(statements[0])")
                    }
                }
            }

            // Functions that need a table (its row type, or a BEGIN ATOMIC body reading it).
            progress?.stepStarted("creating functions")
            try await run("creating functions") {
                for function in laterFunctions where !createdFunctions.contains(function.oid) {
                    try await Self.create(function, on: connection, inTransaction: false, conflict: options.conflict, summary: &summary)
                }
            }
            progress?.stepStarted("creating indexes that call those functions")
            try await run("creating indexes that call those functions") {
                for statements in indexesAfterFunctions {
                    for statement in statements { try await connection.execute(statement) }
                }
            }

            progress?.stepStarted("creating views")
            try await run("creating views") {
                for view in objects.views {
                    guard view.isView else {
                        // A function reading views, in its place among them.
                        undo += Self.undoEntries(try await Self.create(view, on: connection, inTransaction: false, conflict: options.conflict, summary: &summary), view)
                        continue
                    }
                    let present = try await connection.query("SELECT pg_catalog.to_regclass($1) IS NOT NULL", [SQL.qualified(view.schema, view.name)])
                    if present.string(0, 0) == "t", options.conflict == .rename {
                        // As its tables: the old one moves aside (still reading the old tables), the
                        // new one reads the new tables (round 27: the views kept reading the _old ones).
                        let aside = try await Self.moveViewAside(view.schema, view.name, kind: view.kind, on: connection)
                        summary.notes.append("existing \(view.kind) \(view.schema).\(view.name) renamed to \(aside)")
                    } else if present.string(0, 0) == "t" {
                        guard options.conflict == .replace else {
                            if options.conflict == .error {
                                throw CloneError("42P07", "relation \"\(view.schema).\(view.name)\" already exists on target",
                                                 hint: "Use the \"conflict\" option (skip, replace or rename), or drop it first.")
                            }
                            summary.notes.append("\(view.kind) \(view.schema).\(view.name) already exists on target; kept")
                            continue
                        }
                        let outside = try await Dependents.of(SQL.qualified(view.schema, view.name), on: connection).filter { dependent in
                            dependent.relation.map { !clonedTogether.contains($0) } ?? true
                        }
                        if !outside.isEmpty {
                            guard options.cascade else { throw Dependents.refusal("\(view.kind) \(view.schema).\(view.name)", outside) }
                            summary.notes.append("dropped with the replaced \(view.kind) \(view.schema).\(view.name) (cascade): "
                                                 + Dependents.describe(outside).joined(separator: ", "))
                        }
                        try await connection.execute("DROP \(view.kind == "view" ? "VIEW" : "MATERIALIZED VIEW") \(SQL.qualified(view.schema, view.name)) CASCADE")
                    }
                    for statement in view.ddl where (options.copyData || !statement.hasPrefix("REFRESH "))
                        && (options.indexes || !(statement.hasPrefix("CREATE INDEX ") || statement.hasPrefix("CREATE UNIQUE INDEX ")))
                        && (options.triggers || !Self.isTriggerStatement(statement)) {
                        try await connection.execute(statement)
                    }
                    try await Privileges.resetToDefault("TABLE \(SQL.qualified(view.schema, view.name))", named: SQL.qualified(view.schema, view.name), in: .relation,
                                                        on: connection, inTransaction: false, notes: &summary.notes)
                    try await Privileges.apply(view.grants, on: connection, inTransaction: false, notes: &summary.notes)
                    if present.string(0, 0) != "t" {
                        undo.append("DROP \(view.kind == "view" ? "VIEW" : "MATERIALIZED VIEW") IF EXISTS \(SQL.qualified(view.schema, view.name)) CASCADE")
                    }
                    if view.kind == "view" { summary.views += 1 } else { summary.materializedViews += 1 }
                }
            }

            // Default privileges last, as pg_dump: set first, they would grant on every object the
            // clone creates what the source's objects (made before them) never had.
            progress?.stepStarted("setting default privileges")
            try await run("setting default privileges") {
                try await Privileges.apply(objects.extensionMemberGrants, on: connection, inTransaction: false, notes: &summary.notes)
                for schema in schemasDescribed {
                    for statement in objects.defaultPrivileges[schema] ?? [] {
                        // FOR ROLE needs membership in that role (or a superuser): said, not fatal.
                        if let error = try await connection.executeTolerating(["42704", "42501"], [statement], inTransaction: false) {
                            summary.notes.append("default privileges not set (\(error.message)): \(statement)")
                        }
                    }
                }
            }

            if largeObjects && options.copyData && options.masksAnything {
                // A large object is reached through an oid column; a clone cannot tell which of them
                // hold data a masked column pointed to, so none is copied (attack round 22).
                summary.notes.append("large objects not copied: the clone masks columns, and large objects hold data it cannot mask")
            } else if largeObjects && options.copyData {
                try await run("copying large objects") {
                    summary.largeObjects = try await LargeObjects.copy(from: session.primary, to: connection, conflict: options.conflict, notes: &summary.notes)
                }
            }
            if largeObjects {
                // Whole-database objects outside any schema that a clone does not make, said as
                // pg_dump would have made them (a publication's subscribers, an event trigger's
                // superuser function are the target's business).
                let others = try await run("reading source catalog") {
                    try await session.primary.query("""
                        SELECT 'publication ' || pg_catalog.quote_ident(pubname) FROM pg_catalog.pg_publication
                        UNION ALL SELECT 'event trigger ' || pg_catalog.quote_ident(evtname) FROM pg_catalog.pg_event_trigger
                        UNION ALL SELECT 'foreign server ' || pg_catalog.quote_ident(srvname) FROM pg_catalog.pg_foreign_server
                        UNION ALL SELECT 'user mapping for ' || pg_catalog.quote_ident(usename) || ' on server ' || pg_catalog.quote_ident(srvname)
                          FROM pg_catalog.pg_user_mappings
                        ORDER BY 1
                        """).strings.compactMap { $0 }
                }
                for object in others {
                    summary.notes.append("\(object) not cloned: pgclone does not recreate this kind of object; create it on the target (pg_dump shows its definition)")
                }
            }
            return summary
        } catch {
            var failure = error
            let done = committed.names
            if done.isEmpty {
                // No table (a schema of views only): what this call made goes again.
                let left = await Self.undo(undo, schemas: schemasCreated, on: connection)
                failure.detail = Self.undoneDetail(failure.detail, left: left, prefix: "", notes: summary.notes)
            } else {
                failure.detail = [failure.detail, Self.committedLine(done, of: work.count),
                                  "Not made: what comes after the failing step (views, rules, routines, default privileges); clone again with {\"conflict\": \"skip\"} once the cause is fixed to finish.",
                                  Self.notClonedLine(summary.notes)]
                    .compactMap { $0 }.joined(separator: "\n")
            }
            throw failure
        }
    }

    /// A failed clone's DETAIL once what it made was dropped again (or could not be).
    static func undoneDetail(_ detail: String?, left: [String], prefix: String, notes: [String]) -> String {
        let undone = left.isEmpty ? "what this call had created was dropped again: the target is as it was."
                                  : "some of what this call created could not be dropped again: \(Preflight.list(left, limit: 20))."
        let sentence = prefix.isEmpty ? undone.prefix(1).uppercased() + undone.dropFirst() : prefix + undone
        return [detail, sentence, notClonedLine(notes)].compactMap { $0 }.joined(separator: "\n")
    }

    static func committedLine(_ done: [String], of total: Int) -> String {
        "Already cloned and committed on the target (\(done.count) of \(total) tables): \(Preflight.list(done.sorted(), limit: 20))."
    }

    /// The objects a clone does not make, for a failure's DETAIL: what uses one fails, and the
    /// notice saying so would come only with a success.
    static func notClonedLine(_ notes: [String]) -> String? {
        // Kinds a clone does not make, and objects this call could not make (a parser for a
        // caller who is not a superuser, a range with a canonical function: round 43 N9).
        let skipped = notes.compactMap { note -> String? in
            for marker in [" not cloned: pgclone does not recreate", " not created: ", " has a canonical function: not cloned"] {
                if let range = note.range(of: marker) { return String(note[..<range.lowerBound]) }
            }
            return nil
        }
        return skipped.isEmpty ? nil : "Not made by a clone (create on the target what needs them): \(Preflight.list(skipped, limit: 20))."
    }

    /// What `create` did with a routine.
    enum RoutineCreation: Equatable {
        /// Made new: a failed call drops it again.
        case created
        /// The target's own routine was replaced; this statement puts it back.
        case replaced(previous: [String])
        /// The target's routine stays (the same definition, or one the options keep).
        case kept
    }

    /// A function (or aggregate) with its comment and grants; a SECURITY DEFINER one whose source
    /// owner is another role now runs with the calling role's rights, which the notes say.
    /// A routine with the same signature already on the target is kept when its definition is
    /// the same; another definition is a conflict like a table's: an error, kept (skip, rename)
    /// or replaced (replace). Before, it was silently replaced (and dropped again by a failed
    /// call's undo, or, for an aggregate, made every second clone fail; fidelity round 25).
    @discardableResult
    private static func create(_ function: SchemaObjects.Object, on connection: PQConnection, inTransaction: Bool = true,
                               conflict: CloneOptions.Conflict, summary: inout SchemaCloneSummary) async throws -> RoutineCreation {
        var creation = RoutineCreation.created
        if let signature = function.regprocedure {
            let existing = try await connection.query("""
                SELECT \(SchemaObjects.routineDefinition), p.proacl IS NOT NULL, \(Privileges.sqlEntries(acl: "p.proacl", owner: "p.proowner")),
                       pg_catalog.obj_description(p.oid, 'pg_proc')
                FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                LEFT JOIN pg_catalog.pg_aggregate a ON a.aggfnoid = p.oid
                WHERE p.oid = pg_catalog.to_regprocedure($1)
                """, [signature])
            if !existing.rows.isEmpty {
                let theirs = existing.string(0, 0)
                let described = "\(function.kind) \(function.schema).\(function.name)"
                if theirs == function.ddl.first {
                    summary.notes.append("\(described) already exists on target with the same definition; kept")
                    return .kept
                }
                switch conflict {
                case .error:
                    throw CloneError("42723", "\(described) already exists on target with a different definition",
                                     detail: "source: \(function.ddl.first ?? "")\ntarget: \(theirs ?? "(a kind of routine pgclone does not recreate)")",
                                     hint: "Use the \"conflict\" option (skip keeps the target's, replace replaces it), or change or drop it first.")
                case .replace, .rename:
                    // Under rename as under replace: the new tables (and the old ones) call it.
                    guard let theirs else { fallthrough }
                    // What puts it back should the call fail: its definition, comment and grants
                    // (round 26: the undo put back the body but left the source's grants).
                    var previous = [theirs]
                    previous.append("COMMENT ON ROUTINE \(signature) IS \(existing.string(0, 3).map(SQL.literal) ?? "NULL")")
                    previous.append(Self.revokeAll(on: signature))
                    let grants = Privileges(encoded: existing.string(0, 2)).statements(on: "ROUTINE \(signature)")
                    previous += existing.string(0, 1) == "t" ? grants : ["GRANT EXECUTE ON ROUTINE \(signature) TO PUBLIC"] + grants
                    creation = .replaced(previous: previous)
                    summary.notes.append("\(described) already existed on target with another definition; replaced")
                default:
                    summary.notes.append("\(described) already exists on target with another definition; kept the target's")
                    return .kept
                }
            }
        }
        do {
            for statement in function.ddl { try await connection.execute(statement) }
        } catch let error as PQError where creation != .created && ["42P13", "42809"].contains(error.sqlState ?? "") {
            // CREATE OR REPLACE cannot change a routine's result type, parameter names,
            // defaults or kind (round 26: the server's error came alone).
            throw CloneError(error.sqlState ?? "42P13", "cannot replace \(function.kind) \(function.schema).\(function.name) on target: \(error.message)",
                             hint: "Drop it on the target first (DROP ROUTINE \(function.regprocedure ?? function.name)), or keep it with conflict skip.")
        } catch let error as PQError where error.sqlState == "42501" {
            // A routine in C or internal (a window function, an aggregate's support function)
            // is a superuser's to make (round 43 N7: the error named no routine).
            throw CloneError("42501", "cannot create \(function.kind) \(function.schema).\(function.name) on target: \(error.message)",
                             hint: "Routines in C or internal need a superuser: create it on the target as one first (the clone then keeps it), or clone as a superuser.")
        }
        if let signature = function.signature, let regprocedure = function.regprocedure {
            try await Privileges.resetToDefault("ROUTINE \(signature)", named: regprocedure, in: .routine, publicDefault: "EXECUTE",
                                                on: connection, inTransaction: inTransaction, notes: &summary.notes)
        }
        try await Privileges.apply(function.grants, on: connection, inTransaction: inTransaction, notes: &summary.notes)
        if let owner = function.securityDefinerOwner {
            let caller = try await connection.query("SELECT current_user")
            if caller.string(0, 0) != owner {
                summary.notes.append("SECURITY DEFINER function \(function.schema).\(function.name) is owned by \(caller.string(0, 0) ?? "the calling role") on the target (\(owner) on the source): it runs with that role's rights")
            }
        }
        summary.functions += 1
        return creation
    }

    /// A schema or database clone's masks must each find something to mask: a column mask a
    /// column of some table of the clone, a table's masks a table of the clone (a typo would
    /// otherwise leave the real values unmasked, and say OK).
    private func checkMasks(_ options: CloneOptions, schemas: [String], session: SourceSession) async throws(CloneError) {
        if options.columns != nil {
            // One list of columns for every table of a schema would fail on the first table
            // without them, after others were committed (round 28).
            throw CloneError.invalidOption("option \"columns\" is for table clones", hint: "Clone the table on its own (pgclone.table) to pick its columns.")
        }
        guard options.masksAnything else { return }
        // The clone's tables and their columns, read once; a key names a table as "table" or "schema.table".
        let catalog = try await run("reading source catalog") {
            try await session.primary.query("""
                SELECT n.nspname::pg_catalog.text, c.relname::pg_catalog.text, a.attname::pg_catalog.text, pg_catalog.format('%I.%I', n.nspname, c.relname)
                FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                WHERE n.nspname = ANY($1::pg_catalog.text[]) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
                """, [SQL.textArray(schemas)])
        }
        var columnsOf: [String: (schema: String, name: String, columns: Set<String>)] = [:]
        for row in catalog.rows.indices {
            let (schema, name) = (catalog.text(row, 0), catalog.text(row, 1))
            columnsOf[catalog.text(row, 3), default: (schema, name, [])].columns.insert(catalog.text(row, 2))
        }
        let allColumns = columnsOf.values.reduce(into: Set<String>()) { $0.formUnion($1.columns) }
        func tablesNamed(_ key: String) -> [(qualified: String, columns: Set<String>)] {
            columnsOf.filter { $0.value.name == key || "\($0.value.schema).\($0.value.name)" == key }
                .map { ($0.key, $0.value.columns) }.sorted { $0.qualified < $1.qualified }
        }
        for (key, masks) in options.tableMasks.sorted(by: { $0.key < $1.key }) {
            let named = tablesNamed(key)
            if options.ambiguousMasks.contains(key) {
                // Read both ways: a column somewhere, or a table with every column it masks.
                guard allColumns.contains(key) || (!named.isEmpty && named.allSatisfy({ masks.keys.allSatisfy($0.columns.contains) })) else {
                    throw CloneError("42703", "the mask for \"\(key)\" names neither a column of the clone nor a table of it with the columns it masks")
                }
                continue
            }
            guard !named.isEmpty else {
                // A partition's rows come through its parent: its masks are the parent's.
                let parent = try? await session.primary.query("""
                    SELECT pn.nspname || '.' || p.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                    JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
                    JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
                    WHERE c.relispartition AND (c.relname = $1 OR n.nspname || '.' || c.relname = $1)
                    """, [key]).string(0, 0)
                if let parent {
                    throw CloneError("42P01", "the mask names partition \"\(key)\", whose rows the clone copies through its parent \(parent)",
                                     hint: "Mask the parent's columns: they cover every partition.")
                }
                throw CloneError("42P01", "the mask names table \"\(key)\", which this clone does not include",
                                 hint: "Name tables as \"table\" or \"schema.table\" of the schemas cloned.")
            }
            // Every table the key names must have the columns it masks: found now, before anything
            // is made (round 29: a plain name matching tables in two schemas failed late).
            for table in named {
                if let missing = masks.keys.sorted().first(where: { !table.columns.contains($0) }) {
                    throw CloneError("42703", "cannot mask column \"\(missing)\" of \(table.qualified): it does not exist (the mask for \"\(key)\" names that table)",
                                     hint: "Name the table with its schema (\"schema.table\") when tables of several schemas share its name.")
                }
            }
        }
        for column in options.mask.keys.sorted() where !options.ambiguousMasks.contains(column) && !allColumns.contains(column) {
            throw CloneError("42703", "cannot mask column \"\(column)\": no table of the clone has it",
                             hint: "Masks by column apply to every table that has the column; {\"table\": {\"column\": ...}} masks one table's.")
        }
    }

    /// Renames an existing view or materialized view to `<name>_old` (or `_old_2`, ...), and
    /// a materialized view's indexes with it; returns the new qualified name.
    private static func moveViewAside(_ schema: String, _ name: String, kind: String, on connection: PQConnection) async throws -> String {
        let candidate = try await TableCloner.asideName(name, in: schema, on: connection)
        let indexes = try await connection.query("""
            SELECT ic.relname::pg_catalog.text FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
            WHERE i.indrelid = $1::pg_catalog.regclass
            """, [SQL.qualified(schema, name)]).strings.compactMap { $0 }
        try await connection.execute("ALTER \(kind == "view" ? "VIEW" : "MATERIALIZED VIEW") \(SQL.qualified(schema, name)) RENAME TO \(SQL.identifier(candidate))")
        for index in indexes {
            let renamed = NameMapping.rename(index, table: name, to: candidate)
            if renamed != index { try await connection.execute("ALTER INDEX \(SQL.qualified(schema, index)) RENAME TO \(SQL.identifier(renamed))") }
        }
        return "\(schema).\(candidate)"
    }

    /// The undo entries for a routine `create` made or replaced, in the order `undo` keeps
    /// them (it runs them newest first).
    private static func undoEntries(_ creation: RoutineCreation, _ function: SchemaObjects.Object) -> [String] {
        switch creation {
        case .created: return function.signature.map { ["DROP ROUTINE \($0)"] } ?? []
        case .replaced(let previous): return previous.reversed()
        case .kept: return []
        }
    }

    /// Takes back every privilege granted on a routine (PUBLIC's too), whoever holds it now.
    static func revokeAll(on signature: String) -> String {
        let body = """
            DECLARE g record;
            BEGIN
              FOR g IN SELECT DISTINCT a.grantee FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
                       WHERE p.oid OPERATOR(pg_catalog.=) \(SQL.literal(signature))::pg_catalog.regprocedure AND a.grantee OPERATOR(pg_catalog.<>) p.proowner LOOP
                EXECUTE pg_catalog.format('REVOKE ALL ON ROUTINE %s FROM %s', \(SQL.literal(signature))::pg_catalog.regprocedure,
                                          CASE WHEN g.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END);
              END LOOP;
              EXECUTE pg_catalog.format('REVOKE ALL ON ROUTINE %s FROM PUBLIC', \(SQL.literal(signature))::pg_catalog.regprocedure);
            END
            """
        return "DO \(SQL.literal(body))"
    }

    /// Drops what a failed call created, newest first, then the schemas it created (with
    /// whatever is left in them); returns what could not be dropped.
    private static func undo(_ statements: [String], schemas: [String], on connection: PQConnection) async -> [String] {
        var left: [String] = []
        _ = try? await connection.execute("ROLLBACK")
        for statement in statements.reversed() {
            do { try await connection.execute(statement) } catch let error as PQError where error.sqlState == "42704" || error.sqlState == "42883" {
                continue  // already gone with something dropped before it
            } catch {
                left.append(statement.replacingOccurrences(of: "DROP ", with: ""))
            }
        }
        for schema in schemas {
            do { try await connection.execute("DROP SCHEMA \(SQL.identifier(schema)) CASCADE") } catch { left.append("SCHEMA \(schema)") }
        }
        return left
    }

    /// Creates `object` unless the `lookup` function (to_regtype...) finds its name on the target,
    /// which the notes then say; whether it was created.
    private static func createUnlessPresent(_ object: SchemaObjects.Object, as kind: String, lookup: String, on connection: PQConnection,
                                            notes: inout [String]) async throws -> Bool {
        let present = try await connection.query("SELECT pg_catalog.\(lookup)($1) IS NOT NULL", [SQL.qualified(object.schema, object.name)])
        if present.string(0, 0) == "t" {
            notes.append("\(kind) \(object.schema).\(object.name) already exists on target; kept")
            return false
        }
        for statement in object.ddl { try await connection.execute(statement) }
        return true
    }

    /// A view's trigger statements (left out with `"triggers": false`).
    static func isTriggerStatement(_ statement: String) -> Bool {
        statement.hasPrefix("CREATE TRIGGER ") || statement.hasPrefix("CREATE CONSTRAINT TRIGGER ") || statement.hasPrefix("COMMENT ON TRIGGER ")
    }

    /// Copies tables, `options.parallel` at a time, each worker on its own source
    /// connection (same snapshot) and target connection.
    /// `tables` split so that every table comes after the parents it inherits from (those in `cloned`),
    /// keeping the given order within each generation.
    static func generations(_ tables: [(String, String)], parents: [String: [String]], cloned: Set<String>) -> [[(String, String)]] {
        var depth: [String: Int] = [:]
        func level(_ name: String, _ visiting: Set<String> = []) -> Int {
            if let known = depth[name] { return known }
            let inCloned = (parents[name] ?? []).filter { cloned.contains($0) && !visiting.contains($0) }
            let value = inCloned.map { level($0, visiting.union([name])) + 1 }.max() ?? 0
            depth[name] = value
            return value
        }
        var result: [[(String, String)]] = []
        for table in tables {
            let value = level("\(table.0).\(table.1)")
            while result.count <= value { result.append([]) }
            result[value].append(table)
        }
        return result
    }

    private func copyTables(_ tables: [(String, String)], session: SourceSession, target: CloneTarget, primaryTarget: PQConnection,
                            options: CloneOptions, progress: (any CloneProgress)?, clonedTogether: Set<String>,
                            committed: CommittedTables, splitting: Bool = true) async throws(CloneError) -> [TableCloneOutcome] {
        if splitting && options.parallel > 1 && options.copyData {
            // Tables large enough to be split go first, each with every worker on its parts;
            // the rest are then shared out whole.
            var (split, rest) = try await splitCandidates(tables, session: session, options: options)
            var outcomes: [TableCloneOutcome] = []
            for (schema, table) in split {
                let name = "\(schema).\(table)"
                progress?.tableStarted(name)
                let definition = try await loadTable(session.primary, schema: schema, table: table)
                let options = try options.forTable(definition, strict: false)
                guard let splitCopy = try await splitCopy(definition, session: session, target: target, options: options, progress: progress) else {
                    rest.insert((schema, table), at: 0)
                    continue
                }
                let cloner = TableCloner(source: session.primary, target: primaryTarget)
                let outcome = try await cloner.clone(definition, into: schema, as: table, options: options, deferForeignKeys: true,
                                                     clonedTogether: clonedTogether, split: splitCopy)
                progress?.tableFinished(name, rows: outcome.rows ?? 0, bytes: outcome.bytes)
                if outcome.action == .cloned { committed.add(name, foreignKeys: outcome.deferredForeignKeys) }
                outcomes.append(outcome)
            }
            return outcomes + (try await copyTables(rest, session: session, target: target, primaryTarget: primaryTarget, options: options,
                                                    progress: progress, clonedTogether: clonedTogether, committed: committed, splitting: false))
        }
        if options.parallel <= 1 || tables.count <= 1 {
            var outcomes: [TableCloneOutcome] = []
            let cloner = TableCloner(source: session.primary, target: primaryTarget)
            for (schema, table) in tables {
                progress?.tableStarted("\(schema).\(table)")
                let definition = try await loadTable(session.primary, schema: schema, table: table)
                let options = try options.forTable(definition, strict: false)
                let outcome = try await cloner.clone(definition, into: schema, as: table, options: options, deferForeignKeys: true,
                                                     clonedTogether: clonedTogether)
                progress?.tableFinished("\(schema).\(table)", rows: outcome.rows ?? 0, bytes: outcome.bytes)
                if outcome.action == .cloned { committed.add("\(schema).\(table)", foreignKeys: outcome.deferredForeignKeys) }
                outcomes.append(outcome)
            }
            return outcomes
        }
        let queue = WorkQueue(tables)
        let workers = min(options.parallel, tables.count)
        do {
            return try await withThrowingTaskGroup(of: [TableCloneOutcome].self) { group in
                for _ in 0..<workers {
                    group.addTask {
                        let source = try await session.openWorker()
                        let targetConnection = try await target.connect()
                        // The workers already keep `parallel` cores busy: an index build that
                        // fans out too only adds coordination work (measured: ~1 CPU-second more,
                        // 0.3-0.7 s longer, for the 1.2 GB bench on 2 cores).
                        try await targetConnection.exec("SET max_parallel_maintenance_workers = 0")
                        let cloner = TableCloner(source: source, target: targetConnection)
                        var outcomes: [TableCloneOutcome] = []
                        while let (schema, table) = queue.next() {
                            try Task.checkCancellation()
                            progress?.tableStarted("\(schema).\(table)")
                            let definition = try await self.loadTable(source, schema: schema, table: table)
                            let options = try options.forTable(definition, strict: false)
                            let outcome = try await cloner.clone(definition, into: schema, as: table, options: options, deferForeignKeys: true,
                                                     clonedTogether: clonedTogether)
                            progress?.tableFinished("\(schema).\(table)", rows: outcome.rows ?? 0, bytes: outcome.bytes)
                            if outcome.action == .cloned { committed.add("\(schema).\(table)", foreignKeys: outcome.deferredForeignKeys) }
                            outcomes.append(outcome)
                        }
                        return outcomes
                    }
                }
                var all: [TableCloneOutcome] = []
                for try await outcomes in group { all += outcomes }
                return all.sorted { $0.source < $1.source }
            }
        } catch {
            throw CloneError.from(error, context: "cloning tables")
        }
    }

    /// Splits `tables` into those large enough to be copied in parts (largest first) and the rest.
    /// `split_larger_than` decides; by default a table is split when it is over 1 GB and over half
    /// of one worker's fair share of the data (heap and TOAST: the bytes COPY moves).
    private func splitCandidates(_ tables: [(String, String)], session: SourceSession, options: CloneOptions) async throws(CloneError)
        -> (split: [(String, String)], rest: [(String, String)]) {
        let sizes = try await run("reading table sizes on source") {
            try await session.primary.query("""
                SELECT n.nspname, c.relname, pg_catalog.pg_table_size(c.oid)
                FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relkind = 'r' AND (n.nspname, c.relname) IN (SELECT * FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.text[])))
                """, [Self.textArray(tables.map(\.0)), Self.textArray(tables.map(\.1))])
        }
        var bytes: [String: Int64] = [:]
        for row in sizes.rows.indices { bytes["\(sizes.text(row, 0)).\(sizes.text(row, 1))"] = Int64(sizes.string(row, 2) ?? "0") ?? 0 }
        let total = bytes.values.reduce(0, +)
        let threshold = options.splitLargerThan ?? max(1 << 30, total / Int64(2 * options.parallel))
        let split = tables.filter { (bytes["\($0.0).\($0.1)"] ?? 0) > threshold }
            .sorted { (bytes["\($0.0).\($0.1)"] ?? 0) > (bytes["\($1.0).\($1.1)"] ?? 0) }
        let splitNames = Set(split.map { "\($0.0).\($0.1)" })
        return (split, tables.filter { !splitNames.contains("\($0.0).\($0.1)") })
    }

    static func textArray(_ values: [String]) -> String {
        "{" + values.map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }.joined(separator: ",") + "}"
    }

    /// How to copy `definition` in parts, or nil when it cannot be cut (no integer key and a
    /// source older than PostgreSQL 14, or too few rows).
    private func splitCopy(_ definition: TableDefinition, session: SourceSession, target: CloneTarget, options: CloneOptions,
                           progress: (any CloneProgress)?) async throws(CloneError) -> SplitCopy? {
        let source = session.primary
        let facts = try await run("reading \(definition.displayName) on source") {
            try await source.query("""
                SELECT pg_catalog.pg_table_size(c.oid),
                       pg_catalog.pg_relation_size(c.oid, 'main') / pg_catalog.current_setting('block_size')::pg_catalog.int8,
                       pg_catalog.current_setting('server_version_num')::pg_catalog.int4,
                       (SELECT a.attname FROM pg_catalog.pg_index i
                        JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                        WHERE i.indrelid = c.oid AND i.indnatts = 1 AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
                          AND a.attnotnull AND a.atttypid IN (20, 21, 23)
                        ORDER BY i.indisprimary DESC, a.attnum LIMIT 1)
                FROM pg_catalog.pg_class c WHERE c.oid = $1::pg_catalog.regclass
                """, [definition.qualifiedName])
        }
        let bytes = Int64(facts.string(0, 0) ?? "0") ?? 0
        let parts = RangePlanner.partCount(bytes: bytes, threshold: 0, workers: options.parallel)
        var key: RangePlanner.Key?
        if let column = facts.string(0, 3) {
            let bounds = try await run("reading \(definition.displayName) on source") {
                try await source.query("SELECT min(\(SQL.identifier(column)))::pg_catalog.int8, max(\(SQL.identifier(column)))::pg_catalog.int8 FROM ONLY \(definition.qualifiedName)")
            }
            if let low = bounds.string(0, 0).flatMap({ Int64($0) }), let high = bounds.string(0, 1).flatMap({ Int64($0) }) {
                key = .integer(column: column, min: low, max: high)
            }
        } else if (Int(facts.string(0, 2) ?? "0") ?? 0) >= 140000 {
            key = .pages(Int64(facts.string(0, 1) ?? "0") ?? 0)
        }
        guard let key else { return nil }
        let predicates = RangePlanner.predicates(key, parts: parts)
        guard predicates.count > 1 else { return nil }
        let masked = !options.mask.isEmpty
        let workers = min(options.parallel, predicates.count)
        let name = "\(definition.schema).\(definition.name)"
        return SplitCopy(parts: predicates.count) { plan, targetSQL in
            let queue = WorkQueue(predicates)
            return try await withThrowingTaskGroup(of: (rows: Int, bytes: Int).self) { group in
                for _ in 0..<workers {
                    group.addTask {
                        let reader = try await session.openWorker()
                        let writer = try await target.connect()
                        var rows = 0, bytes = 0
                        while let predicate = queue.next() {
                            try Task.checkCancellation()
                            try await writer.execute("BEGIN")
                            let copied = try await reader.copyCounting(plan.sourceCopySQL(definition, masked: masked, range: predicate), into: writer, targetSQL)
                            try await writer.execute("COMMIT")
                            progress?.partFinished(name, rows: copied.rows, bytes: copied.bytes)
                            rows += copied.rows
                            bytes += copied.bytes
                        }
                        return (rows, bytes)
                    }
                }
                var total = (rows: 0, bytes: 0)
                for try await part in group { total = (total.rows + part.rows, total.bytes + part.bytes) }
                return total
            }
        }
    }

    private func run<T>(_ context: String, _ body: () async throws -> T) async throws(CloneError) -> T {
        do {
            return try await body()
        } catch {
            throw CloneError.from(error, context: context)
        }
    }
}

/// Creates `schema` on the target unless it exists. (CREATE SCHEMA IF NOT EXISTS would
/// demand CREATE on the database even for an existing schema.)
/// Returns whether it was created.
@discardableResult
func ensureSchema(_ schema: String, on connection: PQConnection) async throws -> Bool {
    let exists = try await connection.query("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1", [schema])
    guard exists.rows.isEmpty else { return false }
    try await connection.execute("CREATE SCHEMA \(SQL.identifier(schema))")
    return true
}

/// Receives progress of a multi-table clone (CLI progress bar, job progress).
public protocol CloneProgress: Sendable {
    func start(tables: Int)
    func tableStarted(_ name: String)
    /// One part of a table copied in parts is committed (its rows count from now on).
    func partFinished(_ name: String, rows: Int, bytes: Int)
    /// `rows` and `bytes`: the table's whole counts (parts already reported included).
    func tableFinished(_ name: String, rows: Int, bytes: Int)
    /// The clone moved on to a step after the tables (foreign keys, rules, views...).
    func stepStarted(_ step: String)
}

extension CloneProgress {
    public func partFinished(_ name: String, rows: Int, bytes: Int) {}
    public func stepStarted(_ step: String) {}
}

/// Hands out work items to parallel workers.
final class WorkQueue<Item: Sendable>: @unchecked Sendable {
    private var items: [Item]
    private let lock = NSLock()
    init(_ items: [Item]) { self.items = items.reversed() }
    func next() -> Item? { lock.withLock { items.popLast() } }
}

/// What clone_roles did.
public struct RoleCloneSummary: Sendable, Equatable {
    public var created: Int
    public var updated: Int
    public var grants: Int
    public var notes: [String]

    /// `OK: 3 roles created, 0 roles updated, 12 grants applied` (the guide's wording, plural
    /// whatever the count: scripts read it).
    public var message: String {
        "OK: \(created) roles created, \(updated) roles updated, \(grants) grants applied"
    }
}

/// One table's line in verify's result.
public struct VerifyRow: Sendable, Equatable {
    public var schema: String
    public var table: String
    public var sourceRows: Int64?
    public var targetRows: Int64?
    /// `✓`, `✗`, `✗ (missing on target)` or `✗ (only on target)`.
    public var match: String
    /// What differs, where the mode can tell (checksum: the keys of the rows that differ).
    public var detail: String?
}

/// What diff found: JSON for the SQL API, a listing for the command line, how many differences.
public struct SchemaDifferences: Sendable, Equatable {
    public var json: String
    public var listing: String
    public var count: Int
}

/// One row of preflight: a check, `ok`/`warn`/`fail`, and what it found.
public struct PreflightCheck: Sendable, Equatable {
    public var name: String
    public var status: String
    public var detail: String
}

/// The tables of one call already committed on the target (workers add to it concurrently).
final class CommittedTables: @unchecked Sendable {
    // @unchecked: every access holds `lock`.
    private let lock = NSLock()
    private var list: [String] = []
    private var keys: [[String]] = []

    /// A table committed, with the foreign keys it waits to get once every table is there.
    func add(_ name: String, foreignKeys: [[String]]) {
        lock.withLock {
            list.append(name)
            keys += foreignKeys
        }
    }
    var names: [String] { lock.withLock { list } }
    var foreignKeys: [[String]] { lock.withLock { keys } }
}
