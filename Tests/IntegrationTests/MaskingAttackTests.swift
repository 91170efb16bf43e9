import Foundation
import Masking
import NIOCore
import PQ
import PostgresWire
import Proxy
import Testing

/// Attacks a masked role can make with psql, the ordinary drivers and a schema of its own,
/// one test per class of the sound-masking issue. Sensitive columns hold canaries; nothing a
/// masked session receives may contain one. Each runs with the server backstop and, where the
/// rewrite alone must hold, without it.
@Suite struct MaskingAttackTests {
    static let canaries = ["CANARY-SSN-a41c", "CANARY-MAIL-0f3e", "CANARY-LEAD-9d2b"]

    static func setup(_ role: (String) -> String) -> String {
        """
        GRANT \(role("reporting")) TO \(role("alice"));
        GRANT \(role("analysts")) TO \(role("alice"));
        CREATE SCHEMA sec;
        CREATE TABLE sec.emp (id int PRIMARY KEY, name text, ssn text, email text);
        INSERT INTO sec.emp SELECT g, 'name ' || g, 'CANARY-SSN-a41c-' || g, 'CANARY-MAIL-0f3e-' || g || '@example.com' FROM generate_series(1, 5) g;
        CREATE TABLE sec.leads (id int, secret text);
        INSERT INTO sec.leads VALUES (1, 'CANARY-LEAD-9d2b');
        CREATE TABLE sec.events (id int, ssn text) PARTITION BY RANGE (id);
        CREATE TABLE sec.events_1 PARTITION OF sec.events FOR VALUES FROM (0) TO (100);
        INSERT INTO sec.events VALUES (1, 'CANARY-SSN-a41c-event');
        GRANT USAGE ON SCHEMA sec TO PUBLIC;
        GRANT SELECT ON ALL TABLES IN SCHEMA sec TO \(role("masked")), \(role("exempt")), \(role("reporting"));
        GRANT UPDATE ON sec.emp TO \(role("masked"));
        CREATE SCHEMA own AUTHORIZATION \(role("masked"));
        CREATE TABLE own.emp (id int, ssn text, email text);
        ALTER TABLE own.emp OWNER TO \(role("masked"));
        -- auth_trust (the raw-protocol client's role) is masked too, with a shadow table of its own.
        CREATE SCHEMA trust AUTHORIZATION auth_trust;
        CREATE TABLE trust.emp (id int, ssn text, email text);
        ALTER TABLE trust.emp OWNER TO auth_trust;
        GRANT SELECT ON sec.emp TO auth_trust;
        """
    }

    static func policies(_ role: (String) -> String) -> String {
        """
        policies:
          - table: sec.emp
            unmasked_roles: [\(role("exempt"))]
            columns:
              ssn: "null"
              email: email
          - table: sec.leads
            unmasked_roles: []
            masked_roles: [\(role("analysts"))]
            columns:
              secret: { type: constant, value: hidden }
          - table: sec.events_1
            unmasked_roles: []
            columns:
              ssn: "null"
        """
    }

    /// A policy file with one table, masking its columns (`name: strategy` YAML lines) for one role.
    static func onePolicy(_ table: String, maskedRole: String, columns: [String]) -> String {
        """
        policies:
          - table: \(table)
            unmasked_roles: []
            masked_roles: [\(maskedRole)]
            columns:
        \(columns.map { "      " + $0 }.joined(separator: "\n"))
        """
    }

    static let roles = ["masked", "exempt", "analysts", "reporting", "alice"]

    private func withAttackSetup(backstop: Bool = true, readsStateDatabase: Bool = false, backend: String? = nil,
                                 _ body: (MaskedDatabase) async throws -> Void) async throws {
        try await TargetRoles.ensure()
        try await MaskedDatabase.with(roles: Self.roles, setup: { Self.setup($0) }, policies: { Self.policies($0) }, backstop: backstop,
                                      readsStateDatabase: readsStateDatabase, backend: backend, body)
    }

    /// The same over protocol answers: every byte of their rows, and their errors' texts (a
    /// message's own description shows no row content).
    private func assertNoCanary(_ answers: [[BackendMessage]], _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let text = answers.joined().map { message -> String in
            switch message {
            case .dataRow(let row): return String(decoding: row.bytes.readableBytesView, as: UTF8.self)
            case .errorResponse(let fields), .noticeResponse(let fields):
                return [ErrorFields.Code.message, ErrorFields.Code.detail, ErrorFields.Code.hint].compactMap { fields[$0] }.joined(separator: " ")
            default: return ""
            }
        }.joined(separator: " ")
        assertNoCanary(text, what, sourceLocation: sourceLocation)
    }

    private func assertNoCanary(_ text: String, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        for canary in Self.canaries where text.contains(canary) {
            Issue.record("\(what) leaked \(canary): \(text.prefix(400))", sourceLocation: sourceLocation)
        }
    }

    /// Everything psql prints (rows, notices, errors) for `sql` sent as one Query message.
    private func psql(_ conninfo: String, _ sql: String) async throws -> String {
        let output = try await Shell.run(["psql", "-X", "-A", "-t", "-v", "VERBOSITY=verbose", "-d", conninfo, "-c", sql])
        return output.stdout + output.stderr
    }

    /// Each statement, sent as one Query message, is refused with 42501 and shows no canary.
    private func expectRefused(_ conninfo: String, _ statements: [String], sourceLocation: SourceLocation = #_sourceLocation) async throws {
        for sql in statements {
            let output = try await psql(conninfo, sql)
            assertNoCanary(output, sql, sourceLocation: sourceLocation)
            #expect(output.contains("ERROR:  42501"), "\(sql): \(output)", sourceLocation: sourceLocation)
        }
    }

    // MARK: - 1. The admin-call shortcut

    static let adminShortcuts = [
        "SELECT upper(ssn), email FROM sec.emp -- pgclone",
        "SELECT upper(ssn) AS pgclone, email FROM sec.emp",
        "/* PGCLONE */ SELECT ssn, email FROM sec.emp",
        "SELECT ssn FROM sec.emp WHERE 'pgclone.version()' <> ''",
        "DO $$ BEGIN RAISE NOTICE '%', (SELECT string_agg(ssn, ',') FROM sec.emp); END $$ -- pgclone",
    ]

    @Test(arguments: [false, true])
    func mentioningPgcloneDoesNotUnmask(backstop: Bool) async throws {
        try await withAttackSetup(backstop: backstop) { db in
            let conninfo = db.proxyInfo(db.role("masked"))
            for sql in Self.adminShortcuts {
                assertNoCanary(try await psql(conninfo, sql), "simple: \(sql)")
            }
            // Extended protocol (unnamed and prepared statements), text and binary results.
            let script = """
                import psycopg, sys
                with psycopg.connect(autocommit=True) as c:
                    for sql in sys.argv[1:]:
                        for binary in (False, True):
                            for prepare in (False, True):
                                try:
                                    print(c.cursor(binary=binary).execute(sql.replace('%', '%%'), prepare=prepare).fetchall())
                                except Exception as e:
                                    print("error", e)
                """
            let output = try await Shell.run(["python3", "-c", script] + Self.adminShortcuts.filter { !$0.hasPrefix("DO") }, environment: [
                "PGHOST": "127.0.0.1", "PGPORT": "\(db.proxy.port)", "PGUSER": db.role("masked"), "PGPASSWORD": "pw",
                "PGDATABASE": db.database, "PGSSLMODE": "disable",
            ])
            #expect(output.status == 0, "\(output.stderr)")
            assertNoCanary(output.stdout + output.stderr, "psycopg")
        }
    }

