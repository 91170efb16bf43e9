import Foundation
import Masking
import NIOCore
import PostgresWire
import PQ
import Proxy
import Testing

/// A masked role through the proxy sees only masked values, whatever the query shape;
/// exempt roles and superusers see real values. Sensitive columns hold canary strings,
/// and no byte sent to a masked session may contain one.
@Suite struct MaskingProxyTests {
    static let canaries = ["CANARY-EMAIL-9d1f", "CANARY-NAME-4b7e", "CANARY-SSN-77aa", "CANARY-PHONE-31c5"]

    /// A fresh target database with test_schema.employees full of canaries, roles, a policy and a proxy.
    private func withMaskedSetup(backstop: Bool = false, configure: @escaping @Sendable (inout ProxyConfiguration) -> Void = { _ in },
                                 _ body: (_ environment: TestEnvironment, _ proxy: RunningProxy, _ database: String, _ roles: (masked: String, exempt: String)) async throws -> Void) async throws {
        let environment = try TestEnvironment.require()
        let suffix = UInt32.random(in: 0...UInt32.max)
        let database = "mask_\(suffix)"
        let masked = "masked_\(suffix)", exempt = "exempt_\(suffix)"
        let admin = try await PQConnection.connect(environment.directTarget())
        try await admin.exec("CREATE DATABASE \(database)")
        try await admin.exec("CREATE ROLE \(masked) LOGIN PASSWORD 'pw'; CREATE ROLE \(exempt) LOGIN PASSWORD 'pw'")
        let direct = try await PQConnection.connect(environment.directTarget(database: database))
        try await direct.exec("""
            CREATE SCHEMA test_schema;
            CREATE TABLE test_schema.employees (id int PRIMARY KEY, full_name varchar(100), email varchar(255), phone text, ssn text, salary int, notes text);
            INSERT INTO test_schema.employees
              SELECT g, 'CANARY-NAME-4b7e ' || g, 'CANARY-EMAIL-9d1f' || g || '@example.com', '+1-555-CANARY-PHONE-31c5-' || g, '1CANARY-SSN-77aa' || g, 50000 + g, 'note ' || g
              FROM generate_series(1, 20) g;
            CREATE VIEW test_schema.emp_view AS SELECT id, email FROM test_schema.employees;
            CREATE FUNCTION test_schema.emails() RETURNS SETOF text LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY SELECT email::text FROM test_schema.employees; END $$;
            CREATE FUNCTION test_schema.first_email() RETURNS text LANGUAGE sql BEGIN ATOMIC SELECT email FROM test_schema.employees ORDER BY id LIMIT 1; END;
            ANALYZE test_schema.employees;
            CREATE TABLE test_schema.employees_archive () INHERITS (test_schema.employees);
            INSERT INTO test_schema.employees_archive SELECT id + 100, full_name, email, phone, ssn, salary, notes FROM test_schema.employees;
            CREATE COLLATION test_schema.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
            CREATE TABLE test_schema.contacts (id int, email text COLLATE test_schema.ci) PARTITION BY RANGE (id);
            CREATE TABLE test_schema.contacts_low PARTITION OF test_schema.contacts FOR VALUES FROM (0) TO (100);
            INSERT INTO test_schema.contacts SELECT id, email FROM ONLY test_schema.employees;
            CREATE TABLE public.other (id int, v text);
            INSERT INTO public.other VALUES (1, 'plain');
            GRANT USAGE ON SCHEMA test_schema TO \(masked), \(exempt);
            GRANT SELECT ON ALL TABLES IN SCHEMA test_schema TO \(masked), \(exempt);
            GRANT ALL ON public.other TO \(masked), \(exempt);
            """)
        let policies = URL(fileURLWithPath: environment.directory).appendingPathComponent("policies-\(suffix)")
        try FileManager.default.createDirectory(at: policies, withIntermediateDirectories: true)
        try """
            policies:
              - table: test_schema.employees
                unmasked_roles: [\(exempt)]
                columns:
                  email: email
                  full_name: name
                  phone: phone
                  ssn: "null"
                  salary: { type: random_int, min: 1, max: 10 }
              - table: test_schema.contacts
                unmasked_roles: [\(exempt)]
                columns:
                  email: email
            """.write(to: policies.appendingPathComponent("employees.yaml"), atomically: true, encoding: .utf8)
        let proxy = try await RunningProxy.start(environment, backstopDatabases: backstop ? [database] : []) {
            $0.policiesDirectory = policies.path
            configure(&$0)
        }
        do {
            try await body(environment, proxy, database, (masked, exempt))
        } catch {
            try? await proxy.stop()
            _ = try? await admin.exec("DROP DATABASE \(database) WITH (FORCE); DROP ROLE \(masked); DROP ROLE \(exempt)")
            throw error
        }
        try await proxy.stop()
        try await admin.exec("DROP DATABASE \(database) WITH (FORCE)")
        try await admin.exec("DROP ROLE \(masked); DROP ROLE \(exempt)")
    }

    private func assertNoCanary(_ text: String, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        for canary in Self.canaries {
            #expect(!text.contains(canary), "\(what) leaked \(canary)", sourceLocation: sourceLocation)
        }
    }

    static let maskedQueries: [String] = [
        "SELECT * FROM test_schema.employees ORDER BY id",
        "SELECT e.email AS \"E-Mail\", e.\"full_name\" FROM test_schema.employees AS e",
        "SELECT email || '' FROM test_schema.employees",
        "SELECT upper(email), lower(full_name), ssn::text, phone::varchar FROM test_schema.employees",
        "SELECT row_to_json(e) FROM test_schema.employees e",
        "SELECT e FROM test_schema.employees e",
        "SELECT id FROM test_schema.employees WHERE ssn LIKE '1%'",
        "SELECT id, salary FROM test_schema.employees ORDER BY salary DESC",
        "WITH x AS (SELECT * FROM test_schema.employees) SELECT email FROM x",
        "WITH employees AS (SELECT * FROM test_schema.employees) SELECT * FROM employees",
        "SELECT email FROM test_schema.employees UNION ALL SELECT v FROM public.other",
        "SELECT (SELECT max(email) FROM test_schema.employees) AS m",
        "SELECT o.v, e.email FROM public.other o JOIN LATERAL (SELECT email FROM test_schema.employees WHERE id = o.id) e ON true",
        "TABLE test_schema.employees",
        "SELECT * FROM ONLY test_schema.employees",
        "SELECT string_agg(full_name, ',') FROM test_schema.employees",
        "COPY test_schema.employees TO STDOUT",
        "COPY test_schema.contacts TO STDOUT",
        "COPY (SELECT email, ssn FROM test_schema.employees) TO STDOUT WITH (FORMAT csv)",
        "BEGIN; DECLARE c CURSOR FOR SELECT * FROM test_schema.employees; FETCH 5 FROM c; FETCH ALL FROM c; COMMIT",
        "PREPARE p AS SELECT email FROM test_schema.employees WHERE id = $1; EXECUTE p(3); EXECUTE p(4)",
        "SET search_path = test_schema, public; SELECT email, ssn FROM employees",
        "SELECT * FROM test_schema.emp_view",
        "SELECT * FROM test_schema.emails()",
        "SELECT test_schema.first_email()",
        "SELECT email, ssn FROM test_schema.employees_archive",
        "SELECT email FROM test_schema.contacts_low",
        "SELECT * FROM test_schema.contacts",
        "SELECT most_common_vals::text, histogram_bounds::text FROM pg_stats WHERE tablename = 'employees'",
        "SELECT s.histogram_bounds::text FROM pg_catalog.pg_stats s",
        "DO $$ BEGIN RAISE NOTICE '%', (SELECT email FROM test_schema.employees LIMIT 1); END $$",
        "SELECT query_to_xml('select * from test_schema.employees', true, false, '')",
        "SET ROLE postgres; SELECT email FROM test_schema.employees",
        "SELECT set_config('role', 'postgres', false); SELECT email FROM test_schema.employees",
        "SELECT email::int FROM test_schema.employees",
        "EXPLAIN ANALYZE SELECT * FROM test_schema.employees",
        "UPDATE test_schema.employees SET notes = notes WHERE email LIKE 'CANARY%' RETURNING email",
    ]

