import Foundation
import Testing

/// Partition trees and schema clones that fail late (fidelity round 31): foreign partitions'
/// rows are another server's and are not copied (they were copied into the clone's local
/// partitions, and verify said ✓), `conflict: rename` moves a partitioned table aside with its
/// partitions (the new partitions' names collided), and a schema clone failing after its
/// tables says what is already there (it said nothing).
@Suite struct ClonePartitionTreeTests {
    static let foreignPartition = """
        CREATE EXTENSION file_fdw;
        CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;
        CREATE SCHEMA f;
        CREATE TABLE f.pt (id int, x text) PARTITION BY RANGE (id);
        CREATE TABLE f.pt_local PARTITION OF f.pt FOR VALUES FROM (0) TO (100);
        CREATE TABLE f.pt_def PARTITION OF f.pt DEFAULT;
        CREATE FOREIGN TABLE f.pt_remote PARTITION OF f.pt FOR VALUES FROM (100) TO (200)
          SERVER files OPTIONS (program 'printf ''150,REMOTE-150\\n160,REMOTE-160\\n''', format 'csv');
        INSERT INTO f.pt_local VALUES (1, 'a');
        INSERT INTO f.pt_def VALUES (500, 'd');
        CREATE SCHEMA fv;
        CREATE FOREIGN TABLE fv.remote (id int, x text) SERVER files OPTIONS (program 'printf ''1,REMOTE\\n''', format 'csv');
        CREATE VIEW fv.rv AS SELECT * FROM fv.remote;
        CREATE SCHEMA fx;
        CREATE VIEW fx.over_remote AS SELECT * FROM f.pt_remote;
        """