    // MARK: - 2. Session state changed where the proxy might not see it

    static let sessionStateAttacks = [
        "SET SCHEMA 'sec'; SELECT ssn, email FROM emp",
        "SET search_path = sec, public; SELECT ssn, email FROM emp",
        "SELECT set_config('search_path', 'sec', false); SELECT ssn, email FROM emp",
        "RESET ALL; SELECT ssn, email FROM sec.emp",
        "DISCARD TEMP; SELECT ssn, email FROM sec.emp",
        "BEGIN; SET LOCAL search_path = sec; SELECT ssn FROM emp; END; SELECT email FROM sec.emp",
    ]

    @Test(arguments: [false, true])
    func sessionStateChangedInTheSameMessageDoesNotUnmask(backstop: Bool) async throws {
        try await withAttackSetup(backstop: backstop) { db in
            let conninfo = db.proxyInfo(db.role("masked"))
            for sql in Self.sessionStateAttacks {
                assertNoCanary(try await psql(conninfo, sql), sql)
            }
            // Unqualified names after a search_path change in the same text are read conservatively:
            // masked, not refused.
            let output = try await psql(conninfo, "SET search_path = sec, public; SELECT email FROM emp WHERE id = 1")
            #expect(output.contains("C***@example.com"), "\(output)")
            // A statement_timeout too short for anything cannot stop the proxy's read (and a read that
            // failed would refuse, never relay).
            // (The client's own statement may run out of its millisecond on a busy machine: that
            // is the server's timeout, tried again; the proxy's read must never be what fails.)
            var answered = false
            for _ in 0..<10 where !answered {
                let hurried = try await Shell.run(["psql", "-X", "-A", "-t", "-d", db.proxyInfo(db.role("masked"), extra: "options='-c statement_timeout=1'"),
                                                   "-c", "SELECT email FROM sec.emp WHERE id = 2"])
                assertNoCanary(hurried.stdout + hurried.stderr, "statement_timeout=1")
                #expect(!hurried.stderr.contains("cannot determine masking"), "\(hurried.stderr)")
                answered = hurried.stdout == "C***@example.com\n"
            }
            #expect(answered)
        }
    }

    /// psycopg pipelines a SET and a parameterised statement: the statement cannot wait for a
    /// read, so it is masked under the worst case (it was refused, and the session killed).
    @Test func aPipelineWithASettingThenAStatementIsMaskedNotRefused() async throws {
        try await withAttackSetup { db in
            let script = """
                import psycopg
                with psycopg.connect(autocommit=True) as c:
                    with c.pipeline():
                        c.execute("SET search_path = sec, public")
                        cur = c.execute("SELECT email, ssn FROM emp WHERE id = %s", [3])
                    print(cur.fetchall())
                    print(c.execute("SELECT email FROM sec.emp WHERE id = %s", [4]).fetchall())
                """
            let output = try await Shell.run(["python3", "-c", script], environment: [
                "PGHOST": "127.0.0.1", "PGPORT": "\(db.proxy.port)", "PGUSER": db.role("masked"), "PGPASSWORD": "pw",
                "PGDATABASE": db.database, "PGSSLMODE": "disable",
            ])
            #expect(output.status == 0, "\(output.stderr)")
            #expect(output.stdout == "[('C***@example.com', None)]\n[('C***@example.com',)]\n", "\(output.stdout)")
            assertNoCanary(output.stdout + output.stderr, "pipeline")
        }
    }

    // MARK: - 3. Reading a statement as the server does

