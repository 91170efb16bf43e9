import Foundation
import PQ
import Testing

/// Large tables copied in parts by several connections: by an integer key, by ctid ranges
/// when there is none, and by size including TOAST. The content equals the source's, and a
/// table a killed clone left half-copied is replaced by the next clone of it.
@Suite(.serialized)
struct SplitCloneTests {
    @Test func splitTablesEqualTheSource() async throws {
        try await withSourceDatabase("split_src") { sourceInfo, source in try await splitTablesEqualTheSource(sourceInfo, source) }
    }

    private func splitTablesEqualTheSource(_ sourceInfo: String, _ source: PQConnection) async throws {
        try await source.exec("""
            CREATE SCHEMA split;
            CREATE TABLE split.keyed (id bigint PRIMARY KEY, v text NOT NULL);
            INSERT INTO split.keyed SELECT g * 3, md5(g::text) FROM generate_series(1, 200000) g;
            CREATE TABLE split.heap_only (v text, n int);
            INSERT INTO split.heap_only SELECT md5(g::text), g % 97 FROM generate_series(1, 200000) g;
            CREATE TABLE split.toasty (id int PRIMARY KEY, doc text);
            ALTER TABLE split.toasty ALTER COLUMN doc SET STORAGE EXTERNAL;
            INSERT INTO split.toasty SELECT g, repeat(md5(g::text), 1000) FROM generate_series(1, 400) g;
            CREATE TABLE split.tiny (id int PRIMARY KEY);
            INSERT INTO split.tiny VALUES (1), (2);
            """)
        try await withGuideTarget { (target: GuideTarget) async throws in
            // What a killed split copy leaves behind: marked incomplete, half its rows.
            try await target.rows("""
                CREATE SCHEMA split;
                CREATE TABLE split.keyed (id bigint, v text);
                INSERT INTO split.keyed VALUES (3, 'half');
                COMMENT ON TABLE split.keyed IS 'pgclone: incomplete copy in progress (split into parts); if no clone is running, drop this table';
                """)
            let output = try await Shell.psql(target.conninfo, "SELECT pgclone.schema(\(guideSQLLiteral(sourceInfo)), 'split', true, '{\"parallel\": 2, \"split_larger_than\": \"1MB\"}');")
            #expect(output.status == 0, "\(output.stderr)")
            #expect(guideLines(output.stdout).first?.hasPrefix("OK: cloned schema split (4 tables") == true, "\(output.stdout)")
            for table in ["keyed", "heap_only", "toasty"] {
                #expect(output.stderr.contains("split.\(table) copied in 2 parts at once"), "\(table): \(output.stderr)")
            }
            #expect(!output.stderr.contains("split.tiny copied in"))
            #expect(output.stderr.contains("removed the incomplete copy of split.keyed left by an interrupted clone"), "\(output.stderr)")
            for table in ["keyed", "heap_only", "toasty", "tiny"] {
                let sql = "SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text COLLATE \"C\")) FROM split.\(table) t;"
                let expected = guideLines(try await Shell.psql(sourceInfo, sql).stdout)
                #expect(try await target.rows(sql) == expected, "split.\(table)")
            }
            // Constraints and comments as on the source; no marker left.
            #expect(try await target.rows("""
                SELECT count(*) FROM pg_constraint WHERE conrelid IN ('split.keyed'::regclass, 'split.toasty'::regclass) AND contype = 'p';
                SELECT obj_description('split.keyed'::regclass, 'pg_class') IS NULL;
                """) == ["2", "t"])
            // One table alone, with workers: copied in parts too; without them (or below the
            // threshold) in one piece.
            let alone = try await Shell.psql(target.conninfo, """
                SELECT pgclone.table(\(guideSQLLiteral(sourceInfo)), 'split', 'heap_only', true, 'heap_alone', '{"parallel": 2, "split_larger_than": "1MB"}');
                SELECT pgclone.table(\(guideSQLLiteral(sourceInfo)), 'split', 'heap_only', true, 'heap_whole', '{"parallel": 2}');
                """)
            #expect(alone.status == 0, "\(alone.stderr)")
            #expect(guideLines(alone.stdout) == ["OK: cloned split.heap_only to split.heap_alone (200000 rows)",
                                                 "OK: cloned split.heap_only to split.heap_whole (200000 rows)"], "\(alone.stdout)")
            #expect(alone.stderr.components(separatedBy: "copied in 2 parts at once").count == 2, "\(alone.stderr)")
            let sql = "SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text COLLATE \"C\")) FROM split.heap_only t;"
            let expected = guideLines(try await Shell.psql(sourceInfo, sql).stdout)
            for table in ["heap_alone", "heap_whole"] {
                #expect(try await target.rows(sql.replacingOccurrences(of: "split.heap_only", with: "split.\(table)")) == expected, "\(table)")
            }
        }
    }
}

/// The sessions that build a clone's indexes and constraints get maintenance_work_mem raised
/// (1 GB unless the option says otherwise, never lowered below the server's, 0 leaves it).
@Suite struct CloneMaintenanceMemoryTests {
    @Test func indexBuildsGetTheOptionsMaintenanceWorkMem() async throws {
        try await withSourceDatabase("mwm_src") { sourceInfo, source in try await indexBuildsGetTheOptionsMaintenanceWorkMem(sourceInfo, source) }
    }

    private func indexBuildsGetTheOptionsMaintenanceWorkMem(_ sourceInfo: String, _ source: PQConnection) async throws {
        // A CHECK constraint is validated (after the rows, in the table's transaction) by a
        // function that, on the target, writes down the setting it runs under.
        let function = """
            CREATE TABLE public.mwm_seen (setting text);
            CREATE FUNCTION public.mwm_note(int) RETURNS boolean LANGUAGE plpgsql AS
              $$BEGIN INSERT INTO public.mwm_seen VALUES (current_setting('maintenance_work_mem')); RETURN true; END$$;
            """
        try await source.exec(function + """
            CREATE TABLE public.noted (id int PRIMARY KEY, CONSTRAINT noted_check CHECK (public.mwm_note(id)));
            INSERT INTO public.noted VALUES (1);
            TRUNCATE public.mwm_seen;
            """)
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.rows(function)
            let server = try await target.rows("SELECT current_setting('maintenance_work_mem');")
            #expect(server != ["1GB"] && server != ["512MB"], "the test needs a server default other than the values tried: \(server)")
            for (index, (option, expected)) in [("", "1GB"), (", \"maintenance_work_mem\": \"512MB\"", "512MB"), (", \"maintenance_work_mem\": 0", server.first ?? "")].enumerated() {
                let output = try await Shell.psql(target.conninfo, """
                    TRUNCATE public.mwm_seen;
                    SELECT pgclone.table(\(guideSQLLiteral(sourceInfo)), 'public', 'noted', true, 'noted_\(index)', '{"conflict": "error"\(option)}');
                    SELECT DISTINCT setting FROM public.mwm_seen;
                    """)
                #expect(output.status == 0, "\(output.stderr)")
                #expect(guideLines(output.stdout) == ["OK: cloned public.noted to public.noted_\(index) (1 row)", expected], "\(option): \(output.stdout)")
            }
            let refused = try await Shell.psql(target.conninfo, "SELECT pgclone.table(\(guideSQLLiteral(sourceInfo)), 'public', 'noted', true, 'noted_x', '{\"maintenance_work_mem\": \"100kB\"}');")
            #expect(refused.stderr.contains("option \"maintenance_work_mem\" must be 0 (the server's setting) or from 1MB to 1TB"), "\(refused.stderr)")
        }
    }
}

/// A source database of its own (named PREFIX_random, dropped afterwards, also on failure):
/// `body` gets its conninfo and a connection to it.
func withSourceDatabase(_ prefix: String, _ body: (String, PQConnection) async throws -> Void) async throws {
    let environment = try TestEnvironment.require()
    let name = "\(prefix)_\(guideRandomSuffix())"
    let admin = try await PQConnection.connect("host=127.0.0.1 port=\(environment.sourcePort) dbname=postgres user=postgres password=\(environment.password)")
    try await admin.exec("CREATE DATABASE \(name)")
    let sourceInfo = "host=127.0.0.1 port=\(environment.sourcePort) dbname=\(name) user=postgres password=\(environment.password)"
    do {
        try await body(sourceInfo, try await PQConnection.connect(sourceInfo))
    } catch {
        _ = try? await admin.exec("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
        throw error
    }
    _ = try? await admin.exec("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
}
