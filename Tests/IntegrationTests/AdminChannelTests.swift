import Foundation
import PQ
import Proxy
import Testing

/// The admin channel beyond the guide: drivers, protocol corners, permissions, atomicity.
@Suite struct AdminChannelTests {
    private func sourceConnInfo(_ environment: TestEnvironment) -> String {
        "host=127.0.0.1 port=\(environment.sourcePort) dbname=db1 user=postgres password=\(environment.password)"
    }

    /// A fresh target database, dropped afterwards.
    private func withDatabase(_ environment: TestEnvironment, _ body: (String) async throws -> Void) async throws {
        let name = "admin_\(UInt32.random(in: 0...UInt32.max))"
        let admin = try await PQConnection.connect(environment.directTarget())
        try await admin.exec("CREATE DATABASE \(name)")
        do {
            try await body(name)
        } catch {
            _ = try? await admin.exec("DROP DATABASE \(name) WITH (FORCE)")
            throw error
        }
        try await admin.exec("DROP DATABASE \(name) WITH (FORCE)")
    }

    /// A login role (password "pw") in a fresh group that the proxy's --admin-roles names, and
    /// that proxy; `body` gets the admin connection, the member's name and the proxy.
    private func withAdminGroupMember(_ environment: TestEnvironment, _ prefix: String,
                                      _ body: (_ admin: PQConnection, _ member: String, _ proxy: RunningProxy) async throws -> Void) async throws {
        let suffix = UInt32.random(in: 0...UInt32.max)
        let group = "\(prefix)s_\(suffix)", member = "\(prefix)_\(suffix)"
        let admin = try await PQConnection.connect(environment.directTarget())
        try await admin.exec("CREATE ROLE \(group); CREATE ROLE \(member) LOGIN PASSWORD 'pw' IN ROLE \(group)")
        let proxy = try await RunningProxy.start(environment) { $0.adminRoles = [group] }
        do {
            try await body(admin, member, proxy)
        } catch {
            try? await proxy.stop()
            _ = try? await admin.exec("DROP ROLE \(member); DROP ROLE \(group)")
            throw error
        }
        try await proxy.stop()
        _ = try? await admin.exec("DROP ROLE \(member); DROP ROLE \(group)")
    }

    /// A source database of its own (the shared db1 must not change while other tests read it),
    /// filled by `setup` run as postgres, dropped afterwards; `body` gets its name, a conninfo
    /// for it and a running proxy in front of the target.
    private func withSourceDatabase(_ environment: TestEnvironment, _ prefix: String, setup: String,
                                    _ body: (_ name: String, _ conninfo: String, _ proxy: RunningProxy) async throws -> Void) async throws {
        let name = "\(prefix)_\(UInt32.random(in: 0...UInt32.max))"
        let sourceAdmin = try await PQConnection.connect("host=127.0.0.1 port=\(environment.sourcePort) dbname=postgres user=postgres password=\(environment.password)")
        try await sourceAdmin.exec("CREATE DATABASE \(name)")
        let conninfo = "host=127.0.0.1 port=\(environment.sourcePort) dbname=\(name) user=postgres password=\(environment.password)"
        let proxy = try await RunningProxy.start(environment)
        do {
            try await PQConnection.connect(conninfo).exec(setup)
            try await body(name, conninfo, proxy)
        } catch {
            try? await proxy.stop()
            _ = try? await sourceAdmin.exec("DROP DATABASE \(name) WITH (FORCE)")
            throw error
        }
        try await proxy.stop()
        try await sourceAdmin.exec("DROP DATABASE \(name) WITH (FORCE)")
    }