    @Test func foreignPartitionsRowsAreNotCopied() async throws {
        try await CloneFidelityTests.withSourceDatabase(Self.foreignPartition) { _, sourceConnInfo, _ in
            try await withGuideTarget { (target: GuideTarget) async throws in
                let source = guideSQLLiteral(sourceConnInfo)
                // (The source reads them: they are rows of the table there.)
                #expect(try await Shell.psql(sourceConnInfo, "SELECT count(*) FROM f.pt;").stdout.contains("4"))
                let result = try await target.call("SELECT pgclone.schema(\(source), 'f');")
                #expect(result.hasPrefix("OK: cloned schema f (1 table, 2 rows,"), "\(result)")
                #expect(try await target.rows("SELECT tableoid::regclass, id, x FROM f.pt ORDER BY id;") == ["f.pt_local|1|a", "f.pt_def|500|d"])
                #expect(try await target.rows("SELECT to_regclass('f.pt_remote') IS NULL;") == ["t"])
                // verify compares the local partitions' rows on both sides.
                #expect(try await target.rows("SELECT source_rows, target_rows, match FROM pgclone.verify(\(source), 'f', '{\"mode\": \"checksum\"}');") == ["2|2|✓"])
                #expect(try await target.rows("SELECT source_rows, target_rows, match FROM pgclone.verify(\(source), 'f');") == ["2|2|✓"])
                // A table clone of it says what it left out.
                let table = try await Shell.psql(target.conninfo, "SELECT pgclone.table(\(source), 'f', 'pt', true, 'pt_copy');")
                #expect(table.stdout.contains("OK: cloned f.pt to f.pt_copy (2 rows"), "\(table.stdout)")
                #expect(table.stderr.contains("rows of f.pt's foreign partitions not copied (they live on another server; the foreign tables are not cloned): f.pt_remote"), "\(table.stderr)")
                #expect(try await target.rows("SELECT count(*) FROM f.pt_copy WHERE x LIKE 'REMOTE%';") == ["0"])
                // Preflight names what a clone leaves out, and fails on what uses it.
                #expect(try await target.rows("SELECT status, detail FROM pgclone.preflight(\(source), 'f') WHERE \"check\" = 'objects not cloned';")
                        == ["warn|a clone does not make these (create them on the target if needed): foreign table f.pt_remote"])
                #expect(try await target.rows("SELECT status, detail FROM pgclone.preflight(\(source), 'fv') WHERE \"check\" = 'objects not cloned';")
                        == ["fail|a clone does not make these, and the clone would fail on what uses them: rule _RETURN on view fv.rv uses foreign table fv.remote; create them on the target first"])
                // A view of the cloned schema over another schema's foreign table: named too.
                #expect(try await target.rows("SELECT status, detail FROM pgclone.preflight(\(source), 'fx') WHERE \"check\" = 'objects not cloned';")
                        == ["fail|a clone does not make these, and the clone would fail on what uses them: rule _RETURN on view fx.over_remote uses foreign table f.pt_remote; create them on the target first"])
                // The clone's error says why the view could not be made.
                let failed = try await target.expectError("SELECT pgclone.schema(\(source), 'fv');", sqlState: "42P01")
                #expect(failed.stderr.contains("Not made by a clone (create on the target what needs them): foreign table fv.remote."), "\(failed.stderr)")
                // A partition cloned alone is a table of its own, which the result says.
                let alone = try await Shell.psql(target.conninfo, "SELECT pgclone.table(\(source), 'f', 'pt_local', true, 'pt_alone');")
                #expect(alone.stdout.contains("OK: cloned f.pt_local to f.pt_alone (1 row)"), "\(alone.stdout)")
                #expect(alone.stderr.contains("f.pt_local is a partition of f.pt (FOR VALUES FROM (0) TO (100)) on the source: cloned as a table of its own, without that bound"), "\(alone.stderr)")
                // A database clone names the foreign server it does not make.
                #expect(try await Shell.psql(sourceConnInfo, "DROP SCHEMA fv CASCADE; DROP SCHEMA fx CASCADE;").status == 0)
                let database = "fdw_made_\(guideRandomSuffix())"
                let made = try await Shell.psql(target.conninfo, "SELECT pgclone.database_create(\(source), '\(database)');")
                _ = try await Shell.psql(target.environment.directTarget(database: "postgres"), "DROP DATABASE IF EXISTS \(database) WITH (FORCE);")
                #expect(made.stdout.contains("OK:"), "\(made.stdout) \(made.stderr)")
                #expect(made.stderr.contains("foreign server files not cloned"), "\(made.stderr)")
            }
        }
    }

    @Test func renameMovesAPartitionedTableAsideWithItsPartitions() async throws {
        let sql = """
            CREATE SCHEMA lp;
            CREATE SCHEMA lp_other;
            CREATE TABLE lp.t (id int, region text, CONSTRAINT positive CHECK (id > 0), PRIMARY KEY (id, region)) PARTITION BY LIST (region);
            CREATE TABLE lp.t_eu PARTITION OF lp.t FOR VALUES IN ('eu', 'uk');
            CREATE TABLE lp_other.t_us PARTITION OF lp.t FOR VALUES IN ('us');
            CREATE TABLE lp.t_def PARTITION OF lp.t DEFAULT PARTITION BY RANGE (id);
            CREATE TABLE lp.t_def_low PARTITION OF lp.t_def FOR VALUES FROM (1) TO (1000);
            CREATE INDEX t_region ON lp.t (region);
            INSERT INTO lp.t VALUES (1, 'eu'), (2, 'us'), (3, 'mars');
            """
        try await CloneFidelityTests.withSourceDatabase(sql) { _, sourceConnInfo, _ in
            try await withGuideTarget { (target: GuideTarget) async throws in
                let source = guideSQLLiteral(sourceConnInfo)
                #expect(try await target.call("SELECT pgclone.table(\(source), 'lp', 't', true);").hasPrefix("OK: cloned lp.t (3 rows"))
                _ = try await target.rows("INSERT INTO lp.t VALUES (4, 'uk');")
                let renamed = try await target.call("SELECT pgclone.table(\(source), 'lp', 't', true, NULL, '{\"conflict\": \"rename\"}');")
                #expect(renamed.hasPrefix("OK: cloned lp.t (3 rows"), "\(renamed)")
                #expect(renamed.contains("existing table renamed to lp.t_old"), "\(renamed)")
                #expect(try await target.rows("SELECT count(*) FROM lp.t; SELECT count(*) FROM lp.t_old;") == ["3", "4"])
                #expect(try await target.rows("""
                    SELECT c.oid::regclass, p.oid::regclass FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
                    WHERE c.relkind IN ('r', 'p') ORDER BY c.oid::regclass::text;
                    """) == ["lp.t_def|lp.t", "lp.t_def_low|lp.t_def", "lp.t_def_low_old|lp.t_def_old", "lp.t_def_old|lp.t_old", "lp.t_eu|lp.t",
                             "lp.t_eu_old|lp.t_old", "lp_other.t_us|lp.t", "lp_other.t_us_old|lp.t_old"])
                // Indexes go aside with their tables; the new ones have the source's names.
                #expect(try await target.rows("SELECT indexrelid::regclass FROM pg_index WHERE indrelid IN ('lp.t'::regclass, 'lp.t_old'::regclass) ORDER BY indexrelid::regclass::text;")
                        == ["lp.t_old_pkey", "lp.t_old_region", "lp.t_pkey", "lp.t_region"])
                // A schema clone under rename does the same.
                let schema = try await target.call("SELECT pgclone.schema(\(source), 'lp', true, '{\"conflict\": \"rename\"}');")
                #expect(schema.hasPrefix("OK: cloned schema lp (1 table, 3 rows,"), "\(schema)")
                #expect(try await target.rows("SELECT count(*) FROM lp.t; SELECT count(*) FROM lp.t_old_2; SELECT count(*) FROM lp_other.t_us_old_2;") == ["3", "3", "1"])
                // verify compares the partitions too: the same rows laid out in other partitions
                // are not the same table (round 37: ✓).
                let verify = "SELECT match, detail FROM pgclone.verify(\(source), 'lp') WHERE table_name = 't';"
                #expect(try await target.rows(verify) == ["✓|"])
                _ = try await target.rows("""
                    ALTER TABLE lp.t DETACH PARTITION lp.t_eu;
                    CREATE TABLE lp.t_europe PARTITION OF lp.t FOR VALUES IN ('eu', 'uk');
                    INSERT INTO lp.t_europe SELECT * FROM lp.t_eu;
                    """)
                #expect(try await target.rows(verify) == ["✗|partitions differ: source has lp.t_eu: FOR VALUES IN ('eu', 'uk'), target has lp.t_europe: FOR VALUES IN ('eu', 'uk')"])
            }
        }
    }

    /// A view the schema clone cannot make (it reads a schema not cloned): the tables are
    /// committed, and the error says so and how to finish; with no table at all, what the call
    /// made is dropped again.
    @Test func aSchemaCloneFailingAfterItsTablesSaysWhatIsThere() async throws {
        let sql = """
            CREATE SCHEMA v;
            CREATE SCHEMA v2;
            CREATE TABLE v.base (id int PRIMARY KEY);
            INSERT INTO v.base SELECT generate_series(1, 20);
            CREATE VIEW v.early AS SELECT id FROM v.base;
            CREATE VIEW v2.over AS SELECT id FROM v.early;
            CREATE VIEW v.late AS SELECT id FROM v2.over;
            CREATE SCHEMA v3;
            CREATE TABLE v3.t (id int);
            CREATE SCHEMA w;
            CREATE VIEW w.a AS SELECT 1 AS one;
            CREATE VIEW w.b AS SELECT id FROM v3.t;
            """
        try await CloneFidelityTests.withSourceDatabase(sql) { _, sourceConnInfo, _ in
            try await withGuideTarget { (target: GuideTarget) async throws in
                let source = guideSQLLiteral(sourceConnInfo)
                let failed = try await target.expectError("SELECT pgclone.schema(\(source), 'v');", sqlState: "42P01")
                #expect(failed.stderr.contains("DETAIL:  Already cloned and committed on the target (1 of 1 tables): v.base."), "\(failed.stderr)")
                #expect(failed.stderr.contains("clone again with {\"conflict\": \"skip\"} once the cause is fixed to finish"), "\(failed.stderr)")
                #expect(try await target.rows("SELECT count(*) FROM v.base;") == ["20"])
                // A schema of views only, whose views cannot be made: nothing stays.
                let viewsOnly = try await target.expectError("SELECT pgclone.schema(\(source), 'w');", sqlState: "42P01")
                #expect(viewsOnly.stderr.contains("What this call had created was dropped again: the target is as it was."), "\(viewsOnly.stderr)")
                #expect(try await target.rows("SELECT count(*) FROM pg_namespace WHERE nspname = 'w';") == ["0"])
                // Once the other schema is there, the skip re-run finishes the first.
                _ = try await target.rows("CREATE SCHEMA v2; CREATE VIEW v2.over AS SELECT id FROM v.early;")
                let finished = try await target.call("SELECT pgclone.schema(\(source), 'v', true, '{\"conflict\": \"skip\"}');")
                #expect(finished.hasPrefix("OK:"), "\(finished)")
                #expect(try await target.rows("SELECT count(*) FROM v.late;") == ["20"])
            }
        }
    }

    /// A skip run adds the foreign keys the tables it keeps lack once what they reference is
    /// there: a table cloned alone before its schema (its key skipped: the referenced table was
    /// not there), or the tables a failed or resumed clone committed (a resumed job said
    /// completed without them; round 35, J1).
    @Test func aSkipRunAddsTheForeignKeysOfTheTablesItKeeps() async throws {
        let sql = """
            CREATE SCHEMA fk;
            CREATE TABLE fk.a (id int PRIMARY KEY);
            INSERT INTO fk.a SELECT generate_series(1, 3);
            CREATE TABLE fk.b (id int PRIMARY KEY, a_id int REFERENCES fk.a);
            INSERT INTO fk.b SELECT g, 1 + g % 3 FROM generate_series(1, 20) g;
            CREATE TABLE fk.c (id int PRIMARY KEY, a_id int CONSTRAINT c_to_a REFERENCES fk.a);
            INSERT INTO fk.c VALUES (1, 1);
            """
        try await CloneFidelityTests.withSourceDatabase(sql) { _, sourceConnInfo, _ in
            try await withGuideTarget { (target: GuideTarget) async throws in
                let source = guideSQLLiteral(sourceConnInfo)
                for table in ["b", "c"] {
                    let alone = try await Shell.psql(target.conninfo, "SELECT pgclone.table(\(source), 'fk', '\(table)', true);")
                    #expect(alone.stderr.contains("skipped: referenced table fk.a is not on target"), "\(alone.stderr)")
                }
                // fk.c's rows break its key on the target: kept as it is, and said.
                _ = try await target.rows("UPDATE fk.c SET a_id = 99;")
                let finished = try await Shell.psql(target.conninfo, "SELECT pgclone.schema(\(source), 'fk', true, '{\"conflict\": \"skip\"}');")
                #expect(finished.stdout.hasPrefix("OK: cloned schema fk (1 table, 2 skipped, 3 rows, 0 indexes, 2 constraints,"), "\(finished.stdout)")
                #expect(finished.stderr.contains("foreign key c_to_a on fk.c of a table kept as it was not added (insert or update on table \"c\" violates foreign key constraint \"c_to_a\")"),
                        "\(finished.stderr)")
                #expect(try await target.rows("SELECT conrelid::regclass, conname FROM pg_constraint WHERE connamespace = 'fk'::regnamespace AND contype = 'f';") == ["fk.b|b_a_id_fkey"])
                // A second run adds nothing new, and says again what it could not.
                let again = try await target.call("SELECT pgclone.schema(\(source), 'fk', true, '{\"conflict\": \"skip\"}');")
                #expect(again.hasPrefix("OK: cloned schema fk (0 tables, 3 skipped, 0 rows, 0 indexes, 0 constraints,"), "\(again)")
            }
        }
    }
}
