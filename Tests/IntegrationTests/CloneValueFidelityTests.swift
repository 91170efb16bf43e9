import Foundation
import PQ
import Testing

/// Values and definitions that came through a clone changed, or made it fail, while pg_dump
/// and pg_restore carry them (fidelity round 25): the source's output settings, its encoding,
/// reg* and aclitem columns, foreign keys to partitioned tables, tables without columns, an
/// inheritance child without a default, routines already on the target, and a verify that
/// compared by equality.
@Suite struct CloneValueFidelityTests {
    /// A source database whose DateStyle is DMY, whose zone prints an ambiguous abbreviation,
    /// whose floats are cut short and whose intervals are SQL-standard: dates, instants, floats
    /// and intervals arrive as they are, in rows copied as text (an enum column) and in the
    /// constants of defaults, checks and partition bounds.
    @Test func theSourcesOutputSettingsChangeNothing() async throws {
        let sql = """
            DO $$ BEGIN
              EXECUTE format('ALTER DATABASE %I SET datestyle = %L', current_database(), 'SQL, DMY');
              EXECUTE format('ALTER DATABASE %I SET timezone = %L', current_database(), 'Asia/Kolkata');
              EXECUTE format('ALTER DATABASE %I SET extra_float_digits = %s', current_database(), '-3');
              EXECUTE format('ALTER DATABASE %I SET intervalstyle = %L', current_database(), 'sql_standard');
            END $$;
            CREATE SCHEMA ds;
            CREATE TYPE ds.mood AS ENUM ('calm');
            CREATE TABLE ds.t (id int PRIMARY KEY, d date DEFAULT '2020-01-05', tz timestamptz, iv interval, f float8, m ds.mood,
                               CONSTRAINT not_sixth CHECK (d <> '2020-01-06'));
            INSERT INTO ds.t VALUES (1, '2020-01-05', '2020-01-05 10:00+00', '1 year 2 mons -3 days 04:05:06', 0.1234567890123456789, 'calm');
            CREATE TABLE ds.p (d date) PARTITION BY RANGE (d);
            CREATE TABLE ds.p1 PARTITION OF ds.p FOR VALUES FROM ('2020-01-05') TO ('2020-02-10');
            INSERT INTO ds.p VALUES ('2020-01-07');
            """
        try await CloneFidelityTests.withSourceDatabase(sql) { _, sourceConnInfo, _ in
            try await withGuideTarget { (target: GuideTarget) async throws in
                let result = try await target.call("SELECT pgclone.schema(\(guideSQLLiteral(sourceConnInfo)), 'ds');")
                #expect(result.hasPrefix("OK: cloned schema ds (2 tables, 2 rows,"), "\(result)")
                #expect(try await target.rows("""
                    SET DateStyle = ISO; SET IntervalStyle = postgres; SET extra_float_digits = 1;
                    SELECT d, tz AT TIME ZONE 'UTC', iv, f FROM ds.t;
                    SELECT d FROM ds.p;
                    SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'ds.t'::regclass;
                    SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'not_sixth';
                    SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE oid = 'ds.p1'::regclass;
                    """) == [
                        "2020-01-05|2020-01-05 10:00:00|1 year 2 mons -3 days +04:05:06|0.12345678901234568",
                        "2020-01-07",
                        "'2020-01-05'::date",
                        "CHECK ((d <> '2020-01-06'::date))",
                        "FOR VALUES FROM ('2020-01-05') TO ('2020-02-10')",
                    ])
            }
        }
    }

    /// A LATIN1 source: database_create makes a LATIN1 database (pg_dump -C does), and a table
    /// clone into a UTF8 database converts the text; before, LATIN1 bytes were read as UTF-8.
    @Test func textKeepsItsCharactersAcrossEncodings() async throws {
        // 'Ã©é': three characters, whose UTF-8 is c3 83 c2 a9 c3 a9.
        let setup = "CREATE TABLE public.l (t text); INSERT INTO public.l VALUES (convert_from('\\xc3a9e9'::bytea, 'LATIN1'));"
        try await Self.withSourceDatabase(encoding: "LATIN1", setup) { target, sourceConnInfo in
            #expect(try await Self.createDatabase(target, from: sourceConnInfo, check: """
                SELECT pg_encoding_to_char(encoding), datcollate FROM pg_database WHERE datname = current_database();
                SELECT length(t), encode(convert_to(t, 'UTF8'), 'hex') FROM public.l;
                """) == ["LATIN1|C", "3|c383c2a9c3a9"])
            let copied = try await target.call("SELECT pgclone.table(\(guideSQLLiteral(sourceConnInfo)), 'public', 'l');")
            #expect(copied == "OK: cloned public.l (1 row)", "\(copied)")
            #expect(try await target.rows("SELECT length(t), encode(convert_to(t, 'UTF8'), 'hex') FROM public.l;") == ["3|c383c2a9c3a9"])
        }
    }

    /// A SQL_ASCII database holds bytes in no encoding: database_create makes a SQL_ASCII
    /// database and copies them byte for byte (they were checked as UTF-8 and refused); into a
    /// UTF8 database, bytes that are not UTF-8 are refused with the server's error.
    @Test func sqlAsciiBytesPassAsTheyAre() async throws {
        let setup = "CREATE TABLE public.b (t text); INSERT INTO public.b VALUES (E'\\xe9\\xe8'), ('plain');"
        try await Self.withSourceDatabase(encoding: "SQL_ASCII", setup) { target, sourceConnInfo in
            #expect(try await Self.createDatabase(target, from: sourceConnInfo, check: """
                SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database();
                SELECT encode(t::bytea, 'hex') FROM public.b ORDER BY 1;
                """) == ["SQL_ASCII", "706c61696e", "e9e8"])
            _ = try await target.expectError("SELECT pgclone.table(\(guideSQLLiteral(sourceConnInfo)), 'public', 'b');", sqlState: "22021",
                                             message: "cloning public.b: invalid byte sequence for encoding \"UTF8\": 0xe9 0xe8", prefix: true)
        }
    }

    /// A source database in `encoding` (C locale) made by `setup`, and a guide target; both
    /// dropped afterwards.
    static func withSourceDatabase(encoding: String, _ setup: String, _ body: (GuideTarget, String) async throws -> Void) async throws {
        let environment = try TestEnvironment.require()
        let name = "encoded_src_\(guideRandomSuffix())"
        let sourceAdmin = "host=127.0.0.1 port=\(environment.sourcePort) dbname=postgres user=postgres password=\(environment.password)"
        let sourceConnInfo = "host=127.0.0.1 port=\(environment.sourcePort) dbname=\(name) user=postgres password=\(environment.password)"
        try #require(try await Shell.psql(sourceAdmin, "CREATE DATABASE \(name) TEMPLATE template0 ENCODING '\(encoding)' LC_COLLATE 'C' LC_CTYPE 'C';").status == 0)
        var failure: (any Error)?
        do {
            try #require(try await Shell.psql(sourceConnInfo, setup).status == 0)
            try await withGuideTarget { (target: GuideTarget) async throws in try await body(target, sourceConnInfo) }
        } catch {
            failure = error
        }
        _ = try? await Shell.psql(sourceAdmin, "DROP DATABASE IF EXISTS \(name) WITH (FORCE);")
        if let failure { throw failure }
    }

    /// database_create from `source` into a new database, `check` run in it, the database dropped.
    static func createDatabase(_ target: GuideTarget, from source: String, check: String) async throws -> [String] {
        let made = "made_\(guideRandomSuffix())"
        let result = try await target.call("SELECT pgclone.database_create(\(guideSQLLiteral(source)), '\(made)');")
        #expect(result.hasPrefix("OK"), "\(result)")
        let rows = try await target.rows(check, on: target.environment.directTarget(database: made))
        _ = try await Shell.psql(target.environment.directTarget(database: "postgres"), "DROP DATABASE IF EXISTS \(made) WITH (FORCE);")
        return rows
    }

    /// database_create copies the database's grants and the roles' settings in it, as pg_dump -C
    /// (round 33: a source closed to PUBLIC became open to every role on the target).
    @Test func databaseCreateKeepsTheDatabasesGrantsAndRoleSettings() async throws {
        let sql = """
            DO $$ BEGIN
              EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
              EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO fidelity_reader', current_database());
              EXECUTE format('ALTER ROLE fidelity_reader IN DATABASE %I SET work_mem = %L', current_database(), '9MB');
            END $$;
            CREATE TABLE public.t (id int);
            """
        try await CloneFidelityTests.withSourceDatabase(sql) { _, sourceConnInfo, reader in
            try await withGuideTarget { (target: GuideTarget) async throws in
                let rows = try await Self.createDatabase(target, from: sourceConnInfo, check: """
                    SELECT pg_catalog.string_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END || ':' || a.privilege_type, ',' ORDER BY a.privilege_type)
                    FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = current_database() AND a.grantee <> d.datdba;
                    SELECT setconfig FROM pg_db_role_setting WHERE setrole = '\(reader)'::regrole
                      AND setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database());
                    """)
                #expect(rows == ["\(reader):CONNECT,\(reader):TEMPORARY", "{work_mem=9MB}"], "\(rows)")
            }
        }
    }

    /// reg* columns were copied in binary, as the source's OIDs (naming nothing, or something
    /// else, on the target), and aclitem columns could not be copied at all.
    @Test func regAndAclitemColumnsArriveByName() async throws {
        let sql = """
            CREATE SCHEMA rg;
            CREATE TYPE rg.mood AS ENUM ('calm');
            CREATE SEQUENCE rg.counter;
            CREATE FUNCTION rg.f() RETURNS int LANGUAGE sql AS 'SELECT 1';
            CREATE TABLE rg.regs (id int, rt regtype, rc regclass, rp regproc, rr regrole, ac aclitem, rts regtype[]);
            INSERT INTO rg.regs VALUES (1, 'rg.mood', 'rg.counter', 'rg.f', 'postgres', 'postgres=r/postgres', '{rg.mood,int4}');
            """
        try await CloneFidelityTests.withSourceDatabase(sql) { _, sourceConnInfo, _ in
            try await withGuideTarget { (target: GuideTarget) async throws in
                let result = try await target.call("SELECT pgclone.schema(\(guideSQLLiteral(sourceConnInfo)), 'rg');")
                #expect(result.hasPrefix("OK: cloned schema rg (1 table, 1 rows,"), "\(result)")
                #expect(try await target.rows("SELECT rt, rc, rp, rr, ac, rts FROM rg.regs;")
                        == ["rg.mood|rg.counter|rg.f|postgres|postgres=r/postgres|{rg.mood,integer}"])
            }
        }
    }

    /// A foreign key to a partitioned table has a child constraint per partition on the
    /// referencing table; the clone made them again after the parent key had, and failed.
    @Test func aForeignKeyToAPartitionedTable() async throws {
        let sql = """
            CREATE SCHEMA fkp;
            CREATE TABLE fkp.p (id int PRIMARY KEY) PARTITION BY RANGE (id);
            CREATE TABLE fkp.p1 PARTITION OF fkp.p FOR VALUES FROM (0) TO (100);
            CREATE TABLE fkp.p2 PARTITION OF fkp.p FOR VALUES FROM (100) TO (200);
            INSERT INTO fkp.p VALUES (1), (150);
            CREATE TABLE fkp.r (id int REFERENCES fkp.p ON DELETE CASCADE);
            INSERT INTO fkp.r VALUES (1), (150);
            CREATE VIEW fkp.v AS SELECT id FROM fkp.r;
            """
        try await CloneFidelityTests.withSourceDatabase(sql) { _, sourceConnInfo, _ in
            try await withGuideTarget { (target: GuideTarget) async throws in
                let result = try await target.call("SELECT pgclone.schema(\(guideSQLLiteral(sourceConnInfo)), 'fkp');")
                #expect(result.hasPrefix("OK: cloned schema fkp (2 tables, 4 rows,"), "\(result)")
                #expect(try await target.rows("""
                    SELECT count(*) FROM pg_constraint WHERE conrelid = 'fkp.r'::regclass AND contype = 'f';
                    SELECT count(*) FROM fkp.v;
                    DELETE FROM fkp.p WHERE id = 150;
                    SELECT id FROM fkp.r;
                    """) == ["3", "2", "1"])
                // Replacing the referenced table keeps the key (made once, with its children).
                let replaced = try await target.call("SELECT pgclone.table(\(guideSQLLiteral(sourceConnInfo)), 'fkp', 'p', true, NULL, '{\"conflict\": \"replace\"}');")
                #expect(replaced.hasPrefix("OK"), "\(replaced)")
                #expect(try await target.rows("SELECT count(*) FROM pg_constraint WHERE conrelid = 'fkp.r'::regclass AND contype = 'f';") == ["3"])
            }
        }
    }

    /// A table without columns holds rows all the same (COPY moves one empty line each); its
    /// COPY had `()` for a column list, a syntax error.
    @Test func aTableWithoutColumnsKeepsItsRows() async throws {
        let sql = """
            CREATE SCHEMA nc;
            CREATE TABLE nc.nocols ();
            INSERT INTO nc.nocols DEFAULT VALUES;
            INSERT INTO nc.nocols DEFAULT VALUES;
            """
        try await CloneFidelityTests.withSourceDatabase(sql) { _, sourceConnInfo, _ in
            try await withGuideTarget { (target: GuideTarget) async throws in
                #expect(try await target.call("SELECT pgclone.table(\(guideSQLLiteral(sourceConnInfo)), 'nc', 'nocols');") == "OK: cloned nc.nocols (2 rows)")
                #expect(try await target.rows("SELECT count(*) FROM nc.nocols;") == ["2"])
            }
        }
    }

    /// An inheritance child with no default of its own took its parent's (pg_dump writes
    /// DEFAULT NULL for it); one with a default of its own keeps it.
    @Test func anInheritanceChildKeepsItsLackOfDefault() async throws {
        let sql = """
            CREATE SCHEMA ih;
            CREATE TABLE ih.p (a int DEFAULT 5, b int NOT NULL);
            CREATE TABLE ih.c (a int, b int NOT NULL, c int);
            ALTER TABLE ih.c INHERIT ih.p;
            CREATE TABLE ih.c9 (a int DEFAULT 9) INHERITS (ih.p);
            """
        try await CloneFidelityTests.withSourceDatabase(sql) { _, sourceConnInfo, _ in
            try await withGuideTarget { (target: GuideTarget) async throws in
                let result = try await target.call("SELECT pgclone.schema(\(guideSQLLiteral(sourceConnInfo)), 'ih');")
                #expect(result.hasPrefix("OK: cloned schema ih (3 tables,"), "\(result)")
                #expect(try await target.rows("""
                    INSERT INTO ih.c (b) VALUES (1); INSERT INTO ih.c9 (b) VALUES (1); INSERT INTO ih.p (b) VALUES (1);
                    SELECT tableoid::regclass, a FROM ih.p ORDER BY 1;
                    """) == ["ih.p|5", "ih.c|", "ih.c9|9"])
            }
        }
    }

    /// A routine already on the target is a conflict like a table's: the same definition is
    /// kept, another one is an error (the target's routine stays), kept under skip, replaced
    /// under replace. Before, it was replaced silently, and an aggregate made every second
    /// clone fail.
    @Test func routinesOnTheTargetAreConflicts() async throws {
        let sql = """
            CREATE SCHEMA fn;
            CREATE FUNCTION fn.f() RETURNS int LANGUAGE sql AS 'SELECT 1';
            CREATE AGGREGATE fn.mysum(int) (SFUNC = int4pl, STYPE = int, INITCOND = '0');
            CREATE TABLE fn.t (id int DEFAULT fn.f());
            """
        try await CloneFidelityTests.withSourceDatabase(sql) { _, sourceConnInfo, _ in
            try await withGuideTarget { (target: GuideTarget) async throws in
                let source = guideSQLLiteral(sourceConnInfo)
                _ = try await target.rows("CREATE SCHEMA fn; CREATE FUNCTION fn.f() RETURNS int LANGUAGE sql AS 'SELECT 2';")
                let refused = try await target.expectError("SELECT pgclone.schema(\(source), 'fn');", sqlState: "42723",
                                                           message: "function fn.f already exists on target with a different definition")
                #expect(refused.stderr.contains("DETAIL:  source: CREATE OR REPLACE FUNCTION fn.f()"), "\(refused.stderr)")
                #expect(try await target.rows("SELECT fn.f(); SELECT to_regclass('fn.t') IS NULL;") == ["2", "t"])
                let skipped = try await Shell.psql(target.conninfo, "SELECT pgclone.schema(\(source), 'fn', true, '{\"conflict\": \"skip\"}');")
                #expect(skipped.stdout.hasPrefix("OK: cloned schema fn (1 table,"), "\(skipped.stdout) \(skipped.stderr)")
                #expect(skipped.stderr.contains("function fn.f already exists on target with another definition; kept the target's"), "\(skipped.stderr)")
                #expect(try await target.rows("SELECT fn.f(), fn.mysum(x) FROM (VALUES (3), (4)) v(x);") == ["2|7"])
                // Again: the aggregate is there with the same definition, the table is skipped.
                let again = try await Shell.psql(target.conninfo, "SELECT pgclone.schema(\(source), 'fn', true, '{\"conflict\": \"skip\"}');")
                #expect(again.status == 0, "\(again.stderr)")
                #expect(again.stderr.contains("aggregate fn.mysum already exists on target with the same definition; kept"), "\(again.stderr)")
                let replaced = try await Shell.psql(target.conninfo, "SELECT pgclone.schema(\(source), 'fn', true, '{\"conflict\": \"replace\"}');")
                #expect(replaced.status == 0, "\(replaced.stderr)")
                #expect(replaced.stderr.contains("function fn.f already existed on target with another definition; replaced"), "\(replaced.stderr)")
                #expect(try await target.rows("SELECT fn.f();") == ["1"])
                // One CREATE OR REPLACE cannot change (its result type) is named, with what to do.
                _ = try await target.rows("DROP FUNCTION fn.f() CASCADE; CREATE FUNCTION fn.f() RETURNS text LANGUAGE sql AS $$SELECT 'x'$$;")
                _ = try await target.expectError("SELECT pgclone.schema(\(source), 'fn', true, '{\"conflict\": \"replace\"}');", sqlState: "42P13",
                                                 message: "cannot replace function fn.f on target: cannot change return type of existing function")
                #expect(try await target.rows("SELECT fn.f();") == ["x"])
            }
        }
    }

    /// verify's checksum hashed columns by their types' equality: 1.5 = 1.50, -0 = 0,
    /// '1 day' = '24 hours', jsonb 1.0 = 1 and a case-insensitive collation's 'ABC' = 'abc'
    /// passed as the same rows.
    @Test func checksumSeesValuesThatOnlyCompareEqual() async throws {
        let sql = """
            CREATE SCHEMA vh;
            CREATE COLLATION vh.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
            CREATE TABLE vh.n (id int PRIMARY KEY, v numeric);
            CREATE TABLE vh.f (id int PRIMARY KEY, v float8);
            CREATE TABLE vh.i (id int PRIMARY KEY, v interval);
            CREATE TABLE vh.j (id int PRIMARY KEY, v jsonb);
            CREATE TABLE vh.c (id int PRIMARY KEY, v text COLLATE vh.ci);
            CREATE TABLE vh.b (id int PRIMARY KEY, v bpchar);
            INSERT INTO vh.n VALUES (1, 1.5), (2, 2);
            INSERT INTO vh.f VALUES (1, '-0'), (2, 2);
            INSERT INTO vh.i VALUES (1, '1 day'), (2, '1 mon');
            INSERT INTO vh.j VALUES (1, '{"a": 1.0}'), (2, '{}');
            INSERT INTO vh.c VALUES (1, 'ABC'), (2, 'x');
            INSERT INTO vh.b VALUES (1, 'ab'), (2, 'x');
            """
        try await CloneFidelityTests.withSourceDatabase(sql) { _, sourceConnInfo, _ in
            try await withGuideTarget { (target: GuideTarget) async throws in
                let source = guideSQLLiteral(sourceConnInfo)
                let result = try await target.call("SELECT pgclone.schema(\(source), 'vh');")
                #expect(result.hasPrefix("OK: cloned schema vh (6 tables, 12 rows,"), "\(result)")
                let checksum = "SELECT table_name, match, detail FROM pgclone.verify(\(source), 'vh', '{\"mode\": \"checksum\"}') ORDER BY 1;"
                #expect(try await target.rows(checksum) == ["b|✓|", "c|✓|", "f|✓|", "i|✓|", "j|✓|", "n|✓|"])
                try await target.direct("""
                    UPDATE vh.n SET v = 1.50 WHERE id = 1; UPDATE vh.f SET v = 0 WHERE id = 1; UPDATE vh.i SET v = '24 hours' WHERE id = 1;
                    UPDATE vh.j SET v = '{"a": 1}' WHERE id = 1; UPDATE vh.c SET v = 'abc' WHERE id = 1; UPDATE vh.b SET v = 'ab  ' WHERE id = 1;
                    """, database: target.database)
                #expect(try await target.rows(checksum) == ["b|✗|1 row differs at id 1", "c|✗|1 row differs at id 1", "f|✗|1 row differs at id 1", "i|✗|1 row differs at id 1",
                                                            "j|✗|1 row differs at id 1", "n|✗|1 row differs at id 1"])
            }
        }
    }
    /// Properties pg_dump keeps that clones lost: a column's compression and options, the
    /// index CLUSTER uses, grants on types and domains; the statistics object of a table moved
    /// aside by "rename"; and clear refusals for a view asked for as a table and a target name
    /// PostgreSQL would cut.
    @Test func tablePropertiesAndGrantsOnTypes() async throws {
        let sql = """
            CREATE SCHEMA tp;
            CREATE TYPE tp.comp AS (a int, b text);
            REVOKE USAGE ON TYPE tp.comp FROM PUBLIC;
            CREATE TYPE tp.en AS ENUM ('x');
            GRANT USAGE ON TYPE tp.en TO fidelity_reader;
            CREATE DOMAIN tp.d AS int;
            REVOKE USAGE ON DOMAIN tp.d FROM PUBLIC;
            CREATE TABLE tp.cols (id int PRIMARY KEY, big text, note text, c tp.comp, e tp.en, d tp.d);
            ALTER TABLE tp.cols ALTER COLUMN big SET COMPRESSION lz4;
            ALTER TABLE tp.cols ALTER COLUMN note SET (n_distinct = -0.5);
            CREATE INDEX cols_note ON tp.cols (note);
            ALTER TABLE tp.cols CLUSTER ON cols_note;
            CREATE STATISTICS tp.cols_stats (ndistinct) ON id, note FROM tp.cols;
            ALTER STATISTICS tp.cols_stats SET STATISTICS 200;
            CREATE INDEX cols_expr ON tp.cols (lower(note));
            ALTER INDEX tp.cols_expr ALTER COLUMN 1 SET STATISTICS 300;
            CREATE VIEW tp.v AS SELECT id FROM tp.cols;
            CREATE TABLE tp.pr (id int, v int) PARTITION BY RANGE (id);
            CREATE TABLE tp.pr_1 PARTITION OF tp.pr FOR VALUES FROM (0) TO (10);
            CREATE INDEX pr_v ON tp.pr (v);
            """
        try await CloneFidelityTests.withSourceDatabase(sql) { _, sourceConnInfo, reader in
            try await withGuideTarget { (target: GuideTarget) async throws in
                let source = guideSQLLiteral(sourceConnInfo)
                let result = try await target.call("SELECT pgclone.schema(\(source), 'tp');")
                #expect(result.hasPrefix("OK: cloned schema tp (2 tables,"), "\(result)")
                #expect(try await target.rows("""
                    SELECT attname, attcompression, attoptions FROM pg_attribute WHERE attrelid = 'tp.cols'::regclass AND attname IN ('big', 'note') ORDER BY 1;
                    SELECT indexrelid::regclass FROM pg_index WHERE indrelid = 'tp.cols'::regclass AND indisclustered;
                    SELECT has_type_privilege('public', 'tp.comp', 'USAGE') OR has_type_privilege('\(reader)', 'tp.comp', 'USAGE'),
                           has_type_privilege('\(reader)', 'tp.en', 'USAGE'), has_type_privilege('\(reader)', 'tp.d', 'USAGE');
                    SELECT stxstattarget FROM pg_statistic_ext WHERE stxname = 'cols_stats';
                    SELECT attstattarget FROM pg_attribute WHERE attrelid = 'tp.cols_expr'::regclass;
                    """) == ["big|l|", "note||{n_distinct=-0.5}", "tp.cols_note", "f|t|f", "200", "300"])
                // A partition cloned as a table of its own keeps the index it had from its parent's.
                #expect(try await target.call("SELECT pgclone.table(\(source), 'tp', 'pr_1', true, 'pr_1_copy');") == "OK: cloned tp.pr_1 to tp.pr_1_copy (0 rows)")
                #expect(try await target.rows("SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'tp.pr_1_copy'::regclass;")
                        == ["CREATE INDEX pr_1_copy_v_idx ON tp.pr_1_copy USING btree (v)"])
                let renamed = try await Shell.psql(target.conninfo, "SELECT pgclone.table(\(source), 'tp', 'cols', true, NULL, '{\"conflict\": \"rename\"}');")
                #expect(renamed.status == 0 && !renamed.stderr.contains("not created"), "\(renamed.stdout) \(renamed.stderr)")
                #expect(try await target.rows("SELECT stxrelid::regclass, stxname FROM pg_statistic_ext WHERE stxnamespace = 'tp'::regnamespace ORDER BY 2;")
                        == ["tp.cols_old|cols_old_stats", "tp.cols|cols_stats"])
                _ = try await target.expectError("SELECT pgclone.table(\(source), 'tp', 'v');", sqlState: "42809",
                                                 message: "\"tp.v\" is a view on source, not a table")
                let long = String(repeating: "b", count: 70)
                _ = try await target.expectError("SELECT pgclone.table(\(source), 'tp', 'cols', true, '\(long)');", sqlState: "42622",
                                                 message: "target name \"\(long)\" is too long (70 bytes; PostgreSQL names have at most 63)")
            }
        }
    }

    /// A whole-database clone says which publications and event triggers it did not make.
    @Test func aDatabaseCloneNamesWhatItDoesNotMake() async throws {
        let sql = """
            CREATE TABLE public.t (id int PRIMARY KEY);
            CREATE PUBLICATION fidelity_pub FOR TABLE public.t;
            CREATE FUNCTION public.evtf() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$;
            CREATE EVENT TRIGGER fidelity_evt ON ddl_command_end EXECUTE FUNCTION public.evtf();
            """
        try await CloneFidelityTests.withSourceDatabase(sql) { environment, sourceConnInfo, _ in
            try await withGuideTarget { (target: GuideTarget) async throws in
                let name = "fidelity_pub_\(guideRandomSuffix())"
                let output = try await Shell.psql(target.conninfo, "SELECT pgclone.database_create(\(guideSQLLiteral(sourceConnInfo)), '\(name)');")
                #expect(output.status == 0, "\(output.stderr)")
                #expect(output.stderr.contains("event trigger fidelity_evt not cloned: pgclone does not recreate this kind of object"), "\(output.stderr)")
                #expect(output.stderr.contains("publication fidelity_pub not cloned: pgclone does not recreate this kind of object"), "\(output.stderr)")
                _ = try await Shell.psql(environment.directTarget(database: "postgres"), "DROP DATABASE IF EXISTS \(name) WITH (FORCE);")
            }
        }
    }
    /// A replace call that fails puts a replaced routine back whole: its body, comment and
    /// grants (round 26: the source's grants stayed, PUBLIC had lost EXECUTE).
    @Test func aFailedReplaceRestoresTheRoutinesGrants() async throws {
        let sql = """
            CREATE EXTENSION IF NOT EXISTS btree_gist;
            CREATE SCHEMA fr;
            CREATE FUNCTION fr.f() RETURNS int LANGUAGE sql AS 'SELECT 1';
            REVOKE EXECUTE ON FUNCTION fr.f() FROM PUBLIC;
            GRANT EXECUTE ON FUNCTION fr.f() TO fidelity_reader;
            CREATE TABLE fr.t (id int, EXCLUDE USING gist (id WITH =));
            """
        try await CloneFidelityTests.withSourceDatabase(sql) { _, sourceConnInfo, reader in
            try await withGuideTarget { (target: GuideTarget) async throws in
                _ = try await target.rows("CREATE SCHEMA fr; CREATE FUNCTION fr.f() RETURNS int LANGUAGE sql AS 'SELECT 2'; COMMENT ON FUNCTION fr.f() IS 'mine';")
                let failed = try await target.expectError("SELECT pgclone.schema(\(guideSQLLiteral(sourceConnInfo)), 'fr', true, '{\"conflict\": \"replace\"}');",
                                                          sqlState: "42704", prefix: true)
                #expect(failed.stderr.contains("the target is as it was"), "\(failed.stderr)")
                #expect(try await target.rows("""
                    SELECT fr.f(), obj_description('fr.f()'::regprocedure, 'pg_proc'), has_function_privilege('public', 'fr.f()', 'EXECUTE');
                    SELECT count(*) FROM aclexplode((SELECT proacl FROM pg_proc WHERE oid = 'fr.f()'::regprocedure)) WHERE grantee = '\(reader)'::regrole;
                    """) == ["2|mine|t", "0"])
            }
        }
    }

    /// Under conflict replace the tables take the source's rows, and a sequence their keys come
    /// from takes the source's value (it stayed behind: the next INSERT collided).
    @Test func replaceTakesTheSourcesSequenceValues() async throws {
        let sql = """
            CREATE SCHEMA sq;
            CREATE SEQUENCE sq.ids;
            CREATE TABLE sq.t (id bigint PRIMARY KEY DEFAULT nextval('sq.ids'), v text);
            INSERT INTO sq.t (v) SELECT 'row ' || g FROM generate_series(1, 5) g;
            """
        try await CloneFidelityTests.withSourceDatabase(sql) { _, sourceConnInfo, _ in
            try await withGuideTarget { (target: GuideTarget) async throws in
                let source = guideSQLLiteral(sourceConnInfo)
                _ = try await target.rows("CREATE SCHEMA sq; CREATE SEQUENCE sq.ids; CREATE TABLE sq.t (id bigint PRIMARY KEY DEFAULT nextval('sq.ids'), v text); INSERT INTO sq.t (v) VALUES ('old');")
                let replaced = try await Shell.psql(target.conninfo, "SELECT pgclone.schema(\(source), 'sq', true, '{\"conflict\": \"replace\"}');")
                #expect(replaced.status == 0, "\(replaced.stderr)")
                #expect(replaced.stderr.contains("sequence sq.ids already exists on target; set to the source's value"), "\(replaced.stderr)")
                #expect(try await target.rows("INSERT INTO sq.t (v) VALUES ('new') RETURNING id;") == ["6"])
            }
        }
    }

    /// What a partition has of its own beyond its parent: a default of its own or none, NOT
    /// NULL, column settings, UNLOGGED, row-level security and its policies, rules, extended
    /// statistics, the CLUSTER index and a trigger disabled on it alone (round 26: all lost).
    @Test func partitionsKeepWhatIsTheirOwn() async throws {
        let sql = """
            CREATE SCHEMA pt;
            CREATE TABLE pt.p (id int, v int DEFAULT 5, w int DEFAULT 1, note text) PARTITION BY RANGE (id);
            CREATE TABLE pt.p1 PARTITION OF pt.p FOR VALUES FROM (0) TO (10);
            CREATE UNLOGGED TABLE pt.p2 PARTITION OF pt.p FOR VALUES FROM (10) TO (20);
            ALTER TABLE pt.p1 ALTER COLUMN v SET DEFAULT 9, ALTER COLUMN w DROP DEFAULT, ALTER COLUMN note SET NOT NULL;
            ALTER TABLE pt.p1 ALTER COLUMN note SET STATISTICS 123, ALTER COLUMN note SET (n_distinct = -0.5);
            ALTER TABLE pt.p1 ENABLE ROW LEVEL SECURITY;
            CREATE POLICY only_small ON pt.p1 USING (id < 5);
            CREATE TABLE pt.log (id int);
            CREATE RULE p1_log AS ON DELETE TO pt.p1 DO ALSO INSERT INTO pt.log VALUES (OLD.id);
            CREATE STATISTICS pt.p1_stats (ndistinct) ON id, v FROM pt.p1;
            CREATE INDEX p1_v ON pt.p1 (v);
            ALTER TABLE pt.p1 CLUSTER ON p1_v;
            CREATE FUNCTION pt.noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
            CREATE TRIGGER p_trg BEFORE INSERT ON pt.p FOR EACH ROW EXECUTE FUNCTION pt.noop();
            ALTER TABLE pt.p1 DISABLE TRIGGER p_trg;
            INSERT INTO pt.p VALUES (1, 1, 1, 'a'), (7, 7, 7, 'b');
            """
        try await CloneFidelityTests.withSourceDatabase(sql) { _, sourceConnInfo, _ in
            try await withGuideTarget { (target: GuideTarget) async throws in
                let result = try await target.call("SELECT pgclone.schema(\(guideSQLLiteral(sourceConnInfo)), 'pt');")
                #expect(result.hasPrefix("OK: cloned schema pt (2 tables, 2 rows,"), "\(result)")
                #expect(try await target.rows("""
                    SELECT attname, pg_get_expr(adbin, adrelid), attnotnull, attstattarget, attoptions FROM pg_attribute
                      LEFT JOIN pg_attrdef ON adrelid = attrelid AND adnum = attnum
                      WHERE attrelid = 'pt.p1'::regclass AND attname IN ('v', 'w', 'note') ORDER BY attnum;
                    SELECT relpersistence, relrowsecurity FROM pg_class WHERE oid IN ('pt.p1'::regclass, 'pt.p2'::regclass) ORDER BY relname;
                    SELECT polname FROM pg_policy WHERE polrelid = 'pt.p1'::regclass;
                    SELECT rulename FROM pg_rewrite WHERE ev_class = 'pt.p1'::regclass;
                    SELECT stxname FROM pg_statistic_ext WHERE stxrelid = 'pt.p1'::regclass;
                    SELECT indexrelid::regclass FROM pg_index WHERE indrelid = 'pt.p1'::regclass AND indisclustered;
                    SELECT tgrelid::regclass, tgenabled FROM pg_trigger WHERE tgname = 'p_trg' ORDER BY 1;
                    """) == ["v|9|f|-1|", "w||f|-1|", "note||t|123|{n_distinct=-0.5}", "p|t", "u|f", "only_small", "p1_log", "p1_stats", "pt.p1_v",
                             "pt.p|O", "pt.p1|D", "pt.p2|O"])
            }
        }
    }

    /// A refresh under conflict rename: the old tables move aside as `_old`, and so do the
    /// schema's views and materialized views (with their indexes), made again on the new tables;
    /// sequences take the source's values and routines its definitions, since the new tables
    /// use them (round 27: the views kept reading the old tables and the next INSERT collided).
    @Test func aRenameRefreshMovesViewsAsideToo() async throws {
        let sql = """
            CREATE SCHEMA rn;
            CREATE SEQUENCE rn.nos;
            CREATE TABLE rn.inv (id int PRIMARY KEY DEFAULT nextval('rn.nos'), amount int);
            INSERT INTO rn.inv (amount) SELECT g FROM generate_series(1, 5) g;
            CREATE FUNCTION rn.total() RETURNS bigint LANGUAGE sql STABLE AS 'SELECT sum(amount) FROM rn.inv';
            CREATE VIEW rn.v AS SELECT count(*) AS n FROM rn.inv;
            CREATE MATERIALIZED VIEW rn.mv AS SELECT max(id) AS top FROM rn.inv;
            CREATE INDEX mv_top ON rn.mv (top);
            """
        try await CloneFidelityTests.withSourceDatabase(sql) { _, sourceConnInfo, _ in
            try await withGuideTarget { (target: GuideTarget) async throws in
                let source = guideSQLLiteral(sourceConnInfo)
                _ = try await target.call("SELECT pgclone.schema(\(source), 'rn');")
                // Yesterday's copy, changed on the target since: fewer rows, an older function.
                _ = try await target.rows("""
                    DELETE FROM rn.inv WHERE id > 2; SELECT setval('rn.nos', 2);
                    CREATE OR REPLACE FUNCTION rn.total() RETURNS bigint LANGUAGE sql STABLE AS 'SELECT 0::bigint';
                    REFRESH MATERIALIZED VIEW rn.mv;
                    """)
                _ = try await target.rows("CREATE VIEW rn.staging_only AS SELECT id FROM rn.inv;")
                let renamed = try await Shell.psql(target.conninfo, "SELECT pgclone.schema(\(source), 'rn', true, '{\"conflict\": \"rename\"}');")
                #expect(renamed.status == 0, "\(renamed.stderr)")
                // A view the source does not have keeps reading the old table: said.
                #expect(renamed.stderr.contains("views reading rn.inv now read rn.inv_old: rn.mv, rn.staging_only, rn.v (in a schema clone"), "\(renamed.stderr)")
                #expect(renamed.stderr.contains("existing view rn.v renamed to rn.v_old"), "\(renamed.stderr)")
                let got = try await target.rows("""
                    SELECT n FROM rn.v; SELECT n FROM rn.v_old; SELECT top FROM rn.mv; SELECT top FROM rn.mv_old; SELECT rn.total();
                    SELECT indexrelid::regclass FROM pg_index WHERE indrelid IN ('rn.mv'::regclass, 'rn.mv_old'::regclass) ORDER BY 1;
                    INSERT INTO rn.inv (amount) VALUES (6) RETURNING id;
                    """)
                #expect(got == ["5", "2", "5", "2", "15", "rn.mv_old_top", "rn.mv_top", "6"], "\(got)")
            }
        }
    }

    /// Masks in a schema clone: a column mask applies to the tables that have the column (it
    /// had to exist in every table), per-table masks in discover_sensitive's shape are taken
    /// (they were refused), and a mask that finds nothing to mask is an error (round 27).
    @Test func schemaClonesTakeColumnAndTableMasks() async throws {
        let sql = """
            CREATE SCHEMA mk;
            CREATE TABLE mk.users (id int PRIMARY KEY, email text, phone text, name text);
            CREATE TABLE mk.projects (id int PRIMARY KEY, name text);
            INSERT INTO mk.users VALUES (1, 'REAL-ann@example.com', '555-0101', 'REAL Ann');
            INSERT INTO mk.projects VALUES (1, 'REAL project');
            CREATE TABLE mk.people (id int, ssn text);
            CREATE TABLE mk.staff (badge int) INHERITS (mk.people);
            CREATE TABLE mk.contractors (agency text) INHERITS (mk.staff);
            INSERT INTO mk.people VALUES (1, 'REAL-SSN-1'); INSERT INTO mk.staff VALUES (2, 'REAL-SSN-2', 7);
            INSERT INTO mk.contractors VALUES (3, 'REAL-SSN-3', 8, 'acme');
            """
        try await CloneFidelityTests.withSourceDatabase(sql) { _, sourceConnInfo, _ in
            try await withGuideTarget { (target: GuideTarget) async throws in
                let source = guideSQLLiteral(sourceConnInfo)
                let discovered = try await target.call("SELECT pgclone.discover_sensitive(\(source), 'mk');")
                #expect(discovered.contains("\"users\""), "\(discovered)")
                let result = try await target.call("SELECT pgclone.schema(\(source), 'mk', true, '{\"mask\": \(discovered)}');")
                #expect(result.hasPrefix("OK: cloned schema mk (5 tables, 5 rows,"), "\(result)")
                #expect(try await target.rows("SELECT email LIKE '%REAL%' OR phone = '555-0101' FROM mk.users;") == ["f"])
                _ = try await target.rows("DROP SCHEMA mk CASCADE;")
                // A column mask for the tables that have it; a table's own mask wins.
                let mixed = try await target.call("""
                    SELECT pgclone.schema(\(source), 'mk', true, '{"mask": {"name": "null", "users": {"email": "hash", "name": {"type": "constant", "value": "X"}}}}');
                    """)
                #expect(mixed.hasPrefix("OK"), "\(mixed)")
                #expect(try await target.rows("SELECT email = md5('REAL-ann@example.com'), name FROM mk.users; SELECT name IS NULL FROM mk.projects;") == ["t|X", "t"])
                // A parent's mask covers what inherits from it (the parent shows those rows too).
                _ = try await target.rows("DROP SCHEMA mk CASCADE;")
                let inherited = try await target.call("SELECT pgclone.schema(\(source), 'mk', true, '{\"mask\": {\"people\": {\"ssn\": \"null\"}}}');")
                #expect(inherited.hasPrefix("OK"), "\(inherited)")
                #expect(try await target.rows("SELECT count(*) FROM mk.people WHERE ssn IS NOT NULL;") == ["0"])
                _ = try await target.expectError("SELECT pgclone.schema(\(source), 'mk', true, '{\"conflict\": \"replace\", \"mask\": {\"emial\": \"hash\"}}');",
                                                 sqlState: "42703", message: "cannot mask column \"emial\": no table of the clone has it")
                _ = try await target.expectError("SELECT pgclone.schema(\(source), 'mk', true, '{\"conflict\": \"replace\", \"mask\": {\"usres\": {\"email\": \"hash\"}}}');",
                                                 sqlState: "42P01", message: "the mask names table \"usres\", which this clone does not include")
            }
        }
    }

    /// A schema clone that fails after some tables committed adds their foreign keys where what
    /// they reference is there: they came only after the last table, and a skip re-run keeps
    /// the committed tables as they are, so they never got them (round 27).
    @Test func aFailedSchemaCloneKeepsTheForeignKeysOfWhatItCommitted() async throws {
        let sql = """
            CREATE EXTENSION IF NOT EXISTS btree_gist;
            CREATE SCHEMA fk;
            CREATE TABLE fk.a (id int PRIMARY KEY);
            INSERT INTO fk.a SELECT g FROM generate_series(1, 2000) g;
            CREATE TABLE fk.b (id int PRIMARY KEY, a_id int REFERENCES fk.a);
            INSERT INTO fk.b SELECT g, g FROM generate_series(1, 2000) g;
            CREATE TABLE fk.z (id int, EXCLUDE USING gist (id WITH =));
            """
        try await CloneFidelityTests.withSourceDatabase(sql) { _, sourceConnInfo, _ in
            try await withGuideTarget { (target: GuideTarget) async throws in
                let failed = try await target.expectError("SELECT pgclone.schema(\(guideSQLLiteral(sourceConnInfo)), 'fk');", sqlState: "42704", prefix: true)
                #expect(failed.stderr.contains("Already cloned and committed on the target (2 of 3 tables): fk.a, fk.b."), "\(failed.stderr)")
                #expect(failed.stderr.contains("Foreign keys of those tables: 1 added."), "\(failed.stderr)")
                #expect(try await target.rows("SELECT conname FROM pg_constraint WHERE conrelid = 'fk.b'::regclass AND contype = 'f';") == ["b_a_id_fkey"])
            }
        }
    }

    /// Masks that must not find nothing (round 28): in a table clone a table's mask naming
    /// another table (a typo, the target name, another schema) was dropped and the real values
    /// copied; `{"users": {"type": "hash"}}` (table users, column type) was read as a mask for
    /// a column "users"; a key given twice kept only its last value.
    @Test func masksThatCouldMissAreRefusedOrApplied() async throws {
        let sql = """
            CREATE SCHEMA mz;
            CREATE TABLE mz.users (id int PRIMARY KEY, email text, type text);
            INSERT INTO mz.users VALUES (1, 'REAL-ann@example.com', 'REAL-TYPE');
            CREATE TABLE mz.groups (id int PRIMARY KEY, users text);
            INSERT INTO mz.groups VALUES (1, 'REAL-MEMBERS');
            CREATE TABLE mz.ev (id int, who text) PARTITION BY RANGE (id);
            CREATE TABLE mz.ev_1 PARTITION OF mz.ev FOR VALUES FROM (0) TO (10);
            CREATE SCHEMA mz2;
            CREATE TABLE mz2.users (id int);
            """
        try await CloneFidelityTests.withSourceDatabase(sql) { _, sourceConnInfo, _ in
            try await withGuideTarget { (target: GuideTarget) async throws in
                let source = guideSQLLiteral(sourceConnInfo)
                for (mask, name) in [("{\"usres\": {\"email\": \"hash\"}}", "NULL"), ("{\"users2\": {\"email\": \"hash\"}}", "'users2'"),
                                     ("{\"other.users\": {\"email\": \"hash\"}}", "NULL")] {
                    let key = mask.split(separator: "\"")[1]
                    _ = try await target.expectError("SELECT pgclone.table(\(source), 'mz', 'users', true, \(name), '{\"mask\": \(mask)}');", sqlState: "42P01",
                                                     message: "the mask names table \"\(key)\", but this clone is of mz.users")
                }
                // A partition's rows come through its parent; one list of columns does not fit a schema.
                _ = try await target.expectError("SELECT pgclone.schema(\(source), 'mz', true, '{\"mask\": {\"ev_1\": {\"who\": \"hash\"}}}');", sqlState: "42P01",
                                                 message: "the mask names partition \"ev_1\", whose rows the clone copies through its parent mz.ev")
                _ = try await target.expectError("SELECT pgclone.schema(\(source), 'mz', true, '{\"columns\": [\"id\"]}');", sqlState: "22023",
                                                 message: "option \"columns\" is for table clones")
                // A plain name that tables of two schemas share: each must have the columns masked,
                // found before anything is made.
                _ = try await target.expectError("SELECT pgclone.database(\(source), true, '{\"mask\": {\"users\": {\"email\": \"hash\"}}}');", sqlState: "42703",
                                                 message: "cannot mask column \"email\" of mz2.users: it does not exist (the mask for \"users\" names that table)")
                #expect(try await target.rows("SELECT count(*) FROM pg_tables WHERE schemaname IN ('mz', 'mz2');") == ["0"])
                // Both readings apply where the tables have such columns.
                let both = try await target.call("SELECT pgclone.schema(\(source), 'mz', true, '{\"mask\": {\"users\": {\"type\": \"hash\"}}}');")
                #expect(both.hasPrefix("OK"), "\(both)")
                #expect(try await target.rows("SELECT type = md5('REAL-TYPE') FROM mz.users; SELECT users = md5('REAL-MEMBERS') FROM mz.groups;") == ["t", "t"])
                let table = try await target.call("SELECT pgclone.table(\(source), 'mz', 'users', true, 'users_copy', '{\"mask\": {\"users\": {\"type\": \"hash\"}}}');")
                #expect(table.hasPrefix("OK"), "\(table)")
                #expect(try await target.rows("SELECT type = md5('REAL-TYPE') FROM mz.users_copy;") == ["t"])
                _ = try await target.expectError("SELECT pgclone.table(\(source), 'mz', 'users', true, 'u3', '{\"mask\": {\"users\": {\"email\": \"hash\"}, \"users\": {\"type\": \"hash\"}}}');",
                                                 sqlState: "22P02", message: "invalid JSON in options: key \"users\" appears twice in one object")
            }
        }
    }
}