    @Test func asyncpgPreparedStatementsDescribeAndBinaryParameters() async throws {
        let environment = try TestEnvironment.require()
        let proxy = try await RunningProxy.start(environment)
        defer { Task { try await proxy.stop() } }
        try await withDatabase(environment) { database in
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("python/admin_asyncpg.py").path
            let output = try await Shell.run(["python3", script], environment: [
                "PGHOST": "127.0.0.1", "PGPORT": "\(proxy.port)", "PGUSER": "postgres", "PGPASSWORD": environment.password,
                "PGDATABASE": database, "ADMIN_SOURCE": sourceConnInfo(environment),
            ])
            #expect(output.status == 0, "\(output.stderr)")
            #expect(output.stdout == """
                version: pgclone 3.6.0
                parameter types: ['text', 'text', 'text', 'bool', 'text', 'text']
                result: [('table', 'text')]
                call: OK: cloned test_schema.customers to test_schema.apg_copy (10 rows)
                call: OK: cloned test_schema.customers to test_schema.apg_copy (10 rows, replaced existing table)
                count: 10
                error: 42P01 relation "test_schema.nope" does not exist on source
                in transaction: pgclone 3.6.0
                after: 42

                """)
        }
    }

    @Test func adminCallMustBeAloneInItsQueryString() async throws {
        let environment = try TestEnvironment.require()
        let proxy = try await RunningProxy.start(environment)
        defer { Task { try await proxy.stop() } }
        // psql -c sends both statements in one Query message.
        let output = try await Shell.run(["psql", "-X", "-v", "VERBOSITY=verbose", "-d", environment.throughProxy(proxy.port), "-c", "SELECT 1; SELECT pgclone.version()"])
        #expect(output.status != 0)
        #expect(output.stderr.contains("ERROR:  0A000: a pgclone call must be the only statement in its query string"), "\(output.stderr)")
    }

    @Test func adminCallInAFailedTransactionReportsTheAbortedTransaction() async throws {
        let environment = try TestEnvironment.require()
        let proxy = try await RunningProxy.start(environment)
        defer { Task { try await proxy.stop() } }
        let output = try await Shell.run(["psql", "-X", "-A", "-t", "-d", environment.throughProxy(proxy.port)], input: """
            BEGIN;
            SELECT 1/0;
            SELECT pgclone.version();
            ROLLBACK;
            SELECT pgclone.version();
            """)
        #expect(output.stderr.contains("ERROR:  current transaction is aborted, commands ignored until end of transaction block"), "\(output.stderr)")
        #expect(output.stdout.hasSuffix("pgclone 3.6.0\n"), "\(output.stdout)")
    }

    @Test func membersOfAdminRolesMayCallOthersMayNot() async throws {
        let environment = try TestEnvironment.require()
        let suffix = UInt32.random(in: 0...UInt32.max)
        let group = "pgclone_admins_\(suffix)", member = "admin_member_\(suffix)", outsider = "outsider_\(suffix)"
        let admin = try await PQConnection.connect(environment.directTarget())
        try await admin.exec("CREATE ROLE \(group); CREATE ROLE \(member) LOGIN PASSWORD 'pw' IN ROLE \(group); CREATE ROLE \(outsider) LOGIN PASSWORD 'pw'")
        defer { Task { _ = try? await admin.exec("DROP ROLE \(member); DROP ROLE \(outsider); DROP ROLE \(group)") } }
        let proxy = try await RunningProxy.start(environment) { $0.adminRoles = [group] }
        defer { Task { try await proxy.stop() } }
        let allowed = try await Shell.psql(environment.throughProxy(proxy.port, user: member, password: "pw"), "SELECT pgclone.version();")
        #expect(allowed.stdout == "pgclone 3.6.0\n", "\(allowed.stderr)")
        let refused = try await Shell.psql(environment.throughProxy(proxy.port, user: outsider, password: "pw"), "\\set VERBOSITY verbose\nSELECT pgclone.version();")
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("ERROR:  42501: permission denied for pgclone.version: role \"\(outsider)\" is not a superuser or a member of an admin role"), "\(refused.stderr)")
        // SET ROLE to a non-admin role is judged on the current role.
        let demoted = try await Shell.psql(environment.throughProxy(proxy.port), "\\set VERBOSITY verbose\nSET ROLE \(outsider);\nSELECT pgclone.version();")
        #expect(demoted.stderr.contains("ERROR:  42501: permission denied"), "\(demoted.stderr)")
    }

    /// An admin-role member that is not a superuser cannot use code of its own (a CHECK constraint
    /// mask_in_place sets off, or a clone validates) to RESET ROLE back to the proxy's
    /// service login: its admin sessions log in as a throwaway member of the caller, dropped
    /// before any of its code runs (attack round 20, medium). Without it the function read a
    /// table only the superuser may read.
    @Test func callersCodeCannotResetRoleToTheServiceLogin() async throws {
        let environment = try TestEnvironment.require()
        try await withAdminGroupMember(environment, "esc") { admin, member, proxy in
            let schema = "esc_\(UInt32.random(in: 0...UInt32.max))"
            try await admin.exec("""
                CREATE TABLE public.\(schema)_secret (v text); INSERT INTO public.\(schema)_secret VALUES ('SECRET-0001');
                REVOKE ALL ON public.\(schema)_secret FROM PUBLIC;
                CREATE SCHEMA \(schema) AUTHORIZATION \(member);
                SET ROLE \(member);
                CREATE TABLE \(schema).loot (who text, v text);
                CREATE TABLE \(schema).victim (id int, v text); INSERT INTO \(schema).victim VALUES (1, 'x');
                CREATE FUNCTION \(schema).escape(text) RETURNS boolean LANGUAGE plpgsql AS $f$
                  BEGIN
                    RESET ROLE;
                    INSERT INTO \(schema).loot SELECT current_user, v FROM public.\(schema)_secret;
                    RETURN true;
                  END $f$;
                -- Checked for every row the masking UPDATE writes (not for the row already there).
                ALTER TABLE \(schema).victim ADD CONSTRAINT escape CHECK (\(schema).escape(v)) NOT VALID;
                RESET ROLE;
                """)
            let asMember = environment.throughProxy(proxy.port, user: member, password: "pw")
            let masked = try await Shell.psql(asMember, "\\set VERBOSITY verbose\nSELECT pgclone.mask_in_place('\(schema)', 'victim', '{\"v\": \"null\"}');")
            #expect(masked.status != 0, "the call went through: \(masked.stdout)")
            #expect(masked.stderr.contains("ERROR:  42501: masking \(schema).victim: permission denied for schema \(schema)"), "\(masked.stderr)")
            #expect(try await admin.exec("SELECT count(*) FROM \(schema).loot").string(0, 0) == "0")
            #expect(try await admin.exec("SELECT v FROM \(schema).victim").string(0, 0) == "x", "the failed call left the table as it was")
            // A session of the member's own (no trigger involved) still works, and no throwaway
            // login is left behind.
            let plain = try await Shell.psql(asMember, "SELECT pgclone.mask_in_place('\(schema)', 'loot', '{\"v\": \"null\"}');")
            #expect(plain.stdout == "OK: masked 0 rows in \(schema).loot (1 column)\n", "\(plain.stderr)")
            #expect(try await admin.exec("""
                SELECT count(*) FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles r ON r.oid = m.member
                WHERE m.roleid = '\(member)'::regrole AND r.rolname LIKE 'pgclone\\_call\\_%'
                """).string(0, 0) == "0")
            try await admin.exec("DROP SCHEMA \(schema) CASCADE; DROP TABLE public.\(schema)_secret")
        }
    }

    /// The role check runs under the caller's search_path: an `=` of the caller's own that is
    /// true for "postgres" must not make them a superuser (it did, before every operator in
    /// the check was named with its schema).
    @Test func aUsersOwnOperatorsCannotPassTheRoleCheck() async throws {
        let environment = try TestEnvironment.require()
        let user = "op_maker_\(UInt32.random(in: 0...UInt32.max))"
        let admin = try await PQConnection.connect(environment.directTarget())
        try await admin.exec("CREATE ROLE \(user) LOGIN PASSWORD 'pw'")
        defer { Task { _ = try? await admin.exec("DROP ROLE \(user)") } }
        let proxy = try await RunningProxy.start(environment) { $0.adminRoles = ["pg_monitor"] }
        defer { Task { try await proxy.stop() } }
        try await withDatabase(environment) { database in
            try await PQConnection.connect(environment.directTarget(database: database)).exec("CREATE SCHEMA evil AUTHORIZATION \(user)")
            let conninfo = environment.throughProxy(proxy.port, user: user, password: "pw", database: database)
            let setup = try await Shell.psql(conninfo, """
                CREATE FUNCTION evil.eq(a name, b name) RETURNS bool LANGUAGE sql AS $$ SELECT a OPERATOR(pg_catalog.=) 'postgres'::name $$;
                CREATE OPERATOR evil.= (LEFTARG = name, RIGHTARG = name, FUNCTION = evil.eq);
                CREATE FUNCTION evil.eqt(a name, b text) RETURNS bool LANGUAGE sql AS $$ SELECT true $$;
                CREATE OPERATOR evil.= (LEFTARG = name, RIGHTARG = text, FUNCTION = evil.eqt);
                """)
            #expect(setup.status == 0, "\(setup.stderr)")
            let call = try await Shell.psql(conninfo, "\\set VERBOSITY verbose\nSET search_path = evil, pg_catalog;\nSELECT pgclone.version();")
            #expect(call.status != 0)
            #expect(call.stderr.contains("ERROR:  42501: permission denied for pgclone.version"), "\(call.stdout) \(call.stderr)")
        }
    }

    /// A caller who is not a superuser cannot make the proxy connect with credentials of its
    /// own (the proxy's .pgpass and environment, peer or trust on a local socket): the source
    /// connection must use the password the caller wrote, and the server must ask for it.
    @Test func nonSuperusersCannotBorrowTheProxysCredentials() async throws {
        let environment = try TestEnvironment.require()
        try await withAdminGroupMember(environment, "borrower") { admin, member, proxy in
            try await withDatabase(environment) { database in
                try await admin.exec("GRANT CREATE ON DATABASE \(database) TO \(member)")
                let conninfo = environment.throughProxy(proxy.port, user: member, password: "pw", database: database)
                func call(_ source: String) async throws -> Shell.Output {
                    try await Shell.psql(conninfo, "\\set VERBOSITY verbose\nSELECT pgclone.table('\(source)', 'test_schema', 'customers', true);")
                }
                let noPassword = try await call("host=127.0.0.1 port=\(environment.sourcePort) dbname=db1 user=postgres")
                #expect(noPassword.stderr.contains("ERROR:  2F003: password is required for the source connection"), "\(noPassword.stderr)")
                let passfile = try await call("host=127.0.0.1 port=\(environment.sourcePort) dbname=db1 user=postgres passfile=/root/.pgpass")
                #expect(passfile.stderr.contains("ERROR:  42501: connection option \"passfile\" is not allowed"), "\(passfile.stderr)")
                // The target's own socket trusts local connections: a password that is never asked for does not count.
                let trusted = try await call("host=\(environment.targetSocketDirectory) port=\(environment.targetPort) dbname=postgres user=postgres password=anything")
                #expect(trusted.stderr.contains("ERROR:  2F003: password is required for the source connection"), "\(trusted.stderr)")
                // The caller's own password, asked for by the server: fine.
                let own = try await call(sourceConnInfo(environment))
                #expect(own.stdout == "OK: cloned test_schema.customers (10 rows)\n", "\(own.stderr)")
            }
        }
    }

    @Test func targetObjectsBelongToTheCallerAndNeedItsPrivileges() async throws {
        let environment = try TestEnvironment.require()
        try await withAdminGroupMember(environment, "cloner") { _, cloner, proxy in
            try await withDatabase(environment) { database in
                let direct = try await PQConnection.connect(environment.directTarget(database: database))
                // test_schema exists on the target, owned by postgres, and the caller may not create in it.
                try await direct.exec("CREATE SCHEMA test_schema")
                let conninfo = environment.throughProxy(proxy.port, user: cloner, password: "pw", database: database)
                let call = "SELECT pgclone.table('\(sourceConnInfo(environment))', 'test_schema', 'customers', true);"
                let denied = try await Shell.psql(conninfo, "\\set VERBOSITY verbose\n" + call)
                #expect(denied.status != 0)
                #expect(denied.stderr.contains("ERROR:  42501: cloning test_schema.customers: permission denied for schema test_schema"), "\(denied.stderr)")
                #expect(try await direct.exec("SELECT to_regclass('test_schema.customers') IS NULL").string(0, 0) == "t")

                try await direct.exec("GRANT CREATE, USAGE ON SCHEMA test_schema TO \(cloner)")
                let created = try await Shell.psql(conninfo, call)
                #expect(created.stdout == "OK: cloned test_schema.customers (10 rows)\n", "\(created.stderr)")
                let owner = try await direct.exec("SELECT tableowner FROM pg_tables WHERE schemaname = 'test_schema' AND tablename = 'customers'")
                #expect(owner.string(0, 0) == cloner)
            }
        }
    }

    /// A routine only a superuser may make (a window function in internal) is named when a
    /// caller who is not one clones its schema (round 43 N7: the error named nothing).
    @Test func aRoutineTheCallerMayNotMakeIsNamed() async throws {
        let environment = try TestEnvironment.require()
        let sql = """
            CREATE SCHEMA wf;
            CREATE FUNCTION wf.rn() RETURNS bigint LANGUAGE internal WINDOW IMMUTABLE AS 'window_row_number';
            CREATE TABLE wf.t (id int);
            """
        try await CloneFidelityTests.withSourceDatabase(sql) { _, sourceConnInfo, _ in
            try await withAdminGroupMember(environment, "wfcloner") { admin, cloner, proxy in
                try await withDatabase(environment) { database in
                    try await admin.exec("GRANT CREATE ON DATABASE \(database) TO \(cloner)")
                    let conninfo = environment.throughProxy(proxy.port, user: cloner, password: "pw", database: database)
                    // Preflight says so first (round 44f M3).
                    let checked = try await Shell.psql(conninfo, "SELECT status, detail FROM pgclone.preflight('\(sourceConnInfo)', 'wf') WHERE \"check\" = 'superuser objects';")
                    #expect(checked.stdout.hasPrefix("fail|routines in C or internal, which only a superuser may create: wf.rn()"), "\(checked.stdout) \(checked.stderr)")
                    let denied = try await Shell.psql(conninfo, "\\set VERBOSITY verbose\nSELECT pgclone.schema('\(sourceConnInfo)', 'wf');")
                    #expect(denied.status != 0)
                    #expect(denied.stderr.contains("ERROR:  42501: cannot create function wf.rn on target: permission denied for language internal"), "\(denied.stderr)")
                    #expect(denied.stderr.contains("HINT:  Routines in C or internal need a superuser"), "\(denied.stderr)")
                }
            }
        }
    }

    @Test func schemaCloneBringsAggregatesAndComments() async throws {
        let environment = try TestEnvironment.require()
        let proxy = try await RunningProxy.start(environment)
        defer { Task { try await proxy.stop() } }
        try await withDatabase(environment) { database in
            let conninfo = environment.throughProxy(proxy.port, database: database)
            let output = try await Shell.psql(conninfo, """
                SELECT pgclone.schema('\(sourceConnInfo(environment))', 'hard_cases', true) LIKE 'OK: cloned schema hard_cases (%';
                SELECT hard_cases.concat_all(x ORDER BY x) FROM (VALUES ('b'), ('a'), ('c')) AS v(x);
                SELECT count(*) FROM pg_catalog.pg_aggregate a JOIN pg_catalog.pg_proc p ON p.oid = a.aggfnoid
                  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'hard_cases';
                """)
            #expect(output.stdout == "t\na,b,c\n1\n", "\(output.stderr)")
        }
    }

    @Test func inheritanceChildrenKeepTheirOwnRows() async throws {
        let environment = try TestEnvironment.require()
        try await withSourceDatabase(environment, "inhsrc", setup: """
            CREATE SCHEMA inh;
            CREATE TABLE inh.parent (id int NOT NULL, v text DEFAULT 'pv', CONSTRAINT v_len CHECK (length(v) < 10));
            CREATE TABLE inh.child (extra int) INHERITS (inh.parent);
            ALTER TABLE inh.child ALTER COLUMN v SET DEFAULT 'cv';
            INSERT INTO inh.parent VALUES (1, 'p1'), (2, 'p2');
            INSERT INTO inh.child VALUES (3, 'c3', 30);
            """) { _, sourceInfo, proxy in
            try await withDatabase(environment) { database in
                let output = try await Shell.psql(environment.throughProxy(proxy.port, database: database), """
                    SELECT pgclone.schema('\(sourceInfo)', 'inh', true) LIKE 'OK: cloned schema inh (2 tables, 3 rows,%';
                    SELECT string_agg(v, ',' ORDER BY id) FROM ONLY inh.parent;
                    SELECT string_agg(v || ':' || extra, ',' ORDER BY id) FROM inh.child;
                    SELECT count(*) FROM inh.parent;
                    SELECT string_agg(inhparent::regclass::text, ',') FROM pg_inherits WHERE inhrelid = 'inh.child'::regclass;
                    SELECT string_agg(attname || ':' || attislocal, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'inh.child'::regclass AND attnum > 0;
                    SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'inh.child'::regclass;
                    SELECT string_agg(conname || ':' || conislocal || ':' || coninhcount, ',') FROM pg_constraint WHERE conrelid = 'inh.child'::regclass;
                    INSERT INTO inh.child (id, extra) VALUES (4, 40) RETURNING v;
                    """)
                // The child inherits again (parent reads include its rows), with only its own column
                // defined locally, its own default, and the parent's CHECK constraint inherited.
                #expect(output.stdout == "t\np1,p2\nc3:30\n3\ninh.parent\nid:false,v:false,extra:true\n'cv'::text\nv_len:false:1\ncv\n", "\(output.stderr)")
                // Cloned alone, the child cannot inherit: it gets the columns and the CHECK as its own, and says so.
                let alone = try await Shell.psql(environment.throughProxy(proxy.port, database: database), """
                    SELECT pgclone.table('\(sourceInfo)', 'inh', 'child', true, 'child_alone');
                    SELECT count(*) FROM pg_inherits WHERE inhrelid = 'inh.child_alone'::regclass;
                    SELECT string_agg(conname || ':' || conislocal, ',') FROM pg_constraint WHERE conrelid = 'inh.child_alone'::regclass;
                    SELECT string_agg(v || ':' || extra, ',' ORDER BY id) FROM inh.child_alone;
                    """)
                #expect(alone.stdout == "OK: cloned inh.child to inh.child_alone (1 row)\n0\nv_len_child_alone:true\nc3:30\n", "\(alone.stderr)")
                #expect(alone.stderr.contains("inh.child inherits from inh.parent, which is not cloned with it"), "\(alone.stderr)")
            }
        }
    }

    /// Extensions come over as CREATE EXTENSION (as pg_dump does), never object by object:
    /// their views, functions and types are the extension's own. Large objects come over with
    /// their OIDs (tables refer to them), data, comments and grants.
    @Test func databaseCloneCarriesExtensionsAndLargeObjects() async throws {
        let environment = try TestEnvironment.require()
        try await withSourceDatabase(environment, "extsrc", setup: """
            CREATE EXTENSION citext;
            CREATE EXTENSION pg_stat_statements;
            CREATE SCHEMA app;
            CREATE TABLE app.users (id int PRIMARY KEY, email public.citext UNIQUE);
            INSERT INTO app.users VALUES (1, 'Alice@Example.com'), (2, 'bob@example.com');
            CREATE TABLE app.documents (id int, body oid);
            INSERT INTO app.documents VALUES (1, lo_from_bytea(0, 'hello')),
              (2, lo_from_bytea(0, (SELECT string_agg(sha256(int4send(i)), '') FROM generate_series(1, 80000) i)));
            """) { _, sourceInfo, proxy in
            let source = try await PQConnection.connect(sourceInfo)
            try await source.exec("DO $$ BEGIN EXECUTE format('COMMENT ON LARGE OBJECT %s IS %L', (SELECT body FROM app.documents WHERE id = 1), 'greeting'); END $$")
            let expected = try await source.exec("SELECT string_agg(id || ':' || md5(lo_get(body)) || ':' || body::text, ',' ORDER BY id) FROM app.documents").string(0, 0) ?? ""
            try await withDatabase(environment) { database in
                let output = try await Shell.psql(environment.throughProxy(proxy.port, database: database), """
                    SELECT pgclone.database('\(sourceInfo)', true) LIKE 'OK: %';
                    SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension;
                    SELECT id FROM app.users WHERE email = 'ALICE@example.COM';
                    SELECT count(*) FROM pg_views WHERE viewname LIKE 'pg_stat_statements%' AND schemaname = 'public';
                    SELECT string_agg(id || ':' || md5(lo_get(body)) || ':' || body::text, ',' ORDER BY id) FROM app.documents;
                    SELECT obj_description(body, 'pg_largeobject') FROM app.documents WHERE id = 1;
                    """)
                #expect(output.stdout == "t\ncitext,pg_stat_statements,plpgsql\n1\n2\n\(expected)\ngreeting\n", "\(output.stderr)")
                #expect(output.stderr.contains("extension citext created in schema public"), "\(output.stderr)")
            }
        }
    }

    /// A source role that row-level security would filter gets an error, not a partial copy.
    @Test func rowSecurityOnTheSourceIsAnErrorNotAPartialClone() async throws {
        let environment = try TestEnvironment.require()
        let role = "rls_reader_\(UInt32.random(in: 0...UInt32.max))"
        let sourceAdmin = try await PQConnection.connect("host=127.0.0.1 port=\(environment.sourcePort) dbname=postgres user=postgres password=\(environment.password)")
        try await sourceAdmin.exec("CREATE ROLE \(role) LOGIN PASSWORD 'pw'")
        defer { Task { try await sourceAdmin.exec("DROP ROLE \(role)") } }
        try await withSourceDatabase(environment, "rlssrc", setup: """
            CREATE TABLE public.notes (id int, owner text);
            INSERT INTO public.notes VALUES (1, '\(role)'), (2, 'someone else');
            ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
            CREATE POLICY mine ON public.notes USING (owner = current_user);
            GRANT SELECT ON public.notes TO \(role);
            """) { sourceDatabase, _, proxy in
            try await withDatabase(environment) { database in
                let output = try await Shell.run(["psql", "-X", "-A", "-t", "-v", "VERBOSITY=verbose", "-d", environment.throughProxy(proxy.port, database: database), "-c",
                                                  "SELECT pgclone.table('host=127.0.0.1 port=\(environment.sourcePort) dbname=\(sourceDatabase) user=\(role) password=pw', 'public', 'notes', true)"])
                #expect(output.status != 0)
                #expect(output.stderr.contains("ERROR:  42501: ") && output.stderr.contains("row-level security"), "\(output.stderr)")
                let left = try await Shell.psql(environment.throughProxy(proxy.port, database: database), "SELECT to_regclass('public.notes') IS NULL;")
                #expect(left.stdout == "t\n", "nothing was created: \(left.stderr)")
            }
        }
    }

    /// Privileges come over as on the source (pg_dump keeps ACLs): grants to roles that exist on
    /// the target, a revoked PUBLIC EXECUTE stays revoked, and a missing grantee is reported.
    @Test func schemaCloneKeepsThePrivileges() async throws {
        let environment = try TestEnvironment.require()
        let suffix = UInt32.random(in: 0...UInt32.max)
        let reader = "acl_reader_\(suffix)", sourceOnly = "acl_source_only_\(suffix)"
        let sourceAdmin = try await PQConnection.connect("host=127.0.0.1 port=\(environment.sourcePort) dbname=postgres user=postgres password=\(environment.password)")
        let targetAdmin = try await PQConnection.connect(environment.directTarget())
        try await sourceAdmin.exec("CREATE ROLE \(reader); CREATE ROLE \(sourceOnly)")
        try await targetAdmin.exec("CREATE ROLE \(reader)")
        defer {
            Task {
                try await sourceAdmin.exec("DROP ROLE \(reader); DROP ROLE \(sourceOnly)")
                try await targetAdmin.exec("DROP ROLE \(reader)")
            }
        }
        try await withSourceDatabase(environment, "aclsrc", setup: """
            CREATE SCHEMA g;
            CREATE TABLE g.t (id int);
            CREATE VIEW g.v AS SELECT id FROM g.t;
            CREATE SEQUENCE g.s;
            CREATE FUNCTION g.f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
            GRANT USAGE ON SCHEMA g TO \(reader);
            GRANT SELECT, INSERT ON g.t TO \(reader) WITH GRANT OPTION;
            GRANT SELECT ON g.t TO \(sourceOnly);
            GRANT SELECT ON g.v TO \(reader);
            GRANT USAGE ON SEQUENCE g.s TO \(reader);
            REVOKE EXECUTE ON FUNCTION g.f() FROM PUBLIC;
            GRANT EXECUTE ON FUNCTION g.f() TO \(reader);
            """) { _, sourceInfo, proxy in
            try await withDatabase(environment) { database in
                let output = try await Shell.psql(environment.throughProxy(proxy.port, database: database), """
                    SELECT pgclone.schema('\(sourceInfo)', 'g', true) LIKE 'OK: %';
                    SELECT has_schema_privilege('\(reader)', 'g', 'USAGE'), has_schema_privilege('\(reader)', 'g', 'CREATE');
                    SELECT has_table_privilege('\(reader)', 'g.t', 'INSERT WITH GRANT OPTION'), has_table_privilege('\(reader)', 'g.t', 'DELETE');
                    SELECT has_table_privilege('\(reader)', 'g.v', 'SELECT'), has_sequence_privilege('\(reader)', 'g.s', 'USAGE');
                    SELECT has_function_privilege('\(reader)', 'g.f()', 'EXECUTE'), proacl::text ~ '(^[{]|,)=X/' FROM pg_proc WHERE proname = 'f';
                    """)
                #expect(output.stdout == "t\nt|f\nt|f\nt|t\nt|f\n", "\(output.stderr)")
                #expect(output.stderr.contains("not granted") && output.stderr.contains(sourceOnly), "\(output.stderr)")
            }
        }
    }

    @Test func sourceKilledMidCopyLeavesTheTargetAsItWas() async throws {
        let environment = try TestEnvironment.require()
        let table = "big"
        try await withSourceDatabase(environment, "killsrc", setup: "CREATE TABLE public.\(table) AS SELECT g AS id, md5(g::text) AS pad FROM generate_series(1, 3000000) g") { sourceDatabase, sourceInfo, proxy in
            try await withDatabase(environment) { database in
                let target = environment.throughProxy(proxy.port, database: database)
                // An existing table that conflict=replace would drop: it must survive the failed clone.
                let setup = try await Shell.psql(target, "CREATE TABLE public.\(table) (id int, pad text); INSERT INTO public.\(table) VALUES (1, 'original');")
                #expect(setup.status == 0, "\(setup.stderr)")
                let clone = Task {
                    try await Shell.psql(target, "SELECT pgclone.table('\(sourceInfo)', 'public', '\(table)', true, NULL, '{\"conflict\": \"replace\"}');")
                }
                let killer = try await PQConnection.connect(sourceInfo)
                // (Up to a minute: with the machine loaded, the clone's catalog reads before the
                // COPY took longer than the default 15 s twice in CI.)
                try await waitFor("the source COPY to start", seconds: 60) {
                    try await killer.query("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'COPY %TO STDOUT%'",
                                           [sourceDatabase]).string(0, 0) == "1"
                }
                let output = try await clone.value
                #expect(output.status != 0)
                #expect(output.stderr.contains("ERROR:  cloning public.\(table):"), "\(output.stderr)")
                let after = try await Shell.psql(target, "SELECT count(*), min(pad) FROM public.\(table);")
                #expect(after.stdout == "1|original\n", "\(after.stderr)")
            }
        }
    }
}