    @Test(arguments: [false, true])
    func stringsAndEncodingsAreReadAsTheServerReadsThem(backstop: Bool) async throws {
        try await withAttackSetup(backstop: backstop) { db in
            let conninfo = db.proxyInfo(db.role("masked"))
            // standard_conforming_strings off: 'a\' , ' is one string to the server.
            let escaped = try await psql(conninfo, "SET standard_conforming_strings = off")
            #expect(!escaped.contains("ERROR"), "\(escaped)")
            let session = try await db.throughProxy(db.role("masked"))
            try await session.exec("SET standard_conforming_strings = off")
            do {
                let result = try await session.exec("SELECT 'a\\' , ' , upper(ssn), email FROM sec.emp --'")
                assertNoCanary(result.strings.compactMap { $0 }.joined(separator: " "), "standard_conforming_strings off")
            } catch let error as PQError {
                #expect(error.sqlState == "42501", "\(error.message)")
                assertNoCanary(error.message, "standard_conforming_strings off")
            }
            // A comment right before the table name.
            assertNoCanary(try await psql(conninfo, "SELECT * FROM -- only\n sec.emp"), "comment before the name")
            assertNoCanary(try await psql(conninfo, "SELECT * FROM /* ONLY */ sec . /* x */ emp"), "comments around the dot")
            // Unicode-escaped names.
            let unicode = try await psql(conninfo, #"SELECT email FROM U&"s\0065c".U&"em\0070" WHERE id = 1"#)
            #expect(unicode.contains("C***@example.com"), "\(unicode)")
            // Encodings whose multibyte characters contain ASCII bytes: SJIS 0x95 0x5C is one character.
            let sjis = Array("SELECT '".utf8) + [0x95, 0x5C] + Array("' , ssn, email FROM sec.emp --'".utf8) + [0]
            let raw = try await offPool { () -> [BackendMessage] in
                let connection = try RawConnection(port: db.proxy.port)
                _ = try connection.startTrusted(user: "auth_trust", database: db.database)
                try connection.send(.query("SET client_encoding = 'SJIS'"))
                _ = try connection.receive(until: .readyForQuery)
                var buffer = ByteBuffer()
                buffer.writeInteger(UInt8(ascii: "Q"))
                buffer.writeInteger(Int32(4 + sjis.count))
                buffer.writeBytes(sjis)
                try connection.send(buffer)
                return try connection.receive(until: .readyForQuery)
            }
            assertNoCanary([raw], "SJIS")
            #expect(raw.contains { if case .errorResponse = $0 { true } else { false } }, "\(raw)")
            // LATIN1 text is read and sent back in LATIN1, unchanged.
            let latin1 = try await Shell.run(["psql", "-X", "-A", "-t", "-d", conninfo, "-c", "SELECT 'caf\u{e9}' AS word, email FROM sec.emp WHERE id = 1"],
                                             environment: ["PGCLIENTENCODING": "LATIN1"])
            #expect(latin1.status == 0, "\(latin1.stderr)")
            assertNoCanary(latin1.stdout, "LATIN1")
        }
    }

    // MARK: - 4. Functions that run SQL text or read tables dynamically

    @Test(arguments: [false, true])
    func functionsThatReadWhatNoStatementNamesGetNothing(backstop: Bool) async throws {
        try await withAttackSetup(backstop: backstop) { db in
            let superuser = try await db.direct()
            try await superuser.exec("CREATE EXTENSION IF NOT EXISTS tablefunc")
            // The masked role's own schema: a function that reads the table through dynamic SQL,
            // created straight on the server (the proxy refuses CREATE FUNCTION from masked roles).
            let own = try await db.direct(db.role("masked"))
            try await own.exec("""
                CREATE FUNCTION own.peek(col text) RETURNS SETOF text LANGUAGE plpgsql AS $$
                BEGIN RETURN QUERY EXECUTE format('SELECT %I::text FROM sec.emp', col); END $$
                """)
            let conninfo = db.proxyInfo(db.role("masked"))
            try await expectRefused(conninfo, [
                "SELECT * FROM own.peek('ssn')",
                "SELECT ts_rewrite('a'::tsquery, 'SELECT ssn::tsquery, ''b''::tsquery FROM sec.emp')",
                "SELECT * FROM crosstab('SELECT id::text, ''k'', ssn FROM sec.emp') AS ct(id text, v text)",
                "SELECT query_to_xml('SELECT ssn FROM sec.emp', true, false, '')",
                "SELECT * FROM ts_stat('SELECT to_tsvector(ssn) FROM sec.emp')",
            ])
        }
    }

    // MARK: - 5. What masked roles must still be able to do

    /// Ordinary reporting queries of a masked role just work, masked (they were refused once).
    @Test(arguments: [false, true])
    func ordinaryQueriesOfAMaskedRoleWork(backstop: Bool) async throws {
        try await withAttackSetup(backstop: backstop) { db in
            let superuser = try await db.direct()
            try await superuser.exec("CREATE VIEW sec.names AS SELECT id, name FROM sec.emp; GRANT SELECT ON sec.names TO \(db.role("masked"))")
            if backstop { await db.proxy.backstop?.reconcile(database: db.database) }
            let session = try await db.throughProxy(db.role("masked"))
            let expectations: [(String, String?)] = [
                ("SELECT count(*) FROM sec.emp TABLESAMPLE BERNOULLI (100)", "5"),
                ("SELECT count(*) FROM sec.emp AS e TABLESAMPLE SYSTEM (100) WHERE e.id > 0", "5"),
                ("SELECT count(*) FROM ONLY sec.emp", "5"),
                ("SELECT count(*) FROM ONLY (sec.emp) WHERE ssn IS NULL", "5"),
                ("SELECT count(*) FROM sec.emp *", "5"),
                ("SELECT sec.emp.email FROM sec.emp WHERE sec.emp.id = 1", "C***@example.com"),
                ("SELECT upper(name) || length(email) FROM sec.emp WHERE id = 2", "NAME 216"),
                ("SELECT name FROM sec.names WHERE id = 3", "name 3"),
                ("SELECT e.email FROM sec.emp e JOIN sec.names n USING (id) WHERE n.id = 4", "C***@example.com"),
                ("SELECT count(*) OVER () FROM sec.emp LIMIT 1", "5"),
            ]
            for (sql, expected) in expectations {
                do {
                    let result = try await session.exec(sql)
                    #expect(result.string(0, 0) == expected, "\(sql)")
                    assertNoCanary(result.strings.compactMap { $0 }.joined(separator: " "), sql)
                } catch {
                    Issue.record("\(sql): \(error)")
                }
            }
            // A failed transaction ends with ROLLBACK over the extended protocol too.
            let script = """
                import psycopg
                with psycopg.connect() as c:
                    try:
                        c.execute("SELECT 1/0")
                    except Exception as e:
                        print("failed:", type(e).__name__)
                    c.rollback()
                    print(c.execute("SELECT email FROM sec.emp WHERE id = %s", [5]).fetchall())
                """
            let output = try await Shell.run(["python3", "-c", script], environment: [
                "PGHOST": "127.0.0.1", "PGPORT": "\(db.proxy.port)", "PGUSER": db.role("masked"), "PGPASSWORD": "pw",
                "PGDATABASE": db.database, "PGSSLMODE": "disable",
            ])
            #expect(output.stdout == "failed: DivisionByZero\n[('C***@example.com',)]\n", "\(output.stdout)\(output.stderr)")
        }
    }

    // MARK: - Found by attacking the build

    /// A setting changed inside a transaction reverts at ROLLBACK, which the server reports only
    /// at the end of that request: a statement pipelined right behind the ROLLBACK is read as if
    /// the setting were still changing (a backslash is refused), never with the old value.
    @Test(arguments: [false, true])
    func aSettingRevertedByRollbackIsNotReadWithItsOldValue(backstop: Bool) async throws {
        try await withAttackSetup(backstop: backstop) { db in
            let script = #"""
                import psycopg
                c = psycopg.connect(options="-c standard_conforming_strings=off", autocommit=True)
                c.execute("BEGIN"); c.execute("SET standard_conforming_strings = on"); c.execute("SELECT 1")
                try:
                    with c.pipeline():
                        c.execute("ROLLBACK")
                        cur = c.execute("SELECT 'x\\'' AS a, ssn || '' AS b, email || '' AS e FROM sec.emp -- '")
                    print(cur.fetchall())
                except Exception as e:
                    print("refused:", e)
                """#
            let output = try await Shell.run(["python3", "-c", script], environment: [
                "PGHOST": "127.0.0.1", "PGPORT": "\(db.proxy.port)", "PGUSER": db.role("masked"), "PGPASSWORD": "pw",
                "PGDATABASE": db.database, "PGSSLMODE": "disable",
            ])
            assertNoCanary(output.stdout + output.stderr, "rolled-back setting")
            #expect(output.stdout.hasPrefix("refused:"), "\(output.stdout)\(output.stderr)")
        }
    }

    /// PostgreSQL plans a prepared statement again when search_path changes: one prepared while a
    /// name resolved to the role's own table must not run once it resolves to the masked one.
    @Test(arguments: [false, true])
    func preparedStatementsDoNotOutliveANameChange(backstop: Bool) async throws {
        try await withAttackSetup(backstop: backstop) { db in
            let session = try await db.throughProxy(db.role("masked"))
            try await session.exec("SET search_path = own, sec")
            try await session.exec("PREPARE p AS SELECT ssn || '' AS s, email || '' AS e FROM emp")
            for attempt in ["SET search_path = sec, own; EXECUTE p", "EXECUTE p", "CREATE TABLE own.loot AS EXECUTE p", "EXPLAIN ANALYZE EXECUTE p"] {
                do {
                    let result = try await session.exec(attempt)
                    assertNoCanary(result.strings.compactMap { $0 }.joined(separator: " "), attempt)
                    Issue.record("\(attempt) ran: \(result.strings)")
                } catch let error as PQError {
                    #expect(error.sqlState == "42501", "\(attempt): \(error.message)")
                }
                if attempt.hasPrefix("SET") { try await session.exec("SET search_path = sec, own") }
            }
            // The extended protocol, one batch, no Describe (so no result description to check).
            let answer = try await offPool { () -> [BackendMessage] in
                let raw = try RawConnection(port: db.proxy.port)
                _ = try raw.startTrusted(user: "auth_trust", database: db.database)
                try raw.send(.query("SET search_path = trust, sec"))
                _ = try raw.receive(until: .readyForQuery)
                for message: FrontendMessage in [
                    .parse(.init(statementName: "s1", query: "SELECT ssn || '' FROM emp", parameterTypes: [])),
                    .bind(.init(portalName: "", statementName: "s1", parameterFormats: [], parameters: [], resultFormats: [])),
                    .execute(portal: "", maxRows: 0),
                    .parse(.init(statementName: "", query: "SET search_path = sec, trust", parameterTypes: [])),
                    .bind(.init(portalName: "", statementName: "", parameterFormats: [], parameters: [], resultFormats: [])),
                    .execute(portal: "", maxRows: 0),
                    .bind(.init(portalName: "", statementName: "s1", parameterFormats: [], parameters: [], resultFormats: [])),
                    .execute(portal: "", maxRows: 0),
                    .sync,
                ] { try raw.send(message) }
                return try raw.receive(until: .readyForQuery)
            }
            assertNoCanary([answer], "protocol-level prepared statement")
            #expect(answer.contains { if case .errorResponse(let fields) = $0 { fields.sqlState == "42501" } else { false } }, "\(answer)")
        }
    }

    /// Writes nested in a CTE, PREPARE or COPY, and MERGE: their RETURNING, WHERE and conditions
    /// would read the table itself.
    @Test(arguments: [false, true])
    func nestedWritesReadNothingSensitive(backstop: Bool) async throws {
        try await withAttackSetup(backstop: backstop) { db in
            let conninfo = db.proxyInfo(db.role("masked"))
            try await expectRefused(conninfo, [
                "WITH u AS (UPDATE sec.emp SET id = id RETURNING ssn || '' AS s, email || '' AS e) SELECT * FROM u",
                "PREPARE u AS UPDATE sec.emp SET id = id RETURNING ssn || '' AS s; EXECUTE u",
                "COPY (UPDATE sec.emp SET id = id RETURNING *) TO STDOUT",
                "PREPARE m AS MERGE INTO sec.emp t USING (SELECT 1 AS id) s ON t.id = s.id WHEN MATCHED AND t.ssn LIKE 'CANARY%' THEN UPDATE SET id = t.id; EXECUTE m",
            ])
        }
    }

    /// MERGE is a write like the others: its source is read masked, and a masked target is refused
    /// where only the rewrite protects it, and left to the server's privileges where they do
    /// (round 15: MERGE was refused at the top level and allowed through PREPARE).
    @Test(arguments: [false, true])
    func mergeReadsItsSourceMasked(backstop: Bool) async throws {
        try await withAttackSetup(backstop: backstop) { db in
            let conninfo = db.proxyInfo(db.role("masked"))
            let output = try await Shell.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo,
                                              "-c", "MERGE INTO own.emp o USING sec.emp s ON o.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.ssn, s.email)",
                                              "-c", "SELECT count(*) || ':' || count(ssn) || ':' || min(email) FROM own.emp"])
            let text = output.stdout + output.stderr
            assertNoCanary(text, "MERGE from a masked table")
            #expect(output.status == 0, "\(text)")
            #expect(text.contains("5:0:C***@example.com\n"), "\(text)")
            try await expectRefused(conninfo, ["MERGE INTO sec.emp t USING (SELECT 1 AS id) s ON t.id = s.id WHEN MATCHED AND t.ssn LIKE 'CANARY%' THEN UPDATE SET id = t.id"])
        }
    }

    /// A masked role's own definitions run (as DDL through any driver does); what they define
    /// holds or shows masked values: a temporary table shadowing a masked one (and dropped
    /// again), a table made AS a query, SELECT INTO, a view over a masked table.
    @Test(arguments: [false, true])
    func definitionsOfAMaskedRoleRunAndHoldMaskedValues(backstop: Bool) async throws {
        try await withAttackSetup(backstop: backstop) { db in
            let conninfo = db.proxyInfo(db.role("masked"))
            let statements = [
                "SET search_path = sec, own",
                "SELECT 1 AS id, 'x'::text AS ssn INTO TEMP TABLE emp",
                // Only readable code runs here (a policy on a partition relies on the rewrite):
                // a temporary table named like a masked one is read as the masked one (a view of
                // the role's own could have moved search_path unseen).
                "SELECT 'temp:' || count(*) FROM emp",
                "DROP TABLE emp",
                "SELECT 'after drop:' || count(*) FROM emp WHERE ssn IS NULL",
                "CREATE TABLE own.copy AS SELECT * FROM sec.emp",
                "SELECT 'copy:' || count(*) FROM own.copy WHERE ssn IS NULL",
                "SELECT email, ssn INTO own.copy2 FROM emp",
                "SELECT 'copy2:' || count(*) FROM own.copy2 WHERE email LIKE 'C***@example.com'",
                "CREATE VIEW own.v AS SELECT id, ssn, email FROM sec.emp",
                "CREATE TEMP TABLE scratch (id int PRIMARY KEY, note text DEFAULT upper('n'))",
                "CREATE INDEX ON scratch (lower(note))",
                "DROP TABLE scratch",
                "EXPLAIN (COSTS OFF) CREATE TABLE own.copy3 AS SELECT * FROM sec.emp",
            ]
            let output = try await Shell.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo] + statements.flatMap { ["-c", $0] })
            let text = output.stdout + output.stderr
            assertNoCanary(text, "definitions")
            #expect(output.status == 0, "\(text)")
            for line in ["temp:5", "after drop:5", "copy:5", "copy2:5"] {
                #expect(text.contains(line + "\n"), "\(line) in \(text)")
            }
            // The view reads the mask view where there is one; over the table itself (the rewrite
            // alone) it is a view over sensitive columns like any other, refused.
            let view = try await psql(conninfo, "SELECT 'view:' || count(*) FROM own.v WHERE ssn IS NULL")
            assertNoCanary(view, "view")
            #expect(view.contains(backstop ? "view:5" : "own.v reads a masked table and is not allowed"), "\(view)")
            // The made relations hold masked values on the server too (read as the superuser).
            let direct = try await PQConnection.connect(db.directInfo())
            let stored = try await direct.exec("SELECT string_agg(coalesce(ssn, 'null') || coalesce(email, 'null'), ',') FROM (SELECT ssn, email FROM own.copy UNION ALL SELECT ssn, email FROM own.copy2 UNION ALL SELECT ssn, email FROM own.v) s")
            assertNoCanary(stored.string(0, 0) ?? "", "stored copies")
        }
    }

    /// Functions and views a masked role made itself (straight on the server): they run as the
    /// role, so the server refuses them where it backs the policy up; with the rewrite alone they
    /// are refused by the proxy.
    @Test(arguments: [false, true])
    func objectsOfTheRolesOwnCannotReadThroughTheProxy(backstop: Bool) async throws {
        try await withAttackSetup(backstop: backstop) { db in
            let superuser = try await db.direct()
            try await superuser.exec("CREATE EXTENSION IF NOT EXISTS tablefunc")
            let own = try await db.direct(db.role("masked"))
            try await own.exec("""
                CREATE FUNCTION own.run(q text) RETURNS SETOF record LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY EXECUTE q; END $$;
                CREATE FUNCTION own.kk() RETURNS text LANGUAGE sql AS $$ SELECT string_agg(ssn || email, ',') FROM sec.emp $$;
                CREATE VIEW own.v3 AS SELECT own.kk() AS x;
                """)
            let conninfo = db.proxyInfo(db.role("masked"))
            try await expectRefused(conninfo, [
                "SELECT * FROM own.run('SELECT ssn, email FROM sec.emp') AS t(a text, b text)",
                "SELECT * FROM own.v3",
                "SELECT * FROM connectby('sec.emp', 'ssn', 'email', 'x', 0) AS t(k text, p text, l int)",
            ])
        }
    }

    // MARK: - 6. Roles, partitions, the FunctionCall message

    /// An admin call's Parse leaves a placeholder prepared under the client's name (so that
    /// Describe answers): the client's statement with the calls replaced. It was sent unmasked,
    /// and a second Parse of the name, refused by the server while the placeholder held it, made
    /// the proxy bind the placeholder: real rows (round 15). The name is now freed before it is
    /// prepared again, by Parse or by PREPARE, and the placeholder itself is masked.
    @Test(arguments: [false, true])
    func anAdminCallsPlaceholderIsNoWayAroundTheMask(backstop: Bool) async throws {
        try await withAttackSetup(backstop: backstop) { db in
            let bind = FrontendMessage.bind(.init(portalName: "", statementName: "s1", parameterFormats: [], parameters: [], resultFormats: []))
            let adminText = "SELECT pgclone.policy_status() AS p, id, ssn || '' AS s, email FROM sec.emp"
            let answers = try await rawBatches(db, [
                [.parse(.init(statementName: "s1", query: adminText, parameterTypes: [])), .sync],
                [.parse(.init(statementName: "s1", query: "SELECT 'fresh s1'", parameterTypes: [])), .sync],
                [bind, .execute(portal: "", maxRows: 0), .sync],
                [bind, .describe(.portal("")), .execute(portal: "", maxRows: 0), .sync],
                // The same through SQL: PREPARE over an admin statement's name, then EXECUTE.
                [.parse(.init(statementName: "s2", query: adminText, parameterTypes: [])), .sync],
                [.query("PREPARE s2 AS SELECT 'fresh s2'")],
                [.query("EXECUTE s2")],
                [.query("CREATE TEMP TABLE loot AS EXECUTE s2")],
                [.query("SELECT * FROM loot")],
            ])
            assertNoCanary(answers, "an admin placeholder")
            for (index, answer) in answers.enumerated() { #expect(Self.errorStates(answer).isEmpty, "batch \(index): \(answer)") }
            #expect(answers.map(Self.values) == [[], [], ["fresh s1"], ["fresh s1"], [], [], ["fresh s2"], [], ["fresh s2"]], "\(answers)")
        }
    }

    /// The placeholder of an admin statement is prepared only as one plain SELECT (masked for a
    /// masked session); a PREPARE in it would leave a statement the proxy never saw, to be run
    /// after the masking changed (round 16). Once the proxy lets go of the admin statement (a
    /// DEALLOCATE it did not follow and a refused Parse of the name, a Close of another spelling
    /// of the name), a masked session cannot bind the placeholder.
    @Test(arguments: [false, true])
    func anAdminPlaceholderIsOnePlainMaskedSelect(backstop: Bool) async throws {
        try await withAttackSetup(backstop: backstop) { db in
            func parse(_ name: String, _ text: String) -> FrontendMessage { .parse(.init(statementName: name, query: text, parameterTypes: [])) }
            func bind(_ name: String) -> FrontendMessage { .bind(.init(portalName: "", statementName: name, parameterFormats: [], parameters: [], resultFormats: [])) }
            let hidden = "PREPARE q16 AS SELECT pgclone.version() AS p, id, ssn || '' AS s FROM sec.emp"
            let answers = try await rawBatches(db, [
                [parse("s1", hidden), .sync],                                                                  // 0
                [parse("s2", "SELECT pgclone.version() AS p, id, ssn || '' AS s FROM sec.emp"), .sync],        // 1
                [.query("SELECT name || '=' || statement FROM pg_prepared_statements WHERE name IN ('s1', 's2', 'q16') ORDER BY 1")],  // 2
                // DEALLOCATE (not followed), then a Parse of the name the proxy refuses.
                [.query("DEALLOCATE s1")],                                                                     // 3
                [parse("s1", hidden), .sync],                                                                  // 4
                [parse("s1", "SELECT pg_catalog.pg_read_file('/etc/hostname')"), .sync],                       // 5
                [bind("s1"), .execute(portal: "", maxRows: 0), .sync],                                         // 6
                // A Close of another spelling of an admin statement's name leaves it an admin statement.
                [parse("\u{E9}", hidden), .sync],                                                               // 7
                [.close(.statement("e\u{301}")), .sync],                                                        // 8
                [bind("\u{E9}"), .execute(portal: "", maxRows: 0), .sync],                                     // 9
                [.query("SELECT count(*) FROM pg_prepared_statements WHERE name = 'q16'")],                    // 10
            ])
            assertNoCanary(answers, "admin placeholders")
            #expect(answers.count == 11)
            guard answers.count == 11 else { return }
            // The PREPARE is not prepared; the SELECT is, masked: not the text as written.
            let prepared = Self.values(answers[2])
            #expect(prepared.first == "s1=SELECT NULL::pg_catalog.text AS pgclone", "\(prepared)")
            #expect(prepared.count == 2 && prepared[1].hasPrefix("s2=") && !prepared[1].contains("FROM sec.emp"), "\(prepared)")
            // (The name still holds the placeholder: a second Parse of it fails, as on the server.)
            #expect(Self.errorStates(answers[5]) == ["42P05"], "\(answers[5])")
            #expect(Self.errorStates(answers[6]) == ["42501"], "\(answers[6])")
            #expect(Self.values(answers[6]).isEmpty, "\(answers[6])")
            // The admin call itself is refused to a role that is no admin.
            #expect(Self.errorStates(answers[9]) == ["42501"], "\(answers[9])")
            #expect(Self.values(answers[10]) == ["0"], "\(answers[10])")
        }
    }

    /// An exemption revoked while the session keeps an extended message unsynced (a Close of no
    /// portal, then simple queries): the session was "in a batch" for good and its masking was
    /// never read again: it read real values on (round 18). The Query's ReadyForQuery ends the
    /// batch now, and the revocation is seen within the context's age.
    @Test func aBatchLeftUnsyncedDoesNotKeepAnExemption() async throws {
        try await withAttackSetup(backstop: false) { db in
            let admin = try await db.direct()
            try await admin.exec("GRANT \(db.role("exempt")) TO auth_trust")
            let port = db.proxy.port, database = db.database
            // One connection used from one task at a time, off the cooperative pool.
            final class Held: @unchecked Sendable { let raw: RawConnection; init(_ raw: RawConnection) { self.raw = raw } }
            let held = try await offPool { () -> Held in
                let raw = try RawConnection(port: port)
                _ = try raw.startTrusted(user: "auth_trust", database: database)
                return Held(raw)
            }
            @Sendable func ask(_ messages: [FrontendMessage]) async throws -> [BackendMessage] {
                try await offPool {
                    for message in messages { try held.raw.send(message) }
                    return try held.raw.receive(until: .readyForQuery)
                }
            }
            let exempt = try await ask([.query("SELECT ssn FROM sec.emp WHERE id = 1")])
            #expect(Self.values(exempt) == ["CANARY-SSN-a41c-1"], "\(exempt)")
            _ = try await ask([.close(.portal("zz")), .query("SELECT 1")])
            try await admin.exec("REVOKE \(db.role("exempt")) FROM auth_trust")
            try await Task.sleep(for: .milliseconds(2200))
            let after = try await ask([.query("SELECT coalesce(ssn, 'masked') FROM sec.emp WHERE id = 1")])
            assertNoCanary([after], "a revoked exemption behind an unsynced batch")
            #expect(Self.values(after) == ["masked"], "\(after)")
        }
    }

    /// Sends each batch (messages up to a Sync, or one Query) as auth_trust, a masked role, on
    /// one raw connection, and collects each batch's answers up to its ReadyForQuery.
    private func rawBatches(_ db: MaskedDatabase, _ batches: [[FrontendMessage]]) async throws -> [[BackendMessage]] {
        let port = db.proxy.port, database = db.database
        return try await offPool {
            let raw = try RawConnection(port: port)
            _ = try raw.startTrusted(user: "auth_trust", database: database)
            return try batches.map { batch in
                for message in batch { try raw.send(message) }
                return try raw.receive(until: .readyForQuery)
            }
        }
    }

    /// The first column of each DataRow of an answer, as text.
    private static func values(_ answer: [BackendMessage]) -> [String] {
        answer.compactMap { message -> String? in
            guard case .dataRow(let row) = message else { return nil }
            return row.bytes.getString(at: row.bytes.readerIndex + 4, length: row.bytes.readableBytes - 4)
        }
    }

    /// The SQLSTATE of each ErrorResponse of an answer.
    private static func errorStates(_ answer: [BackendMessage]) -> [String] {
        answer.compactMap { if case .errorResponse(let fields) = $0 { fields.sqlState } else { nil } }
    }

    /// A login role a policy masks (through masked_roles) stays masked after SET ROLE to a group
    /// the policy does not name; around the proxy, the group has lost the sensitive column.
    @Test func aMaskedLoginStaysMaskedAfterSetRole() async throws {
        try await withAttackSetup { db in
            let state = db.proxy.backstop?.state(of: db.database)
            #expect(state?.error == nil && state?.relations.first { $0.name == "leads" }?.enforced == true, "\(String(describing: state))")
            let session = try await db.throughProxy(db.role("alice"))
            try await session.exec("SET ROLE \(db.role("reporting"))")
            let rows = try await session.exec("SELECT secret FROM sec.leads")
            #expect(rows.string(0, 0) == "hidden", "\(rows.strings)")
            let direct = try await db.direct(db.role("alice"))
            try await direct.exec("SET ROLE \(db.role("reporting"))")
            do {
                let result = try await direct.exec("SELECT secret FROM sec.leads")
                Issue.record("the group read the sensitive column around the proxy: \(result.strings)")
            } catch let error as PQError {
                #expect(error.sqlState == "42501", "\(error.message)")
            }
            // The group itself lost it too (a masked role can act as it); its masked view remains.
            let reporting = try await db.direct(db.role("reporting"))
            #expect(try await reporting.exec("SELECT secret FROM pgclone_masked.\"sec.leads\"").string(0, 0) == "hidden")
        }
    }

    @Test(arguments: [false, true])
    func aPolicyOnAPartitionRefusesReadsThroughItsParent(backstop: Bool) async throws {
        try await withAttackSetup(backstop: backstop) { db in
            let session = try await db.throughProxy(db.role("masked"))
            #expect(try await session.exec("SELECT ssn FROM sec.events_1").string(0, 0) == nil)
            for sql in ["SELECT ssn FROM sec.events", "SELECT * FROM ONLY sec.events", "TABLE sec.events"] {
                do {
                    let result = try await session.exec(sql)
                    Issue.record("\(sql) answered: \(result.strings)")
                } catch let error as PQError {
                    #expect(error.sqlState == "42501", "\(sql): \(error.message)")
                    #expect(error.message.contains("the masking policy on sec.events_1 is on a partition or inheritance child of sec.events"), "\(error.message)")
                }
            }
        }
    }

    /// The fast-path FunctionCall message as the very first message of a masked session (the
    /// proxy has not read its masking yet): refused, not relayed.
    @Test func theFunctionCallMessageFirstIsRefused() async throws {
        try await TargetRoles.ensure()
        try await withAttackSetup { db in
            let answer = try await offPool {
                let raw = try RawConnection(port: db.proxy.port)
                // auth_trust logs in without a password (the raw client speaks no SCRAM); the policy masks it.
                _ = try raw.startTrusted(user: "auth_trust", database: db.database)
                try raw.send(.functionCall(.init(functionOID: 870, argumentFormats: [0], arguments: [ByteBuffer(string: "X")], resultFormat: 0)))
                return try raw.receive(until: .readyForQuery)
            }
            guard case .errorResponse(let fields)? = answer.first else {
                Issue.record("expected an error, got \(answer)")
                return
            }
            #expect(fields.sqlState == "42501")
            #expect(fields.message == "pgclone: the FunctionCall protocol message is not allowed for role \"auth_trust\", which is masked by a policy")
        }
    }

    // MARK: - 7. Policy sources fail closed

    /// With a wrong service password the proxy cannot read the policies stored in its state
    /// database: roles that could be masked are refused, superusers go on, policy_status says why.
    @Test func anUnreadableStateDatabaseRefusesRolesThatCouldBeMasked() async throws {
        let environment = try TestEnvironment.require()
        let wrong = "host=\(environment.host) port=\(environment.targetPort) dbname=postgres user=postgres password=wrong-\(UInt32.random(in: 0...UInt32.max)) sslmode=disable"
        try await withAttackSetup(readsStateDatabase: true, backend: wrong) { db in
            let output = try await psql(db.proxyInfo(db.role("masked")), "SELECT name FROM sec.emp WHERE id = 1")
            #expect(output.contains("ERROR:  57P03: pgclone has not yet read the masking policies stored in its state database (") && output.contains("password authentication failed"), "\(output)")
            let superuser = try await db.throughProxy()
            #expect(try await superuser.exec("SELECT 1").string(0, 0) == "1")
            let status = try await superuser.exec("SELECT DISTINCT last_error FROM pgclone.policy_status()")
            #expect(status.string(0, 0)?.hasPrefix("state database: ") == true && status.string(0, 0)?.contains("password authentication failed") == true, "\(status.strings)")
        }
    }

    @Test func anEmptyPolicyFileKeepsTheLastGoodSet() async throws {
        try await withAttackSetup(backstop: false) { db in
            for text in ["", "  \n"] {
                try text.write(toFile: db.policyDirectory + "/policies.yaml", atomically: true, encoding: .utf8)
                #expect(db.proxy.server.policies.reload()?.contains("the file is empty") == true)
                let session = try await db.throughProxy(db.role("masked"))
                #expect(try await session.exec("SELECT email FROM sec.emp WHERE id = 1").string(0, 0) == "C***@example.com")
            }
        }
    }
    // MARK: - 7. A masked owner (the rewrite alone)

    /// A table its masked role owns: the server cannot back the policy up (an owner grants itself
    /// back what is revoked), so the proxy must refuse what would read values or move them out of
    /// the policy's reach: constraints and indexes whose errors show values, a generated copy, a
    /// renamed column or table, another schema; a user function shadowing a built-in through
    /// search_path; the table's TOAST relation.
    @Test func aMaskedOwnerCannotReadItsTableThroughDefinitions() async throws {
        try await TargetRoles.ensure()
        let setup = { (role: (String) -> String) in
            """
            CREATE SCHEMA app AUTHORIZATION \(role("owner"));
            CREATE TABLE app.people (id int PRIMARY KEY, ssn text, notes text);
            INSERT INTO app.people SELECT g, 'CANARY-SSN-a41c-' || g, 'CANARY-LEAD-9d2b-' || g FROM generate_series(1, 3) g;
            ALTER TABLE app.people OWNER TO \(role("owner"));
            """
        }
        let policies = { (role: (String) -> String) in
            Self.onePolicy("app.people", maskedRole: role("owner"), columns: ["ssn: \"null\"", "notes: { type: constant, value: hidden }"])
        }
        try await MaskedDatabase.with(roles: ["owner"], setup: setup, policies: policies) { db in
            let conninfo = db.proxyInfo(db.role("owner"))
            let toast = try await db.direct().exec("SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = 'app.people'::regclass").string(0, 0) ?? ""
            // A function named like a built-in, made around the proxy (through it, CREATE FUNCTION is refused).
            try await db.direct(db.role("owner")).exec("CREATE FUNCTION app.lower(text) RETURNS text LANGUAGE sql AS $$ SELECT string_agg(ssn || notes, ',') FROM app.people $$")
            for sql in [
                "ALTER TABLE app.people ADD CONSTRAINT c1 CHECK (ssn::int > 0)",
                "ALTER TABLE app.people ALTER COLUMN ssn TYPE int USING ssn::int",
                "CREATE UNIQUE INDEX ON app.people (left(ssn, 5))",
                "ALTER TABLE app.people ADD COLUMN ssn_copy text GENERATED ALWAYS AS (ssn) STORED",
                "ALTER TABLE app.people RENAME COLUMN ssn TO ssn2",
                "ALTER TABLE app.people SET SCHEMA public",
                "SET search_path = app; ALTER TABLE people RENAME TO p2",
                "CREATE STATISTICS app.s ON id, ssn FROM app.people",
            ] {
                let output = try await psql(conninfo, sql)
                assertNoCanary(output, sql)
                #expect(output.contains("ERROR:  42501") && output.contains("on masked table app.people is not allowed"), "\(sql): \(output)")
            }
            try await expectRefused(conninfo, [
                "CREATE FUNCTION app.lower2(text) RETURNS text LANGUAGE sql AS $$ SELECT string_agg(ssn || notes, ',') FROM app.people $$",
                "SET search_path = app, pg_catalog; SELECT lower('x')",
                "SET search_path = app, pg_catalog; CREATE TABLE app.t2 (x text DEFAULT lower('x'))",
                "CREATE FUNCTION app.upper(text) RETURNS text LANGUAGE sql AS $$ SELECT string_agg(ssn || notes, ',') FROM app.people $$; SET search_path = app, pg_catalog; SELECT upper('x')",
                "ALTER SCHEMA app RENAME TO app2",
                // Its writes would read the real values (WHERE, RETURNING).
                "BEGIN; DELETE FROM app.people WHERE id = 1 RETURNING ssn || ''; ROLLBACK",
                "UPDATE app.people SET id = id WHERE ssn LIKE 'CANARY%' RETURNING id",
                "SELECT * FROM \(toast)",
                "SET search_path = pg_toast; SELECT * FROM \(toast.replacingOccurrences(of: "pg_toast.", with: ""))",
            ])
            // asyncpg reads a whole-row result (it sets jit around its type introspection).
            let script = """
                import asyncio, asyncpg
                async def main():
                    c = await asyncpg.connect(host='127.0.0.1', port=\(db.proxy.port), user='\(db.role("owner"))', password='pw', database='\(db.database)', ssl=False)
                    rows = await c.fetch("SELECT p FROM app.people p ORDER BY p.id")
                    print([tuple(r['p']) for r in rows][0])
                asyncio.run(main())
                """
            let fetched = try await Shell.run(["python3", "-c", script])
            assertNoCanary(fetched.stdout + fetched.stderr, "asyncpg whole row")
            #expect(fetched.stdout == "(1, None, 'hidden')\n", "\(fetched.stdout)\(fetched.stderr)")
            // What reads nothing still works: masked reads, the built-in by its full name, a comment, a new table.
            let output = try await psql(conninfo, "SET search_path = app, pg_catalog; SELECT count(*) || ':' || pg_catalog.lower('X') FROM app.people WHERE ssn IS NULL AND notes = 'hidden'; COMMENT ON TABLE app.people IS 'people'; CREATE TABLE app.other (id int)")
            #expect(output == "SET\n3:x\nCOMMENT\nCREATE TABLE\n", "\(output)")
        }
    }
    /// A SECURITY DEFINER function whose owner can read a sensitive column, with the server
    /// backstop in force: called directly it is refused; a function, default, trigger or DO
    /// block of the masked role's own could call it unseen, so while it exists only code the
    /// proxy can read runs for masked roles.
    @Test func aRiskyDefinerIsNotReachableThroughCodeTheProxyCannotRead() async throws {
        try await TargetRoles.ensure()
        let setup = { (role: (String) -> String) in
            """
            CREATE SCHEMA sec;
            CREATE TABLE sec.emp (id int PRIMARY KEY, name text, ssn text);
            INSERT INTO sec.emp SELECT g, 'name ' || g, 'CANARY-SSN-a41c-' || g FROM generate_series(1, 5) g;
            GRANT USAGE ON SCHEMA sec TO PUBLIC;
            GRANT SELECT ON sec.emp TO \(role("masked"));
            CREATE SCHEMA own AUTHORIZATION \(role("masked"));
            CREATE TABLE own.emp (id int, ssn text);
            ALTER TABLE own.emp OWNER TO \(role("masked"));
            CREATE FUNCTION sec.lookup(int) RETURNS text SECURITY DEFINER LANGUAGE sql AS $$ SELECT ssn FROM sec.emp WHERE id = $1 $$;
            """
        }
        let policies = { (role: (String) -> String) in
            Self.onePolicy("sec.emp", maskedRole: role("masked"), columns: ["ssn: \"null\""])
        }
        try await MaskedDatabase.with(roles: ["masked"], setup: setup, policies: policies) { db in
            let status = try await db.throughProxy().exec("SELECT server_enforced FROM pgclone.policy_status()")
            #expect(status.strings == ["yes"], "the server backs the policy up: \(status.strings)")
            // Made straight on the server by the role itself (around the proxy, where it may).
            let own = try await db.direct(db.role("masked"))
            try await own.exec("""
                CREATE FUNCTION own.wrap0(int) RETURNS text LANGUAGE sql AS $$ SELECT sec.lookup($1) $$;
                CREATE TABLE own.k (id int); INSERT INTO own.k VALUES (3);
                CREATE FUNCTION own.leak(own.k) RETURNS text LANGUAGE sql AS $$ SELECT sec.lookup($1.id) $$;
                """)
            let conninfo = db.proxyInfo(db.role("masked"))
            try await expectRefused(conninfo, [
                "SELECT sec.lookup(1)",
                "SELECT own.wrap0(1)",
                "SELECT k.leak FROM own.k k",
                "SELECT (k).leak FROM own.k k",
                "CREATE FUNCTION own.wrap(int) RETURNS text LANGUAGE sql AS $$ SELECT sec.lookup($1) $$; SELECT own.wrap(2)",
                "CREATE TABLE own.t (id int, x text DEFAULT own.wrap0(4))",
                "CREATE FUNCTION own.trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.ssn := sec.lookup(1); RETURN NEW; END $$",
                "CREATE TRIGGER t BEFORE INSERT ON own.emp FOR EACH ROW EXECUTE FUNCTION own.trg()",
                "DO $$ BEGIN RAISE NOTICE '%', sec.lookup(3); END $$",
                // What already calls own.wrap0 would run a new body unseen.
                "CREATE OR REPLACE FUNCTION own.wrap0(int) RETURNS text LANGUAGE sql AS $$ SELECT sec.lookup($1) $$",
                // A change feed's payload is whatever its trigger wrote.
                "LISTEN people_changes",
            ])
            let wrapped = try await psql(conninfo, "SELECT own.wrap0(1)")
            #expect(wrapped.contains("SECURITY DEFINER function lookup() can read sensitive columns with its owner's rights"), "\(wrapped)")
            // Built-ins and masked reads go on.
            #expect(try await psql(conninfo, "SELECT upper(name) || ':' || coalesce(ssn, 'null') FROM sec.emp WHERE id = 1") == "NAME 1:null\n")
        }
    }
    /// A session in client_encoding LATIN1 and a policy table whose name is not ASCII: the proxy
    /// reads the session's context in the session's encoding, so the table is found and masked.
    @Test func aLatin1SessionFindsAPolicyTableWithANonASCIIName() async throws {
        try await TargetRoles.ensure()
        let setup = { (role: (String) -> String) in
            """
            CREATE SCHEMA sec;
            CREATE TABLE sec."café" (id int PRIMARY KEY, ssn text);
            INSERT INTO sec."café" VALUES (1, 'CANARY-SSN-a41c-cafe');
            GRANT USAGE ON SCHEMA sec TO \(role("masked"));
            GRANT SELECT ON sec."café" TO \(role("masked"));
            """
        }
        let policies = { (role: (String) -> String) in
            Self.onePolicy("sec.café", maskedRole: role("masked"), columns: ["ssn: \"null\""])
        }
        // Around the server backstop (which would refuse the column anyway): the rewrite must hold.
        try await MaskedDatabase.with(roles: ["masked"], setup: setup, policies: policies, backstop: false) { db in
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("latin1-\(db.suffix).sql")
            var bytes = Array("SELECT coalesce(ssn, 'masked') FROM sec.\"caf".utf8)
            bytes.append(0xE9)
            bytes += Array("\";\n".utf8)
            try Data(bytes).write(to: file)
            defer { try? FileManager.default.removeItem(at: file) }
            let output = try await Shell.run(["psql", "-X", "-A", "-t", "-d", db.proxyInfo(db.role("masked")), "-f", file.path],
                                             environment: ["PGCLIENTENCODING": "LATIN1"])
            assertNoCanary(output.stdout + output.stderr, "LATIN1 session")
            #expect(output.stdout == "masked\n", "\(output.stdout)\(output.stderr)")
        }
    }
    /// A setting changed by running a prepared statement (not by parsing it), by UPDATE
    /// pg_settings, or an SQL PREPARE bound over the protocol after search_path moved: the
    /// proxy follows each, or refuses.
    @Test(arguments: [false, true])
    func settingsChangedWhenAStatementRunsAreFollowed(backstop: Bool) async throws {
        try await withAttackSetup(backstop: backstop) { db in
            let script = """
                import psycopg
                def attempt(label, run):
                    try:
                        print(label, run())
                    except Exception as e:
                        print(label, 'refused' if getattr(e, 'sqlstate', None) == '42501' else 'error ' + str(getattr(e, 'sqlstate', None)))
                with psycopg.connect(autocommit=True) as c:
                    c.execute("SELECT set_config('search_path', %s, false)", ['own, sec'], prepare=True)
                    # Binding it again (its search_path change came after it was prepared) is refused.
                    attempt('set', lambda: c.execute("SELECT set_config('search_path', %s, false)", ['sec, own'], prepare=True).fetchall())
                    attempt('run', lambda: c.execute("SELECT ssn || '' FROM emp ORDER BY id LIMIT 1").fetchall())
                    c.execute("SET search_path = own, sec")
                    attempt('settings', lambda: c.execute("UPDATE pg_settings SET setting = 'sec, own' WHERE name = 'search_path'").fetchall())
                    c.execute("SET search_path = own, sec")
                    c.execute("PREPARE p AS SELECT ssn || '' FROM emp")
                    c.execute("SET search_path = sec, own")
                    r = c.pgconn.exec_prepared(b'p', [])
                    state = r.error_field(psycopg.pq.DiagnosticField.SQLSTATE)
                    print('bind', 'refused' if state == b'42501' else [r.get_value(i, 0) for i in range(r.ntuples)])
                """
            let output = try await Shell.run(["python3", "-c", script], environment: [
                "PGHOST": "127.0.0.1", "PGPORT": "\(db.proxy.port)", "PGUSER": db.role("masked"), "PGPASSWORD": "pw",
                "PGDATABASE": db.database, "PGSSLMODE": "disable",
            ])
            assertNoCanary(output.stdout + output.stderr, "settings changed at run time")
            let lines = output.stdout.split(separator: "\n").map(String.init)
            // Masked (NULL || '' is NULL) or refused; never the canary.
            // (`emp` is taken to be the masked table: only readable code runs in this setting.)
            #expect(lines == ["set refused", "run [(None,)]", "settings refused", "bind refused"], "\(output.stdout)\(output.stderr)")
        }
    }
    /// A notification's payload is whatever a trigger wrote (a change feed's whole row): a
    /// masked session receives none, even where a DO block (allowed under the server backstop)
    /// made it listen.
    @Test func aMaskedSessionReceivesNoNotification() async throws {
        try await TargetRoles.ensure()
        let setup = { (role: (String) -> String) in
            """
            CREATE SCHEMA sec;
            CREATE TABLE sec.emp (id int PRIMARY KEY, ssn text);
            INSERT INTO sec.emp VALUES (1, 'CANARY-SSN-a41c-1');
            GRANT USAGE ON SCHEMA sec TO PUBLIC;
            GRANT SELECT, UPDATE ON sec.emp TO \(role("masked"));
            CREATE FUNCTION sec.feed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_notify('feed', row_to_json(NEW)::text); RETURN NEW; END $$;
            CREATE TRIGGER feed AFTER UPDATE ON sec.emp FOR EACH ROW EXECUTE FUNCTION sec.feed();
            """
        }
        let policies = { (role: (String) -> String) in Self.onePolicy("sec.emp", maskedRole: role("masked"), columns: ["ssn: \"null\""]) }
        try await MaskedDatabase.with(roles: ["masked"], setup: setup, policies: policies) { db in
            // A superuser listening through the proxy shows the feed does fire.
            let script = """
                import psycopg
                with psycopg.connect(autocommit=True) as c, psycopg.connect('\(db.proxyInfo())', autocommit=True) as admin:
                    admin.execute("LISTEN feed")
                    try:
                        c.execute("LISTEN feed")
                    except psycopg.errors.InsufficientPrivilege:
                        print("listen refused")
                    c.execute("DO $$ BEGIN EXECUTE 'LISTEN feed'; END $$")
                    c.execute("UPDATE sec.emp SET id = id WHERE id = 1")
                    print("notifications", [n.payload for n in c.notifies(timeout=1.5)])
                    print("admin heard", len([n for n in admin.notifies(timeout=1.5, stop_after=1)]))
                """
            let output = try await Shell.run(["python3", "-c", script], environment: [
                "PGHOST": "127.0.0.1", "PGPORT": "\(db.proxy.port)", "PGUSER": db.role("masked"), "PGPASSWORD": "pw",
                "PGDATABASE": db.database, "PGSSLMODE": "disable",
            ])
            assertNoCanary(output.stdout + output.stderr, "notifications")
            #expect(output.stdout == "listen refused\nnotifications []\nadmin heard 1\n", "\(output.stdout)\(output.stderr)")
        }
    }
}