    /// Without the server backstop (the rewrite alone) and with it (reads go to pgclone's mask views).
    @Test(arguments: [false, true])
    func maskedRoleNeverSeesACanaryThroughPsql(backstop: Bool) async throws {
        try await withMaskedSetup(backstop: backstop) { environment, proxy, database, roles in
            let conninfo = environment.throughProxy(proxy.port, user: roles.masked, password: "pw", database: database)
            var successes = 0
            for query in Self.maskedQueries {
                let output = try await Shell.run(["psql", "-X", "-d", conninfo, "-c", query])
                assertNoCanary(output.stdout + output.stderr, query)
                if output.status == 0 { successes += 1 }
            }
            // Most shapes run (masked); the rest are refused with a reason, never answered with real values.
            #expect(successes >= 20, "only \(successes) of \(Self.maskedQueries.count) ran")
            let sample = try await Shell.psql(conninfo, "SELECT full_name, email, phone, ssn IS NULL, salary BETWEEN 1 AND 10 FROM test_schema.employees WHERE id = 7;")
            // The phone mask keeps the last four characters ('+1-555-CANARY-PHONE-31c5-7').
            #expect(sample.stdout == "XXXX|C***@example.com|***-c5-7|t|t\n", "\(sample.stderr)")
            // A nondeterministic collation (no substring search allowed on it) is masked too, and
            // the masked values compare under it: case-insensitively.
            // COPY of a table reads its own rows (not its inheritance children's), as the server does.
            let copied = try await Shell.psql(conninfo, "COPY test_schema.employees TO STDOUT;")
            #expect(copied.stdout.split(separator: "\n").count == 20, "\(copied.stderr)")
            let collated = try await Shell.psql(conninfo, "SELECT email, email = 'c***@EXAMPLE.com' FROM test_schema.contacts WHERE id = 1;")
            #expect(collated.stdout == "C***@example.com|t\n", "\(collated.stderr)")
            let filtered = try await Shell.psql(conninfo, "SELECT count(*) FROM test_schema.employees WHERE email LIKE 'CANARY%';")
            #expect(filtered.stdout == "0\n", "WHERE sees masked values only: \(filtered.stderr)")
            // DO runs code pgclone cannot read: where the server backs the policy up, the server
            // decides (and refuses the sensitive column); with the rewrite alone it is refused.
            let block = "DO $$ BEGIN RAISE NOTICE '%', (SELECT string_agg(email, ',') FROM test_schema.employees); END $$"
            let refused = try await Shell.run(["psql", "-X", "-v", "VERBOSITY=verbose", "-d", conninfo, "-c", block])
            assertNoCanary(refused.stdout + refused.stderr, block)
            #expect(refused.stderr.contains(backstop
                ? "ERROR:  42501: permission denied for table employees"
                : "ERROR:  42501: pgclone: DO is not allowed for role \"\(roles.masked)\", which is masked by a policy that the server does not back up here"), "\(refused.stderr)")
        }
    }

    /// Where the server backs every masked table up, a masked role's ordinary work runs as it
    /// would directly: definitions, DO, encodings and string settings pgclone does not read,
    /// prepared statements across a search_path change, the server's own syntax errors. What
    /// pgclone passes on unread meets the server's "permission denied", never a real value.
    @Test func whereTheServerBacksTheMaskingAMaskedRolesOrdinaryWorkRuns() async throws {
        try await withMaskedSetup(backstop: true) { environment, proxy, database, roles in
            let admin = try await PQConnection.connect(environment.directTarget(database: database))
            try await admin.exec("GRANT CREATE ON SCHEMA public TO \(roles.masked)")
            let conninfo = environment.throughProxy(proxy.port, user: roles.masked, password: "pw", database: database)
            let work = [
                "DROP TABLE IF EXISTS public.scratch",
                "CREATE TABLE public.scratch (id int PRIMARY KEY, note text DEFAULT 'n')",
                "CREATE TYPE public.mood AS ENUM ('sad', 'ok')",
                "CREATE INDEX ON public.scratch (lower(note))",
                "DO $$ BEGIN INSERT INTO public.scratch VALUES (1); END $$",
                "TRUNCATE public.scratch",
                "SET client_encoding = 'LATIN9'",
                "SELECT 'latin9:' || length('\u{E9}t\u{E9}')",
                "RESET client_encoding",
                "SET standard_conforming_strings = off",
                "SELECT 'scs:' || 'a\\\\b'",
                "RESET standard_conforming_strings",
                "DROP TYPE public.mood",
                "DROP TABLE public.scratch",
            ]
            let ran = try await Shell.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo] + work.flatMap { ["-c", $0] })
            #expect(ran.status == 0, "\(ran.stdout)\(ran.stderr)")
            #expect(ran.stdout.contains("latin9:5\n") && ran.stdout.contains("scs:a\\b\n"), "\(ran.stdout)")
            // Read unread, sensitive columns meet the server's refusal.
            for attack in [
                ["DO $$ BEGIN RAISE NOTICE '%', (SELECT string_agg(ssn, ',') FROM test_schema.employees); END $$"],
                ["SET client_encoding = 'LATIN9'", "SELECT ssn, '\u{E9}' FROM test_schema.employees"],
                ["SET standard_conforming_strings = off", "SELECT 'a\\' , ' , upper(ssn) FROM test_schema.employees --'"],
            ] {
                let output = try await Shell.run(["psql", "-X", "-v", "VERBOSITY=verbose", "-d", conninfo] + attack.flatMap { ["-c", $0] })
                assertNoCanary(output.stdout + output.stderr, "\(attack)")
                #expect(output.stderr.contains("ERROR:  42501: permission denied"), "\(attack): \(output.stderr)")
            }
            // A syntax error is the server's, with its position.
            let syntax = try await Shell.run(["psql", "-X", "-v", "VERBOSITY=verbose", "-d", conninfo, "-c", "SELEC ssn FROM test_schema.employees"])
            #expect(syntax.stderr.contains("ERROR:  42601: syntax error at or near \"SELEC\"") && syntax.stderr.contains("LINE 1: SELEC"), "\(syntax.stderr)")
            // A statement prepared before a search_path change still runs (psycopg pipeline).
            let script = """
                import psycopg
                with psycopg.connect(autocommit=True) as c:
                    with c.pipeline():
                        c.execute("SET search_path = test_schema, public")
                        cur = c.execute("SELECT email FROM employees WHERE id = %s", [1], prepare=True)
                        c.execute("SET search_path = public, test_schema")
                        again = c.execute("SELECT email FROM employees WHERE id = %s", [1], prepare=True)
                    print(cur.fetchone()[0], again.fetchone()[0])
                """
            let pipeline = try await Shell.run(["python3", "-c", script], environment: [
                "PGHOST": "127.0.0.1", "PGPORT": "\(proxy.port)", "PGUSER": roles.masked, "PGPASSWORD": "pw", "PGDATABASE": database, "PGSSLMODE": "disable",
            ])
            #expect(pipeline.stdout == "C***@example.com C***@example.com\n", "\(pipeline.stdout)\(pipeline.stderr)")
        }
    }

    /// System columns of a masked table (ctid, xmin: optimistic locking reads them) come from
    /// the relations that carry them; `*` still means the table's columns only.
    @Test(arguments: [false, true])
    func systemColumnsOfAMaskedTableAreReadable(backstop: Bool) async throws {
        try await withMaskedSetup(backstop: backstop) { environment, proxy, database, roles in
            let conninfo = environment.throughProxy(proxy.port, user: roles.masked, password: "pw", database: database)
            let system = try await Shell.psql(conninfo, """
                SELECT xmin::text::bigint > 0, ctid IS NOT NULL, e.tableoid::regclass, e.cmin IS NOT NULL, email
                FROM test_schema.employees e WHERE id = 1;
                """)
            #expect(system.stdout == "t|t|test_schema.employees|t|C***@example.com\n", "\(system.stderr)")
            let star = try await Shell.psql(conninfo, "SELECT * FROM test_schema.employees WHERE id = 1;")
            #expect(star.stdout.components(separatedBy: "|").count == 7, "\(star.stdout)\(star.stderr)")
            let only = try await Shell.psql(conninfo, "SELECT count(*) FROM ONLY test_schema.employees WHERE ctid IS NOT NULL;")
            #expect(only.stdout == "20\n", "\(only.stderr)")
        }
    }

    @Test func viewsCreatedDuringASessionAreNoWayAround() async throws {
        try await withMaskedSetup { environment, proxy, database, roles in
            let session = try await PQConnection.connect(environment.throughProxy(proxy.port, user: roles.masked, password: "pw", database: database))
            #expect(try await session.exec("SELECT email FROM test_schema.employees WHERE id = 1").string(0, 0) == "C***@example.com")
            let direct = try await PQConnection.connect(environment.directTarget(database: database))
            try await direct.exec("CREATE VIEW public.late_view AS SELECT id, email FROM test_schema.employees; GRANT SELECT ON public.late_view TO \(roles.masked)")
            // COPY output has no column origins: it is judged on a fresh context, so the new view is known at once.
            try await direct.exec("CREATE VIEW public.late_copy_view AS SELECT email FROM test_schema.employees; GRANT SELECT ON public.late_copy_view TO \(roles.masked)")
            let copied = CollectedBytes()
            do {
                try await session.copyOut("COPY (SELECT * FROM public.late_copy_view) TO STDOUT") { copied.append($0) }
                Issue.record("COPY from a view over masked columns answered: \(copied.text)")
            } catch let error as PQError {
                #expect(error.sqlState == "42501", "\(error.message)")
            }
            #expect(!copied.text.contains("CANARY"))
            // Right away the guard on result columns refuses it; once the context is re-read, the view itself is refused.
            for delay in [0, 2500] {
                try await Task.sleep(for: .milliseconds(delay))
                do {
                    let result = try await session.exec("SELECT email FROM public.late_view WHERE id = 1")
                    Issue.record("a view over masked columns answered: \(result.strings)")
                } catch let error as PQError {
                    #expect(error.sqlState == "42501", "\(error.message)")
                    #expect(!error.message.contains("CANARY"))
                }
            }
        }
    }

    /// Functions (and operators) created by another session moments ago: a function result
    /// carries no column origin for the guard to check. With the server backstop they run as
    /// the masked role, whom the server refuses the sensitive columns (and views over them);
    /// with the rewrite alone, only built-in functions may run.
    @Test(arguments: [false, true])
    func functionsCreatedDuringASessionAreNoWayAround(backstop: Bool) async throws {
        try await withMaskedSetup(backstop: backstop) { environment, proxy, database, roles in
            let session = try await PQConnection.connect(environment.throughProxy(proxy.port, user: roles.masked, password: "pw", database: database))
            #expect(try await session.exec("SELECT email FROM test_schema.employees WHERE id = 1").string(0, 0) == "C***@example.com")
            let direct = try await PQConnection.connect(environment.directTarget(database: database))
            try await direct.exec("""
                CREATE FUNCTION public.late_emails() RETURNS SETOF text LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY SELECT email::text FROM test_schema.employees; END $$;
                CREATE FUNCTION public.late_wrapper() RETURNS SETOF text LANGUAGE sql AS $$ SELECT * FROM public.late_emails() $$;
                CREATE FUNCTION public.late_via_view() RETURNS SETOF text LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY SELECT email::text FROM test_schema.emp_view; END $$;
                CREATE FUNCTION public.late_op(int, int) RETURNS text LANGUAGE plpgsql AS $$ BEGIN RETURN (SELECT email FROM test_schema.employees WHERE id = $1); END $$;
                CREATE OPERATOR public.### (LEFTARG = int, RIGHTARG = int, FUNCTION = public.late_op);
                CREATE FUNCTION public.late_harmless() RETURNS int LANGUAGE sql AS $$ SELECT 42 $$;
                GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO \(roles.masked);
                """)
            for query in ["SELECT * FROM public.late_emails()", "SELECT public.late_wrapper()", "SELECT late_via_view()", "SELECT 1 OPERATOR(public.###) 2"] {
                do {
                    let result = try await session.exec(query)
                    Issue.record("\(query) answered: \(result.strings)")
                } catch let error as PQError {
                    #expect(error.sqlState == "42501", "\(query): \(error.message)")
                    #expect(!error.message.contains("CANARY"))
                }
            }
            // With the backstop, a new function that reads nothing masked runs, and a name that does
            // not exist is the server's to report; with the rewrite alone, neither is called.
            if backstop {
                #expect(try await session.exec("SELECT public.late_harmless()").string(0, 0) == "42")
            }
            do {
                _ = try await session.exec(backstop ? "SELECT public.no_such_function()" : "SELECT public.late_harmless()")
                Issue.record("answered")
            } catch let error as PQError {
                #expect(error.sqlState == (backstop ? "42883" : "42501"), "\(error.message)")
            }
            // The extended protocol too (psycopg-style unnamed statements are Parse messages).
            do {
                let result = try await session.query("SELECT public.late_wrapper() WHERE $1::int = 1", ["1"])
                Issue.record("extended protocol answered: \(result.strings)")
            } catch let error as PQError {
                #expect(error.sqlState == "42501", "\(error.message)")
            }
        }
    }

    /// The context is read in-band every few seconds per session: its plan must stay cheap in
    /// the planner's eyes too, or the server JIT-compiles it (a read then took 0.9 s instead of ms).
    @Test func maskingContextReadStaysBelowTheJITThreshold() async throws {
        try await withMaskedSetup { environment, proxy, database, roles in
            let policies = PolicySet(policies: [
                TablePolicy(schema: "test_schema", table: "employees", unmaskedRoles: [roles.exempt],
                            columns: [.init(name: "email", strategy: .email), .init(name: "ssn", strategy: .null)], source: "test"),
                TablePolicy(schema: "test_schema", table: "contacts", unmaskedRoles: [roles.exempt],
                            columns: [.init(name: "email", strategy: .email)], source: "test"),
            ], version: 1)
            let direct = try await PQConnection.connect(environment.directTarget(database: database))
            try await direct.exec("SET ROLE \(roles.masked)")
            let plan = try await direct.exec("EXPLAIN (FORMAT JSON) " + MaskingContext.query(for: policies, includeBuiltins: true)).string(0, 0) ?? ""
            let cost = plan.firstMatch(of: /"Total Cost": ([0-9.]+)/).flatMap { Double($0.1) }
            let estimate = try #require(cost, "\(plan.prefix(300))")
            #expect(estimate < 100_000, "estimated cost \(estimate) reaches jit_above_cost (100000)")
            let rows = try await direct.exec(MaskingContext.query(for: policies, includeBuiltins: true))
            let kinds = (0..<rows.rows.count).map { rows.string($0, 0) ?? "" }
            #expect(kinds.contains("table"))
            #expect(kinds.filter { $0 == "builtin" }.count > 1000)
        }
    }

    @Test func statementsPreparedBeforeBecomingMaskedAreNotRun() async throws {
        try await withMaskedSetup { environment, proxy, database, roles in
            // A superuser prepares (protocol level), then becomes the masked role and only binds and executes.
            let session = try await PQConnection.connect(environment.throughProxy(proxy.port, database: database))
            try await session.prepare(name: "early", "SELECT email FROM test_schema.employees WHERE id = $1")
            #expect(try await session.executePrepared(name: "early", ["1"]).string(0, 0) == "CANARY-EMAIL-9d1f1@example.com")
            try await session.exec("SET ROLE \(roles.masked)")
            #expect(try await session.exec("SELECT email FROM test_schema.employees WHERE id = 1").string(0, 0) == "C***@example.com")
            do {
                let result = try await session.executePrepared(name: "early", ["1"])
                Issue.record("a statement prepared before masking ran: \(result.strings)")
            } catch let error as PQError {
                #expect(error.sqlState == "42501")
                #expect(error.message == "pgclone: prepared statement \"early\" was prepared before role \"\(roles.masked)\" was masked by the current policies; prepare it again")
            }
            // Preparing again under the masked role works, masked.
            try await session.prepare(name: "late", "SELECT email FROM test_schema.employees WHERE id = $1")
            #expect(try await session.executePrepared(name: "late", ["2"]).string(0, 0) == "C***@example.com")
            try await session.exec("RESET ROLE")
            #expect(try await session.executePrepared(name: "early", ["1"]).string(0, 0) == "CANARY-EMAIL-9d1f1@example.com")
        }
    }

    /// Rewrites are cached by statement shape (the text without its numeric constants): a
    /// statement that differs only in a number is masked like the first, with its own numbers.
    @Test func cachedRewritesKeepEachStatementsOwnConstants() async throws {
        try await withMaskedSetup { environment, proxy, database, roles in
            let conninfo = environment.throughProxy(proxy.port, user: roles.masked, password: "pw", database: database)
            var script = ""
            for id in [3, 17, 5, 12] {
                script += "SELECT id, email, 1.5e\(id % 3) AS f, phone FROM test_schema.employees WHERE id = \(id) AND id > \(id - 1);\n"
            }
            script += "SELECT count(*) FROM test_schema.employees WHERE ssn IS NOT NULL OR id > 1000;\n"
            script += "SELECT count(*) FROM test_schema.employees t1 WHERE t1.id > 18;\n"
            let output = try await Shell.psql(conninfo, script)
            // employees_archive inherits from employees: ids 101-120 count too.
            #expect(output.stdout == """
                3|C***@example.com|1.5|***-c5-3
                17|C***@example.com|150|***-5-17
                5|C***@example.com|150|***-c5-5
                12|C***@example.com|1.5|***-5-12
                0
                22

                """, "\(output.stderr)")
            assertNoCanary(output.stdout + output.stderr, "cached rewrites")
        }
    }

    /// Hostile statement shapes: a tree nested as deep as the statement is long (it crashed the
    /// proxy once), and a statement longer than pgclone reads (it was relayed unread).
    @Test func hostileStatementsAreRefusedAndTheProxyStaysUp() async throws {
        try await withMaskedSetup(configure: { $0.maximumExaminedMessageLength = 64 << 10 }) { environment, proxy, database, roles in
            let conninfo = environment.throughProxy(proxy.port, user: roles.masked, password: "pw", database: database)
            let deep = "SELECT " + Array(repeating: "1", count: 20_000).joined(separator: "+") + " FROM test_schema.employees"
            let refused = try await Shell.run(["psql", "-X", "-v", "VERBOSITY=verbose", "-d", conninfo, "-c", deep])
            #expect(refused.status != 0)
            #expect(refused.stderr.contains("ERROR:  42501: pgclone: this statement could not be parsed") && refused.stderr.contains("too complex"), "\(refused.stderr.prefix(300))")
            let padded = "COPY test_schema.employees TO STDOUT /*" + String(repeating: "x", count: 70 << 10) + "*/"
            let tooLong = try await Shell.run(["psql", "-X", "-d", conninfo, "-c", padded])
            #expect(tooLong.status != 0)
            #expect(tooLong.stderr.contains("pgclone reads while masking policies are in force"), "\(tooLong.stderr.prefix(300))")
            assertNoCanary(tooLong.stdout + tooLong.stderr, "an oversized COPY")
            // Still serving, masked as before.
            let after = try await Shell.psql(conninfo, "SELECT email FROM test_schema.employees WHERE id = 1;")
            #expect(after.stdout == "C***@example.com\n", "\(after.stderr)")
            // An unmasked role, once known as such, may send long statements.
            let exempt = environment.throughProxy(proxy.port, user: roles.exempt, password: "pw", database: database)
            let long = try await Shell.psql(exempt, "SELECT 1;\nSELECT length('" + String(repeating: "y", count: 70 << 10) + "');")
            #expect(long.stdout == "1\n71680\n", "\(long.stderr.prefix(300))")
        }
    }

    /// A Bind too long to read, of a statement whose runs change settings: relayed unread, it
    /// turned standard_conforming_strings off unseen, and the next statement (read with it on)
    /// smuggled any SQL past the rewrite. Now refused; the setting never changes.
    @Test func aBindTooLongToReadIsRefusedWhenItMustBeRead() async throws {
        try await withMaskedSetup(configure: { $0.maximumExaminedMessageLength = 64 << 10 }) { environment, proxy, database, _ in
            let (answer, after) = try await offPool {
                let raw = try RawConnection(port: proxy.port)
                _ = try raw.startTrusted(user: "auth_trust", database: database)
                try raw.send(.query("SELECT 1"))
                _ = try raw.receive(until: .readyForQuery)
                try raw.send(.parse(.init(statementName: "s", query: "SELECT pg_catalog.set_config('standard_conforming_strings', $1, false), pg_catalog.length($2)", parameterTypes: [25, 25])))
                try raw.send(.sync)
                _ = try raw.receive(until: .readyForQuery)
                let padding = ByteBuffer(string: String(repeating: "x", count: 70 << 10))
                // The proxy refuses at the Bind's header and closes: the rest may not get through.
                try? raw.send(.bind(.init(portalName: "", statementName: "s", parameterFormats: [0], parameters: [ByteBuffer(string: "off"), padding], resultFormats: [])))
                try? raw.send(.execute(portal: "", maxRows: 0))
                try? raw.send(.sync)
                var messages: [BackendMessage] = []
                while let message = try? raw.receive() { messages.append(message) }
                // A new session of the same role: the server's setting is as it was.
                let second = try RawConnection(port: proxy.port)
                _ = try second.startTrusted(user: "auth_trust", database: database)
                try second.send(.query("SHOW standard_conforming_strings"))
                return (messages, try second.receive(until: .readyForQuery))
            }
            let errors = answer.compactMap { message -> String? in
                if case .errorResponse(let fields) = message { return fields.message }
                return nil
            }
            // The error, unless the proxy's close (with the rest of the Bind unread) reset the
            // connection before the client read it; never rows.
            #expect(errors.contains { $0.contains("message: longer than the 65536 bytes pgclone reads while masking policies are in force") }
                    || answer.isEmpty, "\(answer)")
            #expect(!answer.contains { if case .dataRow = $0 { return true } else { return false } }, "\(answer)")
            #expect(after.contains { if case .dataRow(let row) = $0 { return row.bytes.getString(at: row.bytes.readerIndex + 4, length: 2) == "on" } else { return false } }, "\(after)")
        }
    }

    /// COPY ... FROM STDIN WHERE runs its condition on every row: a refused function there read
    /// the masked table and put its values into an error message.
    @Test func theWhereOfACopyFromIsJudgedLikeAnyOtherExpression() async throws {
        try await withMaskedSetup { environment, proxy, database, roles in
            let owner = environment.directTarget(database: database)
            _ = try await Shell.psql(owner, "CREATE TABLE IF NOT EXISTS public.copy_sink (id int); GRANT INSERT, SELECT ON public.copy_sink TO \(roles.masked);")
            let conninfo = environment.throughProxy(proxy.port, user: roles.masked, password: "pw", database: database)
            let attack = try await Shell.run(["psql", "-X", "-v", "VERBOSITY=verbose", "-d", conninfo, "-c",
                "COPY public.copy_sink FROM STDIN WHERE pg_catalog.query_to_xml('SELECT pg_catalog.string_agg(ssn, '','') FROM test_schema.employees', true, false, '')::text::int > 0"],
                input: "1\n\\.\n")
            #expect(attack.status != 0)
            #expect(attack.stderr.contains("function query_to_xml() is not allowed"), "\(attack.stderr)")
            assertNoCanary(attack.stdout + attack.stderr, "COPY FROM ... WHERE")
        }
    }

    @Test func aRoleChangeInsideAMultiStatementQueryIsRefused() async throws {
        try await withMaskedSetup { environment, proxy, database, roles in
            let conninfo = environment.throughProxy(proxy.port, database: database)
            // psql -c sends both statements in one Query message.
            let combined = try await Shell.run(["psql", "-X", "-v", "VERBOSITY=verbose", "-d", conninfo, "-c",
                                                "SET ROLE \(roles.masked); SELECT email FROM test_schema.employees WHERE id = 1"])
            #expect(combined.status != 0)
            #expect(combined.stderr.contains("ERROR:  0A000: pgclone: while masking policies are in force, a role change must be sent as a query of its own"), "\(combined.stderr)")
            assertNoCanary(combined.stdout + combined.stderr, "combined query")
            let ordinary = try await Shell.run(["psql", "-X", "-A", "-t", "-d", conninfo, "-c", "BEGIN; SELECT 1; COMMIT"])
            #expect(ordinary.status == 0, "\(ordinary.stderr)")
            // A superuser's script that makes and drops roles changes no one's role (asyncpg's
            // tests and migration scripts do this): it runs.
            let name = "script_role_\(UInt32.random(in: 0...UInt32.max))"
            let script = try await Shell.run(["psql", "-X", "-A", "-t", "-d", conninfo, "-c",
                                             "CREATE ROLE \(name); GRANT \(name) TO \(roles.masked); REVOKE \(name) FROM \(roles.masked); ALTER ROLE \(name) NOLOGIN; DROP ROLE \(name); SELECT 'roles made and dropped'"])
            #expect(script.status == 0, "\(script.stderr)")
            #expect(script.stdout.hasSuffix("\nroles made and dropped\n"), "\(script.stdout)")
            let authorization = try await Shell.run(["psql", "-X", "-d", conninfo, "-c", "SET SESSION AUTHORIZATION \(roles.masked); SELECT email FROM test_schema.employees"])
            #expect(authorization.stderr.contains("a role change must be sent as a query of its own"), "\(authorization.stderr)")
            assertNoCanary(authorization.stdout + authorization.stderr, "SET SESSION AUTHORIZATION in a script")
        }
    }

    @Test func functionCallMessageIsRefusedForMaskedSessions() async throws {
        try await TargetRoles.ensure()
        try await withMaskedSetup { environment, proxy, database, _ in
            let answer = try await offPool {
                let raw = try RawConnection(port: proxy.port)
                _ = try raw.startTrusted(user: "auth_trust", database: database)
                // A first statement lets the proxy learn the session's masking context.
                try raw.send(.query("SELECT 1"))
                _ = try raw.receive(until: .readyForQuery)
                // lower('CANARY') through the fast-path interface (pg_catalog.lower(text) is OID 870).
                try raw.send(.functionCall(.init(functionOID: 870, argumentFormats: [0], arguments: [ByteBuffer(string: "X")], resultFormat: 0)))
                return try raw.receive(until: .readyForQuery)
            }
            guard case .errorResponse(let fields)? = answer.first else {
                Issue.record("expected an error, got \(answer)")
                return
            }
            #expect(fields.sqlState == "42501")
            #expect(fields.message == "pgclone: the FunctionCall protocol message is not allowed for role \"auth_trust\", which is masked by a policy")
            #expect(answer.last == .readyForQuery(.idle))
        }
    }

    @Test func exemptRolesAndSuperusersSeeRealValuesAndWritesWork() async throws {
        try await withMaskedSetup { environment, proxy, database, roles in
            let exempt = try await Shell.psql(environment.throughProxy(proxy.port, user: roles.exempt, password: "pw", database: database),
                                              "SELECT email FROM test_schema.employees WHERE id = 1;")
            #expect(exempt.stdout == "CANARY-EMAIL-9d1f1@example.com\n", "\(exempt.stderr)")
            let superuser = try await Shell.psql(environment.throughProxy(proxy.port, database: database), """
                UPDATE test_schema.employees SET notes = 'updated' WHERE id = 2;
                SELECT ssn, notes FROM test_schema.employees WHERE id = 2;
                SET ROLE \(roles.masked);
                SELECT ssn IS NULL, full_name FROM test_schema.employees WHERE id = 2;
                RESET ROLE;
                SELECT full_name FROM test_schema.employees WHERE id = 2;
                """)
            #expect(superuser.stdout == "1CANARY-SSN-77aa2|updated\nt|XXXX\nCANARY-NAME-4b7e 2\n", "\(superuser.stderr)")
        }
    }

    @Test(arguments: ["psycopg", "asyncpg"])
    func maskedRoleThroughDrivers(_ driver: String) async throws {
        try await withMaskedSetup { environment, proxy, database, roles in
            let script: String
            if driver == "psycopg" {
                script = """
                    import psycopg
                    with psycopg.connect(autocommit=True) as c:
                        for binary in (False, True):
                            cur = c.cursor(binary=binary)
                            for i in range(12):
                                cur.execute("SELECT email, full_name, ssn, phone FROM test_schema.employees WHERE id = %s", [i % 20 + 1], prepare=True)
                                print(cur.fetchall())
                            cur.execute("SELECT * FROM test_schema.employees")
                            print(cur.fetchall())
                    """
            } else {
                script = """
                    import asyncio, asyncpg
                    async def main():
                        c = await asyncpg.connect(ssl=False)
                        st = await c.prepare("SELECT email, full_name, ssn, phone FROM test_schema.employees WHERE id = $1")
                        for i in range(12):
                            print(await st.fetch(i % 20 + 1))
                        print(await c.fetch("SELECT * FROM test_schema.employees"))
                        print(await c.fetch("SELECT row_to_json(e)::text FROM test_schema.employees e"))
                        await c.close()
                    asyncio.run(main())
                    """
            }
            let output = try await Shell.run(["python3", "-c", script], environment: [
                "PGHOST": "127.0.0.1", "PGPORT": "\(proxy.port)", "PGUSER": roles.masked, "PGPASSWORD": "pw",
                "PGDATABASE": database, "PGSSLMODE": "disable",
            ])
            #expect(output.status == 0, "\(output.stderr)")
            #expect(output.stdout.contains("XXXX"))
            assertNoCanary(output.stdout + output.stderr, driver)
        }
    }

    /// Rewrites employees.yaml so that notes are masked too.
    private func maskNotesToo(_ proxy: RunningProxy, exempt: String) throws {
        try writeEmployeesPolicy(proxy, exempt: exempt, columns: ["email: email", "notes: { type: constant, value: REDACTED }"])
    }

    /// Rewrites employees.yaml with these column lines for test_schema.employees (and more
    /// policies after it), and reloads.
    private func writeEmployeesPolicy(_ proxy: RunningProxy, exempt: String, columns: [String], more: String = "") throws {
        let directory = try #require(proxy.server.policies.directory)
        try ("""
            policies:
              - table: test_schema.employees
                unmasked_roles: [\(exempt)]
                columns:

            """ + columns.map { "      \($0)\n" }.joined() + more).write(toFile: directory + "/employees.yaml", atomically: true, encoding: .utf8)
        #expect(proxy.server.policies.reload() == nil)
    }

    /// A stale name prepared again in the middle of a pipeline, behind a failing Execute (the
    /// server skips everything up to the Sync: the old statement would stay) and behind a Close
    /// of the client's own (whose answer the proxy once took for its own Close): the proxy
    /// cannot free the name there, so the Parse is refused and the old statement never runs.
    @Test func aStaleNamePreparedAgainInsideAPipelineNeverRunsTheOldStatement() async throws {
        try await withMaskedSetup { environment, proxy, database, roles in
            let exempt = roles.exempt
            let answers = try await offPool { () -> [BackendMessage] in
                let raw = try RawConnection(port: proxy.port)
                _ = try raw.startTrusted(user: "auth_trust", database: database)
                try raw.send(.parse(.init(statementName: "s1", query: "SELECT notes FROM test_schema.employees WHERE id = 1", parameterTypes: [])))
                try raw.send(.sync)
                _ = try raw.receive(until: .readyForQuery)
                try raw.send(.query("PREPARE sql1 AS SELECT notes FROM test_schema.employees WHERE id = 1"))
                _ = try raw.receive(until: .readyForQuery)
                // A name spelled with a combining accent: the server keeps it apart from the
                // precomposed spelling, which Swift's String equality does not.
                try raw.send(.parse(.init(statementName: "se\u{301}", query: "SELECT notes FROM test_schema.employees WHERE id = 1", parameterTypes: [])))
                try raw.send(.sync)
                _ = try raw.receive(until: .readyForQuery)
                try self.maskNotesToo(proxy, exempt: exempt)
                try raw.send(.query("SELECT 1"))
                _ = try raw.receive(until: .readyForQuery)
                try raw.send(.close(.statement("x")))
                try raw.send(.parse(.init(statementName: "", query: "SELECT 1/0", parameterTypes: [])))
                try raw.send(.bind(.init(portalName: "", statementName: "", parameterFormats: [], parameters: [], resultFormats: [])))
                try raw.send(.execute(portal: "", maxRows: 0))
                try raw.send(.parse(.init(statementName: "s1", query: "SELECT 'new'", parameterTypes: [])))
                try raw.send(.sync)
                var answers = try raw.receive(until: .readyForQuery)
                try raw.send(.bind(.init(portalName: "", statementName: "s1", parameterFormats: [], parameters: [], resultFormats: [])))
                try raw.send(.execute(portal: "", maxRows: 0))
                try raw.send(.sync)
                answers += try raw.receive(until: .readyForQuery)
                // Preparing the precomposed spelling makes only that name new.
                try raw.send(.parse(.init(statementName: "s\u{e9}", query: "SELECT 'precomposed'", parameterTypes: [])))
                try raw.send(.bind(.init(portalName: "", statementName: "se\u{301}", parameterFormats: [], parameters: [], resultFormats: [])))
                try raw.send(.execute(portal: "", maxRows: 0))
                try raw.send(.sync)
                answers += try raw.receive(until: .readyForQuery)
                // Prepared again between requests, the name works.
                try raw.send(.parse(.init(statementName: "s1", query: "SELECT 'new'", parameterTypes: [])))
                try raw.send(.bind(.init(portalName: "", statementName: "s1", parameterFormats: [], parameters: [], resultFormats: [])))
                try raw.send(.execute(portal: "", maxRows: 0))
                try raw.send(.sync)
                answers += try raw.receive(until: .readyForQuery)
                // The same with SQL PREPARE, sent as a query inside the failing pipeline (last: the
                // server discards that query without an answer, and the session never looks
                // quiet to the proxy again).
                try raw.send(.close(.statement("x")))
                try raw.send(.parse(.init(statementName: "", query: "SELECT 1/0", parameterTypes: [])))
                try raw.send(.bind(.init(portalName: "", statementName: "", parameterFormats: [], parameters: [], resultFormats: [])))
                try raw.send(.execute(portal: "", maxRows: 0))
                try raw.send(.query("PREPARE sql1 AS SELECT 'new sql'"))
                try raw.send(.sync)
                // (The server discards a Query there, as everything up to the Sync.)
                answers += try raw.receive(until: .readyForQuery)
                try raw.send(.query("EXECUTE sql1"))
                answers += try raw.receive(until: .readyForQuery)
                return answers
            }
            let rows = answers.compactMap { message -> String? in
                if case .dataRow(let row) = message { return row.bytes.getString(at: row.bytes.readerIndex + 4, length: row.bytes.readableBytes - 4) }
                return nil
            }
            #expect(rows == ["new"], "\(answers)")
            // The client's own Closes are answered once each; the proxy's own answers never reach it.
            #expect(answers.filter { if case .closeComplete = $0 { return true } else { return false } }.count == 2, "\(answers)")
        }
    }

    /// What drivers' statement caches send (npgsql, pgx): the client's own Close of a name and a
    /// Parse of it in one batch. Answers come in the order of the client's messages (the proxy's
    /// own Close of a reused portal once swallowed the client's CloseComplete instead of its
    /// own), the name is prepared as asked (it was refused as "may still hold an older
    /// statement"), and a Close an error skipped never lets the old statement run: an error in
    /// the batch leaves the name refused.
    @Test func closeAndPrepareOfOneNameInABatchAnswerInOrder() async throws {
        try await withMaskedSetup { environment, proxy, database, roles in
            let exempt = roles.exempt
            let direct = try await PQConnection.connect(environment.directTarget(database: database))
            try await direct.exec("GRANT USAGE ON SCHEMA test_schema TO auth_trust; GRANT SELECT ON test_schema.employees TO auth_trust")
            let batches = try await offPool { () -> [[String]] in
                let first = try RawConnection(port: proxy.port)
                _ = try first.startTrusted(user: "auth_trust", database: database)
                var raw = first
                // A second session, for what must not follow the first one's simple query in a batch.
                let second = try RawConnection(port: proxy.port)
                _ = try second.startTrusted(user: "auth_trust", database: database)
                let third = try RawConnection(port: proxy.port)
                _ = try third.startTrusted(user: "auth_trust", database: database)
                let fourth = try RawConnection(port: proxy.port)
                _ = try fourth.startTrusted(user: "auth_trust", database: database)
                // Each batch in one write: the proxy reads it whole before any answer comes.
                func send(_ messages: [FrontendMessage]) throws {
                    var buffer = ByteBuffer()
                    for message in messages { message.encode(into: &buffer) }
                    try raw.send(buffer)
                }
                func bindExecute(_ statement: String) -> [FrontendMessage] {
                    [.bind(.init(portalName: "", statementName: statement, parameterFormats: [], parameters: [], resultFormats: [])), .execute(portal: "", maxRows: 0)]
                }
                func answers(_ count: Int = 1) throws -> [String] {
                    try (0..<count).flatMap { _ in try raw.receive(until: .readyForQuery).map(Self.shortName) }
                }
                // An error, then the client's Close and Parse of a stale name and its Bind in the
                // next batch; then the Bind once more after every answer came.
                func staleNameAfterAnError(_ name: String) throws -> [String] {
                    try send([.parse(.init(statementName: "", query: "SELECT 1/0", parameterTypes: []))] + bindExecute("")
                             + [.close(.statement(name)), .parse(.init(statementName: name, query: "SELECT notes FROM test_schema.employees WHERE id = 1", parameterTypes: [])), .sync]
                             + bindExecute(name) + [.sync])
                    let first = try answers(2)
                    try send(bindExecute(name) + [.sync])
                    return first + (try answers())
                }
                var batches: [[String]] = []
                // 0. A reused portal behind the client's Close of it.
                let read = "SELECT email FROM test_schema.employees WHERE id < 3 ORDER BY id"
                try send([.parse(.init(statementName: "s", query: read, parameterTypes: [])),
                          .bind(.init(portalName: "p", statementName: "s", parameterFormats: [], parameters: [], resultFormats: [])),
                          .execute(portal: "p", maxRows: 1), .close(.portal("p")),
                          .parse(.init(statementName: "t", query: read, parameterTypes: [])),
                          .bind(.init(portalName: "p", statementName: "t", parameterFormats: [], parameters: [], resultFormats: [])),
                          .execute(portal: "p", maxRows: 0), .sync])
                batches.append(try answers())
                // 1. A statement cache replacing a name: Close and Parse in one batch.
                try send([.parse(.init(statementName: "a", query: "SELECT 'first'", parameterTypes: [])), .sync])
                _ = try answers()
                try send([.close(.statement("a")), .parse(.init(statementName: "a", query: "SELECT 'second'", parameterTypes: []))] + bindExecute("a") + [.sync])
                batches.append(try answers())
                // 2. Bound in a batch pipelined behind it: refused (its answers have not come),
                // then, once they have, bound.
                try send([.close(.statement("a")), .parse(.init(statementName: "a", query: "SELECT 'third'", parameterTypes: [])), .sync]
                         + bindExecute("a") + [.sync])
                batches.append(try answers(2))
                try send(bindExecute("a") + [.sync])
                batches[2] += try answers()
                // 3. A name holding a statement prepared before notes were masked: an error skips
                // the client's Close and Parse of it, the server keeps the old statement, and the
                // name is refused from then on.
                for session in [raw, second, third, fourth] {
                    raw = session
                    try send(["old", "old2", "old3", "old4"].map { .parse(.init(statementName: $0, query: "SELECT notes FROM test_schema.employees WHERE id = 1", parameterTypes: [])) } + [.sync])
                    _ = try answers()
                }
                raw = first
                try self.maskNotesToo(proxy, exempt: exempt)
                try send([.parse(.init(statementName: "", query: "SELECT 1/0", parameterTypes: []))] + bindExecute("")
                         + [.close(.statement("old")), .parse(.init(statementName: "old", query: "SELECT notes FROM test_schema.employees WHERE id = 1", parameterTypes: [])), .sync]
                         + bindExecute("old") + [.sync])
                batches.append(try answers(2))
                try send(bindExecute("old") + [.sync])
                batches[3] += try answers()
                // 4. The same with the error answered (Flush) before the Close reaches the proxy.
                try send([.parse(.init(statementName: "", query: "SELECT 1/0", parameterTypes: []))] + bindExecute("") + [.flush])
                batches.append(try raw.receive(until: .errorResponse).map(Self.shortName))
                try send([.close(.statement("old2")), .parse(.init(statementName: "old2", query: "SELECT notes FROM test_schema.employees WHERE id = 1", parameterTypes: [])), .sync])
                batches[4] += try answers()
                try send(bindExecute("old2") + [.sync])
                batches[4] += try answers()
                // 5. A stale name closed between requests, prepared again and a simple query in the
                // same batch (no Sync), then SQL PREPARE and EXECUTE of it (round 32: the PREPARE
                // failed on the old statement, which EXECUTE then ran unmasked).
                try send([.close(.statement("old3")), .parse(.init(statementName: "old3", query: "SELECT notes FROM test_schema.employees WHERE id = 1", parameterTypes: [])),
                          .query("SELECT 2")])
                _ = try answers()
                try send([.query("EXECUTE old3")])
                batches.append(try answers())
                try send([.query("PREPARE old3 AS SELECT 'prepared again'")])
                _ = try answers()
                try send([.query("EXECUTE old3")])
                batches[5] += try answers()
                // 6. After a COPY FROM STDIN started by an Execute (whose Sync the server ignores:
                // the proxy once counted an answer too many, and took a later batch's error for
                // another's; rounds 34 and 36), the session no longer relies on the client's
                // Close: the stale name stays refused as prepared under other masking. (In the
                // second session: batch 5's query inside a batch did the same to the first.)
                raw = second
                try send([.query("CREATE TEMP TABLE copied (x int)")])
                _ = try answers()
                try send([.parse(.init(statementName: "", query: "COPY copied FROM STDIN", parameterTypes: []))] + bindExecute("") + [.sync])
                _ = try raw.receive(until: .copyInResponse)
                try send([.copyData(ByteBuffer(string: "1\n")), .copyDone, .sync])
                _ = try answers()
                batches.append(try staleNameAfterAnError("old4"))
                // 7. A COPY started by a simple query, with a Sync among its data (ignored by the
                // server: round 36), then the same: refused, never the old statement.
                raw = third
                try send([.query("CREATE TEMP TABLE copied (x int)")])
                _ = try answers()
                try send([.query("COPY copied FROM STDIN")])
                _ = try raw.receive(until: .copyInResponse)
                try send([.copyData(ByteBuffer(string: "1\n")), .sync, .copyDone])
                _ = try answers()
                batches.append(try staleNameAfterAnError("old4"))
                // 8. One query starting two copies, a Sync between them (round 38).
                raw = fourth
                try send([.query("CREATE TEMP TABLE copied (x int)")])
                _ = try answers()
                try send([.query("COPY copied FROM STDIN; COPY copied FROM STDIN")])
                _ = try raw.receive(until: .copyInResponse)
                try send([.copyData(ByteBuffer(string: "1\n")), .copyDone, .sync])
                _ = try raw.receive(until: .copyInResponse)
                try send([.copyData(ByteBuffer(string: "2\n")), .copyDone])
                _ = try answers()
                batches.append(try staleNameAfterAnError("old4"))
                return batches
            }
            #expect(batches[0] == ["ParseComplete", "BindComplete", "DataRow", "PortalSuspended", "CloseComplete", "ParseComplete", "BindComplete",
                                   "DataRow", "DataRow", "CommandComplete", "ReadyForQuery"], "\(batches[0])")
            #expect(batches[1] == ["CloseComplete", "ParseComplete", "BindComplete", "DataRow second", "CommandComplete", "ReadyForQuery"], "\(batches[1])")
            // A name closed while it held a statement of this masking is free for the Parse after
            // it, whatever the batches do; in a later batch too.
            #expect(batches[2] == ["CloseComplete", "ParseComplete", "ReadyForQuery", "BindComplete", "DataRow third", "CommandComplete", "ReadyForQuery",
                                   "BindComplete", "DataRow third", "CommandComplete", "ReadyForQuery"], "\(batches[2])")
            // A stale name closed inside a pipeline (an error may skip the Close): its Parse is
            // refused, and so is every Bind of it until it is prepared again. (The refused Bind
            // is the proxy's statement that raises: the error comes at Execute.)
            #expect(batches[3] == ["ParseComplete", "ErrorResponse 22012", "ReadyForQuery", "BindComplete", "ErrorResponse 42501", "ReadyForQuery",
                                   "BindComplete", "ErrorResponse 42501", "ReadyForQuery"], "\(batches[3])")
            #expect(batches[4] == ["ParseComplete", "ErrorResponse 22012", "ReadyForQuery", "BindComplete", "ErrorResponse 42501", "ReadyForQuery"], "\(batches[4])")
            // A stale name closed between requests is freed by the proxy first: the new, masked
            // statement runs, never the old one.
            #expect(batches[5].contains("DataRow REDACTED") && !batches[5].contains("DataRow note 1"), "\(batches[5])")
            for batch in batches[6...] { #expect(!batch.contains { $0.hasPrefix("DataRow") } && batch.filter { $0.hasPrefix("ErrorResponse 42501") }.count == 2, "\(batch)") }
        }
    }

    /// After a policy reload, a batch opening with a Close (npgsql's statement cache replacing a
    /// statement) reads the session's masking first, as one opening with a Bind does: the
    /// statement prepared again is masked under the new policies (the session was ended with
    /// 57P01; round 32, L2).
    @Test func aBatchOpeningWithACloseAfterAReloadReadsTheMaskingFirst() async throws {
        try await withMaskedSetup { environment, proxy, database, roles in
            let exempt = roles.exempt
            let direct = try await PQConnection.connect(environment.directTarget(database: database))
            try await direct.exec("GRANT USAGE ON SCHEMA test_schema TO auth_trust; GRANT SELECT ON test_schema.employees TO auth_trust")
            let answers = try await offPool { () -> [String] in
                let raw = try RawConnection(port: proxy.port)
                _ = try raw.startTrusted(user: "auth_trust", database: database)
                let read = "SELECT notes FROM test_schema.employees WHERE id = 1"
                var buffer = ByteBuffer()
                for message: FrontendMessage in [.parse(.init(statementName: "s", query: read, parameterTypes: [])), .sync] { message.encode(into: &buffer) }
                try raw.send(buffer)
                _ = try raw.receive(until: .readyForQuery)
                try self.maskNotesToo(proxy, exempt: exempt)
                buffer = ByteBuffer()
                for message: FrontendMessage in [.close(.statement("s")), .parse(.init(statementName: "s", query: read, parameterTypes: [])),
                                                 .bind(.init(portalName: "", statementName: "s", parameterFormats: [], parameters: [], resultFormats: [])),
                                                 .execute(portal: "", maxRows: 0), .sync] { message.encode(into: &buffer) }
                try raw.send(buffer)
                return try raw.receive(until: .readyForQuery).map(Self.shortName)
            }
            #expect(answers == ["CloseComplete", "ParseComplete", "BindComplete", "DataRow REDACTED", "CommandComplete", "ReadyForQuery"], "\(answers)")
        }
    }

    /// A name freed by the proxy at a Close, then filled by an SQL PREPARE it relayed unread (the
    /// role not masked then), was taken for free once the role was masked: the Parse of it failed
    /// on the server (42P05) and its Bind ran the old statement (round 40).
    @Test func aNameFreedThenFilledUnreadIsNotTakenForFree() async throws {
        try await withMaskedSetup { environment, proxy, database, roles in
            let direct = try await PQConnection.connect(environment.directTarget(database: database))
            try await direct.exec("GRANT USAGE ON SCHEMA test_schema TO auth_trust; GRANT SELECT ON test_schema.employees TO auth_trust")
            try writeEmployeesPolicy(proxy, exempt: "auth_trust", columns: ["email: email"])
            let answers = try await offPool { () -> [String] in
                let raw = try RawConnection(port: proxy.port)
                _ = try raw.startTrusted(user: "auth_trust", database: database)
                func send(_ messages: [FrontendMessage]) throws -> [String] {
                    var buffer = ByteBuffer()
                    for message in messages { message.encode(into: &buffer) }
                    try raw.send(buffer)
                    return try raw.receive(until: .readyForQuery).map(Self.shortName)
                }
                _ = try send([.query("SELECT 1")])
                _ = try send([.close(.statement("cache_1")), .sync])
                _ = try send([.query("PREPARE cache_1 AS SELECT email FROM test_schema.employees WHERE id = 1")])
                try self.writeEmployeesPolicy(proxy, exempt: roles.exempt, columns: ["email: email"])
                var answers = try send([.parse(.init(statementName: "cache_1", query: "SELECT 42", parameterTypes: [])), .sync])
                answers += try send([.bind(.init(portalName: "", statementName: "cache_1", parameterFormats: [], parameters: [], resultFormats: [])),
                                     .execute(portal: "", maxRows: 0), .sync])
                return answers
            }
            #expect(!answers.contains { $0.hasPrefix("DataRow") && $0 != "DataRow 42" }, "\(answers)")
            #expect(answers == ["ParseComplete", "ReadyForQuery", "BindComplete", "DataRow 42", "CommandComplete", "ReadyForQuery"], "\(answers)")
        }
    }

    /// A policy naming a column the table does not have (`Full_Name` for full_name: another
    /// case, a typo, a rename): the column meant is read unmasked, so every read of the table by
    /// a role the policy masks is refused, through views and functions of the role's own too
    /// (round 33: the real values were served, and `policy check` said OK).
    @Test(arguments: [false, true]) func aPolicyColumnTheTableLacksRefusesTheTable(backstop: Bool) async throws {
        try await withMaskedSetup(backstop: backstop) { environment, proxy, database, roles in
            let directory = try #require(proxy.server.policies.directory)
            try writeEmployeesPolicy(proxy, exempt: roles.exempt, columns: ["email: email", "Full_Name: name"], more: """
                  - table: public.other
                    unmasked_roles: [\(roles.exempt)]
                    columns:
                      V: { type: constant, value: hidden }

                """)
            // A view the masked role owns and a function it may run, made straight on the server
            // (through the proxy, making them is refused as a read).
            let admin = try await PQConnection.connect(environment.directTarget(database: database))
            try await admin.exec("""
                CREATE VIEW public.names AS SELECT full_name FROM test_schema.employees;
                ALTER VIEW public.names OWNER TO \(roles.masked);
                CREATE FUNCTION public.names_fn() RETURNS SETOF text LANGUAGE sql AS 'SELECT full_name::text FROM test_schema.employees';
                """)
            let conninfo = environment.throughProxy(proxy.port, user: roles.masked, password: "pw", database: database)
            for read in ["SELECT full_name FROM test_schema.employees", "SELECT id FROM test_schema.employees WHERE id = 1",
                         "SELECT * FROM public.names", "SELECT public.names_fn()", "COPY test_schema.employees TO STDOUT", "SELECT v FROM public.other"] {
                let output = try await Shell.run(["psql", "-X", "-v", "VERBOSITY=verbose", "-d", conninfo, "-c", read])
                assertNoCanary(output.stdout + output.stderr, read)
                #expect(output.stderr.contains("ERROR:  42501"), "\(read): \(output.stdout) \(output.stderr)")
            }
            let direct = try await Shell.run(["psql", "-X", "-d", conninfo, "-c", "SELECT full_name FROM test_schema.employees"])
            #expect(direct.stderr.contains("the masking policy on test_schema.employees names column \"Full_Name\", which the table does not have"), "\(direct.stderr)")
            // `pgclone policy check --target` finds it before a reload does.
            let syntaxOnly = try await Shell.run([CommandLineTests.binary, "policy", "check", directory])
            #expect(syntaxOnly.status == 0, "\(syntaxOnly.stderr)")
            let checked = try await Shell.run([CommandLineTests.binary, "policy", "check", directory, "--target", environment.directTarget(database: database)])
            #expect(checked.status == 1, "\(checked.stdout)")
            #expect(checked.stderr.contains("test_schema.employees has no column \"Full_Name\" (it has \"full_name\": names are exact, case included)"), "\(checked.stderr)")
            #expect(checked.stderr.contains("public.other has no column \"V\" (it has \"v\""), "\(checked.stderr)")
            // The coverage report says so, for the table and the one that inherits from it.
            let superuser = environment.throughProxy(proxy.port, database: database)
            let report = "SELECT table_name, column_name, mask_status FROM pgclone.masking_report('test_schema') WHERE table_name LIKE 'employees%' AND column_name IN ('email', 'notes') ORDER BY 1, 2;"
            #expect(try await Shell.psql(superuser, report).stdout == """
                employees|email|REFUSED (policy names missing column)
                employees|notes|REFUSED (policy names missing column)
                employees_archive|email|REFUSED (policy names missing column)
                employees_archive|notes|REFUSED (policy names missing column)

                """)
            // The exempt role reads as ever.
            let exempt = environment.throughProxy(proxy.port, user: roles.exempt, password: "pw", database: database)
            #expect(try await Shell.psql(exempt, "SELECT count(*) FROM test_schema.employees;").stdout.contains("40"))
            if backstop {
                // Connected straight to the server: a table the backstop held back keeps what it
                // took (full_name stays refused); one it never held back (public.other) is held
                // back from every column.
                let straight = environment.directTarget(database: database)
                    .replacingOccurrences(of: "user=postgres password=\(environment.password)", with: "user=\(roles.masked) password=pw")
                try await waitFor("the backstop to hold every column of public.other back", seconds: 45) {
                    try await Shell.run(["psql", "-X", "-d", straight, "-c", "SELECT id FROM public.other LIMIT 1"]).stderr.contains("permission denied")
                }
                let full = try await Shell.run(["psql", "-X", "-d", straight, "-c", "SELECT full_name FROM test_schema.employees"])
                assertNoCanary(full.stdout + full.stderr, "direct")
                #expect(full.stderr.contains("permission denied"), "\(full.stderr)")
                // A column the old policy did not name is held back too (round 34: one policy change
                // that added a column and a typo left the new column readable on the server).
                try await waitFor("the backstop to hold every column of the employees back", seconds: 45) {
                    try await Shell.run(["psql", "-X", "-d", straight, "-c", "SELECT notes FROM test_schema.employees LIMIT 1"]).stderr.contains("permission denied")
                }
                let other = try await Shell.run(["psql", "-X", "-d", straight, "-c", "SELECT v FROM public.other"])
                #expect(!other.stdout.contains("plain") && other.stderr.contains("permission denied"), "\(other.stdout) \(other.stderr)")
                let status = try await Shell.psql(environment.throughProxy(proxy.port, database: database), "SELECT server_enforced, server_detail FROM pgclone.policy_status() WHERE table_name = 'test_schema.employees';")
                #expect(status.stdout.contains("has no column Full_Name of policy test_schema.employees"), "\(status.stdout) \(status.stderr)")
                let otherStatus = try await Shell.psql(environment.throughProxy(proxy.port, database: database), "SELECT server_detail FROM pgclone.policy_status() WHERE table_name = 'public.other';")
                #expect(otherStatus.stdout.contains("public.other has no column V of policy public.other"), "\(otherStatus.stdout) \(otherStatus.stderr)")
            }
        }
    }

    /// The coverage report: a policy covers the tables that inherit from its table (the child was
    /// reported UNMASKED), and a regex_replace whose pattern matches only some values is partly
    /// masking (it was reported MASKED while real values were served; round 33, D2).
    @Test func theCoverageReportSaysWhatIsReallyMasked() async throws {
        try await withMaskedSetup { environment, proxy, database, roles in
            try writeEmployeesPolicy(proxy, exempt: roles.exempt, columns: ["email: email", #"notes: { type: regex_replace, pattern: "^note 1", replacement: "note X" }"#])
            let report = try await Shell.psql(environment.throughProxy(proxy.port, database: database), """
                SELECT table_name, column_name, mask_status, recommendation FROM pgclone.masking_report('test_schema') WHERE table_name LIKE 'employees%' AND column_name IN ('email', 'notes') ORDER BY 1, 2;
                """)
            #expect(report.stdout == """
                employees|email|MASKED (policy)|masked with "email"
                employees|notes|PARTLY MASKED (policy)|masked with {"pattern": "^note 1", "replacement": "note X", "type": "regex_replace"}; its pattern matches 11 of 20 sampled values, the others are shown as they are
                employees_archive|email|MASKED (policy)|masked with "email" (policy on test_schema.employees)
                employees_archive|notes|PARTLY MASKED (policy)|masked with {"pattern": "^note 1", "replacement": "note X", "type": "regex_replace"} (policy on test_schema.employees); its pattern matches 11 of 20 sampled values, the others are shown as they are

                """, "\(report.stdout) \(report.stderr)")
        }
    }

    /// A message as a short name (data rows with their first value, errors with their SQLSTATE).
    static func shortName(_ message: BackendMessage) -> String {
        switch message {
        case .parseComplete: "ParseComplete"
        case .bindComplete: "BindComplete"
        case .closeComplete: "CloseComplete"
        case .portalSuspended: "PortalSuspended"
        case .commandComplete: "CommandComplete"
        case .readyForQuery: "ReadyForQuery"
        case .noData: "NoData"
        case .errorResponse(let fields): "ErrorResponse \(fields.sqlState ?? "")"
        case .dataRow(let row):
            row.values.first.flatMap { $0.map { String(buffer: $0) } }.map { $0.hasPrefix("CANARY") || $0.contains("@") ? "DataRow" : "DataRow \($0)" } ?? "DataRow"
        default: "\(message)"
        }
    }

    /// Under client_encoding LATIN1 two non-ASCII statement names can look alike to the proxy
    /// (which reads protocol names as UTF-8) and not to the server: a masked session must use
    /// ASCII names there.
    @Test func nonASCIIStatementNamesAreRefusedUnderAnotherClientEncoding() async throws {
        try await withMaskedSetup { environment, proxy, database, roles in
            let answers = try await offPool { () -> [BackendMessage] in
                let raw = try RawConnection(port: proxy.port)
                _ = try raw.startTrusted(user: "auth_trust", database: database)
                try raw.send(.query("SET client_encoding TO LATIN1"))
                _ = try raw.receive(until: .readyForQuery)
                try raw.send(.parse(.init(statementName: "s\u{e9}", query: "SELECT email FROM test_schema.employees WHERE id = 1", parameterTypes: [])))
                try raw.send(.bind(.init(portalName: "", statementName: "s\u{e9}", parameterFormats: [], parameters: [], resultFormats: [])))
                try raw.send(.execute(portal: "", maxRows: 0))
                try raw.send(.sync)
                var answers = try raw.receive(until: .readyForQuery)
                // ASCII names work as ever.
                try raw.send(.parse(.init(statementName: "plain", query: "SELECT 'ok'", parameterTypes: [])))
                try raw.send(.bind(.init(portalName: "", statementName: "plain", parameterFormats: [], parameters: [], resultFormats: [])))
                try raw.send(.execute(portal: "", maxRows: 0))
                try raw.send(.sync)
                answers += try raw.receive(until: .readyForQuery)
                return answers
            }
            let errors = answers.compactMap { message -> String? in
                if case .errorResponse(let fields) = message { return fields.message }
                return nil
            }
            #expect(errors.first?.hasPrefix("pgclone: prepared statement and portal names with non-ASCII characters are not allowed") == true, "\(answers)")
            let rows = answers.compactMap { message -> String? in
                if case .dataRow(let row) = message { return row.bytes.getString(at: row.bytes.readerIndex + 4, length: row.bytes.readableBytes - 4) }
                return nil
            }
            #expect(rows == ["ok"], "\(answers)")
        }
    }

    /// Cursors opened before the session's masking changed go on returning rows computed then
    /// (WITH HOLD ones across transactions too): the proxy closes them all when it changes.
    @Test func cursorsOpenedBeforeAMaskingChangeAreClosed() async throws {
        try await withMaskedSetup { environment, proxy, database, roles in
            let session = try await PQConnection.connect(environment.throughProxy(proxy.port, user: roles.masked, password: "pw", database: database))
            try await session.exec("DECLARE held CURSOR WITH HOLD FOR SELECT notes FROM test_schema.employees ORDER BY id")
            try await session.exec("BEGIN")
            try await session.exec("DECLARE inner_cursor CURSOR FOR SELECT notes FROM test_schema.employees ORDER BY id")
            #expect(try await session.exec("FETCH 1 FROM inner_cursor").string(0, 0) == "note 1")
            #expect(try await session.exec("FETCH 1 FROM held").string(0, 0) == "note 1")
            try maskNotesToo(proxy, exempt: roles.exempt)
            for cursor in ["inner_cursor", "held"] {
                do {
                    let result = try await session.exec("FETCH 1 FROM \(cursor)")
                    Issue.record("\(cursor) was read on after the masking changed: \(result.strings)")
                } catch let error as PQError {
                    #expect(error.sqlState == "34000" || error.sqlState == "25P02", "\(cursor): \(error.message)")
                }
            }
            try await session.exec("ROLLBACK")
            do {
                let result = try await session.exec("FETCH 1 FROM held")
                Issue.record("held was read on after the masking changed: \(result.strings)")
            } catch let error as PQError {
                #expect(error.sqlState == "34000", "\(error.message)")
            }
            // A cursor opened now reads masked values.
            try await session.exec("DECLARE fresh CURSOR WITH HOLD FOR SELECT notes FROM test_schema.employees ORDER BY id")
            #expect(try await session.exec("FETCH 1 FROM fresh").string(0, 0) == "REDACTED")
        }
    }

    /// A cursor's name executed through the protocol, behind another message (no context read
    /// possible there) after the masking changed: a portal no Bind of the session opened under
    /// the current masking is not read; the session ends instead.
    @Test func aCursorExecutedThroughTheProtocolAfterAMaskingChangeIsNotRead() async throws {
        try await withMaskedSetup { environment, proxy, database, roles in
            _ = try await Shell.psql(environment.directTarget(database: database),
                                     "GRANT USAGE ON SCHEMA test_schema TO auth_trust; GRANT SELECT ON test_schema.employees TO auth_trust;")
            let exempt = roles.exempt
            let answers = try await offPool { () -> [BackendMessage] in
                let raw = try RawConnection(port: proxy.port)
                _ = try raw.startTrusted(user: "auth_trust", database: database)
                try raw.send(.query("DECLARE held CURSOR WITH HOLD FOR SELECT notes FROM test_schema.employees ORDER BY id"))
                _ = try raw.receive(until: .readyForQuery)
                try self.maskNotesToo(proxy, exempt: exempt)
                try raw.send(.describe(.portal("elsewhere")))
                try raw.send(.execute(portal: "held", maxRows: 0))
                try raw.send(.sync)
                var answers: [BackendMessage] = []
                while let message = try? raw.receive() { answers.append(message) }
                return answers
            }
            let rows = answers.filter { if case .dataRow = $0 { return true } else { return false } }
            #expect(rows.isEmpty, "\(answers)")
            #expect(answers.contains { if case .errorResponse(let fields) = $0 { return fields.sqlState == "57P01" } else { return false } }, "\(answers)")
        }
    }

    /// An exempt membership taken away while a session is open: the session's next statement
    /// after the context's age (2 s) is masked, without any policy reload.
    @Test func aRevokedExemptionMasksTheSessionWithoutAReload() async throws {
        try await withMaskedSetup { environment, proxy, database, roles in
            let direct = environment.directTarget(database: database)
            _ = try await Shell.psql(direct, "GRANT USAGE ON SCHEMA test_schema TO auth_trust; GRANT SELECT ON test_schema.employees TO auth_trust; GRANT \(roles.exempt) TO auth_trust;")
            let exempt = roles.exempt
            let (before, after) = try await offPool { () -> ([BackendMessage], [BackendMessage]) in
                let raw = try RawConnection(port: proxy.port)
                _ = try raw.startTrusted(user: "auth_trust", database: database)
                try raw.send(.query("SELECT email FROM test_schema.employees WHERE id = 1"))
                let before = try raw.receive(until: .readyForQuery)
                // A statement prepared while exempt (read by nobody), bound after the revoke.
                try raw.send(.parse(.init(statementName: "while_exempt", query: "SELECT email FROM test_schema.employees WHERE id = 1", parameterTypes: [])))
                try raw.send(.sync)
                _ = try raw.receive(until: .readyForQuery)
                let revoke = try ChildProcess("/usr/bin/psql", ["-X", "-q", "-d", direct, "-c", "REVOKE \(exempt) FROM auth_trust"])
                revoke.waitUntilExit()
                Thread.sleep(forTimeInterval: 2.3)
                try raw.send(.bind(.init(portalName: "", statementName: "while_exempt", parameterFormats: [], parameters: [], resultFormats: [])))
                try raw.send(.execute(portal: "", maxRows: 0))
                try raw.send(.sync)
                var after = try raw.receive(until: .readyForQuery)
                try raw.send(.query("SELECT email FROM test_schema.employees WHERE id = 1"))
                after += try raw.receive(until: .readyForQuery)
                return (before, after)
            }
            let rows = { (messages: [BackendMessage]) in
                messages.compactMap { message -> String? in
                    if case .dataRow(let row) = message { return row.bytes.getString(at: row.bytes.readerIndex + 4, length: row.bytes.readableBytes - 4) }
                    return nil
                }
            }
            #expect(rows(before) == ["CANARY-EMAIL-9d1f1@example.com"], "\(before)")
            #expect(rows(after) == ["C***@example.com"], "\(after)")
        }
    }

    /// A superuser demoted while its session is open: the server takes its powers away at once
    /// but reports nothing (is_superuser stays on). The proxy asks the catalog again when its
    /// last read is old, at a statement as at a Bind (round 17: the open session read real values).
    @Test func aDemotedSuperusersOpenSessionIsMasked() async throws {
        try await withMaskedSetup { environment, proxy, database, roles in
            let admin = try await PQConnection.connect(environment.directTarget())
            try await admin.exec("ALTER ROLE \(roles.masked) SUPERUSER")
            let session = try await PQConnection.connect(environment.throughProxy(proxy.port, user: roles.masked, password: "pw", database: database))
            #expect(try await session.exec("SELECT email FROM test_schema.employees WHERE id = 1").string(0, 0) == "CANARY-EMAIL-9d1f1@example.com")
            try await session.prepare(name: "email_of", "SELECT email FROM test_schema.employees WHERE id = $1")
            #expect(try await session.executePrepared(name: "email_of", ["1"]).string(0, 0) == "CANARY-EMAIL-9d1f1@example.com")
            try await admin.exec("ALTER ROLE \(roles.masked) NOSUPERUSER")
            try await Task.sleep(for: .milliseconds(2200))
            // A driver that only binds and executes: the statement prepared while a superuser is refused.
            do {
                let result = try await session.executePrepared(name: "email_of", ["1"])
                Issue.record("a statement prepared as a superuser ran after the demotion: \(result.strings)")
            } catch let error as PQError {
                #expect(error.sqlState == "42501", "\(error.message)")
            }
            #expect(try await session.exec("SELECT email FROM test_schema.employees WHERE id = 1").string(0, 0) == "C***@example.com")
        }
    }

    /// SET TRANSACTION must be its transaction's first statement: the proxy's own read of an old
    /// context must not go before it (round 19: 25001 after BEGIN and a pause).
    @Test func setTransactionAfterAPauseRuns() async throws {
        try await withMaskedSetup { environment, proxy, database, roles in
            let session = try await PQConnection.connect(environment.throughProxy(proxy.port, user: roles.masked, password: "pw", database: database))
            try await session.exec("BEGIN")
            try await Task.sleep(for: .milliseconds(2200))
            try await session.exec("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            #expect(try await session.exec("SHOW transaction_isolation").string(0, 0) == "repeatable read")
            #expect(try await session.exec("SELECT email FROM test_schema.employees WHERE id = 1").string(0, 0) == "C***@example.com")
            try await session.exec("COMMIT")
        }
    }

    /// A statement prepared with the protocol (a driver's prepare(name=)) may be run with SQL
    /// EXECUTE, as on the server: it was read masked (asyncpg's test_prepare_explicitly_named).
    @Test func aProtocolPreparedStatementRunsWithSQLExecute() async throws {
        try await withMaskedSetup { environment, proxy, database, roles in
            let session = try await PQConnection.connect(environment.throughProxy(proxy.port, user: roles.masked, password: "pw", database: database))
            try await session.prepare(name: "email_of_one", "SELECT email FROM test_schema.employees WHERE id = 1")
            let masked = try await session.exec("EXECUTE email_of_one").string(0, 0)
            #expect(masked == "C***@example.com", "\(masked)")
            try await session.exec("DEALLOCATE email_of_one")
            try await session.prepare(name: "email_of_one", "SELECT 'again'")
            #expect(try await session.exec("EXECUTE email_of_one").string(0, 0) == "again")
        }
    }

    /// A statement prepared while masked under one set of policies carries that rewrite: when the
    /// policies change, running it again (protocol-level Bind/Execute, or SQL-level EXECUTE) would
    /// show a column the new policy masks. It is refused until prepared again.
    @Test func statementsPreparedUnderOlderPoliciesMustBePreparedAgain() async throws {
        try await withMaskedSetup { environment, proxy, database, roles in
            let session = try await PQConnection.connect(environment.throughProxy(proxy.port, user: roles.masked, password: "pw", database: database))
            try await session.prepare(name: "notes_of", "SELECT notes FROM test_schema.employees WHERE id = $1")
            #expect(try await session.executePrepared(name: "notes_of", ["1"]).string(0, 0) == "note 1")
            try await session.exec("PREPARE sql_notes AS SELECT notes FROM test_schema.employees WHERE id = 1")
            #expect(try await session.exec("EXECUTE sql_notes").string(0, 0) == "note 1")
            // The server keeps names by their first 63 bytes: a longer name sharing them is the
            // same statement (round 17: taken for a fresh name, its refused Parse left the old one).
            let stem = String(repeating: "n", count: 63), sqlStem = String(repeating: "m", count: 63)
            try await session.prepare(name: stem + "1", "SELECT notes FROM test_schema.employees WHERE id = $1")
            #expect(try await session.executePrepared(name: stem + "1", ["1"]).string(0, 0) == "note 1")
            try await session.exec("PREPARE \(sqlStem)1 AS SELECT notes FROM test_schema.employees WHERE id = 1")
            #expect(try await session.exec("EXECUTE \(sqlStem)1").string(0, 0) == "note 1")
            try maskNotesToo(proxy, exempt: roles.exempt)
            try await session.prepare(name: stem + "2", "SELECT 'long name, new statement' WHERE $1::int > 0")
            #expect(try await session.executePrepared(name: stem + "2", ["1"]).string(0, 0) == "long name, new statement")
            try await session.exec("PREPARE \(sqlStem)2 AS SELECT 'long SQL name'")
            #expect(try await session.exec("EXECUTE \(sqlStem)3").string(0, 0) == "long SQL name")
            // A driver that only binds and executes (no Query in between) is stopped as well.
            for attempt in ["protocol", "sql"] {
                do {
                    let result = attempt == "protocol" ? try await session.executePrepared(name: "notes_of", ["1"]) : try await session.exec("EXECUTE sql_notes")
                    Issue.record("\(attempt): a statement prepared under the old policies ran: \(result.strings)")
                } catch let error as PQError {
                    #expect(error.sqlState == "42501", "\(attempt): \(error.message)")
                    #expect(error.message.contains("prepare it again"), "\(attempt): \(error.message)")
                }
            }
            // Preparing over the old names: on the server that fails while the old statement
            // exists (42P05) and kept it, which the proxy took for a fresh one. The proxy closes
            // the old one first: the names now hold the new statements, never the old ones.
            try await session.prepare(name: "notes_of", "SELECT 'new' WHERE $1::int > 0")
            #expect(try await session.executePrepared(name: "notes_of", ["1"]).string(0, 0) == "new")
            try await session.exec("PREPARE sql_notes AS SELECT 'new sql'")
            #expect(try await session.exec("EXECUTE sql_notes").string(0, 0) == "new sql")
            // Prepared again, both mask the newly masked column.
            try await session.prepare(name: "notes_of_again", "SELECT notes FROM test_schema.employees WHERE id = $1")
            #expect(try await session.executePrepared(name: "notes_of_again", ["1"]).string(0, 0) == "REDACTED")
            try await session.exec("DEALLOCATE sql_notes")
            try await session.exec("PREPARE sql_notes AS SELECT notes FROM test_schema.employees WHERE id = 1")
            #expect(try await session.exec("EXECUTE sql_notes").string(0, 0) == "REDACTED")
        }
    }

    @Test func policyChangesApplyWithoutRestartAndBadFilesKeepTheLastGoodSet() async throws {
        try await withMaskedSetup { environment, proxy, database, roles in
            let conninfo = environment.throughProxy(proxy.port, user: roles.masked, password: "pw", database: database)
            let before = try await Shell.psql(conninfo, "SELECT notes FROM test_schema.employees WHERE id = 1;")
            #expect(before.stdout == "note 1\n")
            // A broken file: rejected, masking stays on.
            let directory = try #require(proxy.server.policies.directory)
            try "policies:\n  - table: nodot\n".write(toFile: directory + "/broken.yaml", atomically: true, encoding: .utf8)
            #expect(proxy.server.policies.reload() != nil)
            let still = try await Shell.psql(conninfo, "SELECT email FROM test_schema.employees WHERE id = 1;")
            #expect(still.stdout == "C***@example.com\n")
            try FileManager.default.removeItem(atPath: directory + "/broken.yaml")
            // Add notes to the policy: new sessions and existing ones follow.
            try maskNotesToo(proxy, exempt: roles.exempt)
            let after = try await Shell.psql(conninfo, "SELECT notes, full_name FROM test_schema.employees WHERE id = 1;")
            #expect(after.stdout == "REDACTED|CANARY-NAME-4b7e 1\n", "\(after.stderr)")
        }
    }
}
