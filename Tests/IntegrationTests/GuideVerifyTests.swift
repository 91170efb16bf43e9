import Foundation
import PQ
import Testing

/// Guide test 13 (verify a clone) and the checksum mode.
@Suite("Guide test 13: verify")
struct GuideVerifyTests {
    @Test("13.1-13.4 verify a schema, every schema, and a mismatch after DELETE")
    func guideTest13() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            // 13.1
            try await target.rows("DROP SCHEMA IF EXISTS test_schema CASCADE;")
            _ = try await target.call("""
                SELECT pgclone.schema(
                \(target.source),
                'test_schema', true
                );
                """)
            // 13.2
            #expect(try await target.rows("""
                SELECT * FROM pgclone.verify(
                \(target.source),
                'test_schema'
                );
                """) == ["test_schema|customers|10|10|✓|", "test_schema|employees|5|5|✓|", "test_schema|order_items|11|11|✓|",
                         "test_schema|order_log|9|9|✓|", "test_schema|orders|8|8|✓|"])
            // 13.3: every user schema; those not cloned are missing on the target.
            let all = try await target.rows("""
                SELECT * FROM pgclone.verify(
                \(target.source)
                );
                """)
            #expect(all.contains("test_schema|customers|10|10|✓|"))
            #expect(all.contains("public|simple_test|3||✗ (missing on target)|"), "\(all)")
            #expect(all.contains("Mixed Case|Order Heads|3||✗ (missing on target)|"), "\(all)")
            #expect(all.count == 15, "\(all)")
            // Checksum mode counts a table that is on one side only.
            let summed = try await target.rows("SELECT * FROM pgclone.verify(\(target.source), NULL, '{\"mode\": \"checksum\"}');")
            #expect(summed.contains("public|simple_test|3||✗ (missing on target)|") && summed.contains("test_schema|customers|10|10|✓|"), "\(summed)")
            // 13.4
            try await target.rows("DELETE FROM test_schema.customers WHERE id > 5;")
            try await target.rows("ANALYZE test_schema.customers;")
            let mismatch = try await target.rows("""
                SELECT * FROM pgclone.verify(
                \(target.source),
                'test_schema'
                );
                """)
            #expect(mismatch.first == "test_schema|customers|10|5|✗|", "\(mismatch)")
            #expect(mismatch.dropFirst().allSatisfy { $0.contains("|✓|") }, "\(mismatch)")
            // Modes: estimates agree after ANALYZE; checksum names the keys.
            #expect(try await target.rows("SELECT table_name, match FROM pgclone.verify(\(target.source), 'test_schema', '{\"mode\": \"estimate\"}') WHERE table_name = 'customers';")
                    == ["customers|✗"])
            #expect(try await target.rows("SELECT detail FROM pgclone.verify(\(target.source), 'test_schema', '{\"mode\": \"checksum\"}') WHERE table_name = 'customers';")
                    == ["5 rows differ at id 6, 7, 8, 9, 10"])
            // More than max_keys: a lower bound and the first keys (round 37: a wrong count).
            #expect(try await target.rows("SELECT detail FROM pgclone.verify(\(target.source), 'test_schema', '{\"mode\": \"checksum\", \"max_keys\": 2}') WHERE table_name = 'customers';")
                    == ["more than 2 rows differ, among them at id 6, 7"])
            #expect(try await target.rows("SELECT detail FROM pgclone.verify(\(target.source), 'test_schema', '{\"mode\": \"checksum\", \"max_keys\": 0}') WHERE table_name = 'customers';")
                    == ["rows differ"])
            try await target.expectError("SELECT * FROM pgclone.verify(\(target.source), 'test_schema', '{\"mode\": \"fast\"}');", sqlState: "22023",
                                         message: "option \"mode\" must be \"count\" (or \"exact\"), \"estimate\" or \"checksum\"")
            try await target.expectError("SELECT * FROM pgclone.verify(\(target.source), 'nope');", sqlState: "3F000",
                                         message: "schema \"nope\" does not exist on source")
        }
    }

    /// Checksum mode over a million rows: identical tables match; one changed row (and one the
    /// target lacks) are found and named by their keys; no rows leave the servers.
    @Test func checksumFindsOneChangedRowInAMillion() async throws {
        let environment = try TestEnvironment.require()
        let suffix = guideRandomSuffix()
        let sourceDatabase = "verify_src_\(suffix)"
        let sourceAdmin = try await PQConnection.connect("host=127.0.0.1 port=\(environment.sourcePort) dbname=postgres user=postgres password=\(environment.password)")
        try await sourceAdmin.exec("CREATE DATABASE \(sourceDatabase)")
        defer { Task { _ = try? await sourceAdmin.exec("DROP DATABASE IF EXISTS \(sourceDatabase) WITH (FORCE)") } }
        let fill = """
            CREATE SCHEMA big;
            CREATE TABLE big.events (id bigint PRIMARY KEY, kind text, amount numeric(12,2), at timestamptz, payload jsonb);
            INSERT INTO big.events SELECT g, 'kind ' || (g % 7), (g % 1000) / 3.0, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
                   jsonb_build_object('n', g) FROM generate_series(1, 1000000) g;
            CREATE TABLE big.no_key (v text);
            INSERT INTO big.no_key SELECT 'v' || g FROM generate_series(1, 1000) g;
            ANALYZE big.events;
            """
        let source = try await PQConnection.connect("host=127.0.0.1 port=\(environment.sourcePort) dbname=\(sourceDatabase) user=postgres password=\(environment.password)")
        try await source.exec(fill)
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.direct(fill, database: target.database)
            let sourceInfo = guideSQLLiteral("host=127.0.0.1 port=\(environment.sourcePort) dbname=\(sourceDatabase) user=postgres password=\(environment.password)")
            let checksum = "SELECT table_name, source_rows, target_rows, match, detail FROM pgclone.verify(\(sourceInfo), 'big', '{\"mode\": \"checksum\"}');"
            #expect(try await target.rows(checksum) == ["events|1000000|1000000|✓|", "no_key|1000|1000|✓|"])
            try await target.direct("""
                UPDATE big.events SET amount = amount + 0.01 WHERE id = 654321;
                DELETE FROM big.events WHERE id = 17;
                UPDATE big.no_key SET v = 'changed' WHERE v = 'v500';
                """, database: target.database)
            #expect(try await target.rows(checksum) == [
                "events|1000000|999999|✗|2 rows differ at id 17, 654321",
                "no_key|1000|1000|✗|same row count, different content (no single-column integer key to narrow it down)",
            ])
        }
    }
    /// One differing row is named from the first pass's sums: a changed row, a row missing on
    /// the target and one only on the target, under bigint keys far from zero (the sums are
    /// taken relative to the smallest key) and under keys too far apart for that (bisection).
    @Test func checksumNamesOneDifferingRowFromTheSums() async throws {
        let environment = try TestEnvironment.require()
        let suffix = guideRandomSuffix()
        let sourceDatabase = "verify_one_\(suffix)"
        let sourceAdmin = try await PQConnection.connect("host=127.0.0.1 port=\(environment.sourcePort) dbname=postgres user=postgres password=\(environment.password)")
        try await sourceAdmin.exec("CREATE DATABASE \(sourceDatabase)")
        defer { Task { _ = try? await sourceAdmin.exec("DROP DATABASE IF EXISTS \(sourceDatabase) WITH (FORCE)") } }
        let fill = """
            CREATE SCHEMA one;
            CREATE TABLE one.far (id bigint PRIMARY KEY, v text, n numeric);
            INSERT INTO one.far SELECT 9000000000000 + g * 3, 'v' || g, g / 7.0 FROM generate_series(1, 20000) g;
            CREATE TABLE one.wide (id bigint PRIMARY KEY, v text);
            INSERT INTO one.wide SELECT CASE WHEN g = 1 THEN -1000000000000 ELSE g END, 'w' || g FROM generate_series(1, 5000) g;
            CREATE TABLE one.small ("Key" int PRIMARY KEY, v jsonb);
            INSERT INTO one.small SELECT g, jsonb_build_object('g', g) FROM generate_series(-500, 500) g;
            CREATE DOMAIN one.code AS varchar(10);
            CREATE TYPE one.mood AS ENUM ('sad', 'ok');
            CREATE TABLE one.swap (id int PRIMARY KEY, a text, b text, c one.code, m one.mood, r int4range, arr int[]);
            INSERT INTO one.swap SELECT g, 'a' || g, 'b' || g, 'c' || g, 'ok', int4range(g, g + 2), ARRAY[g, NULL] FROM generate_series(1, 100) g;
            CREATE TABLE one.shapes (id int PRIMARY KEY, p point);
            INSERT INTO one.shapes SELECT g, point(g, g) FROM generate_series(1, 100) g;
            ANALYZE;
            """
        let source = try await PQConnection.connect("host=127.0.0.1 port=\(environment.sourcePort) dbname=\(sourceDatabase) user=postgres password=\(environment.password)")
        try await source.exec(fill)
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.direct(fill, database: target.database)
            let sourceInfo = guideSQLLiteral("host=127.0.0.1 port=\(environment.sourcePort) dbname=\(sourceDatabase) user=postgres password=\(environment.password)")
            let checksum = "SELECT table_name, source_rows, target_rows, match, detail FROM pgclone.verify(\(sourceInfo), 'one', '{\"mode\": \"checksum\"}');"
            #expect(try await target.rows(checksum) == ["far|20000|20000|✓|", "shapes|100|100|✓|", "small|1001|1001|✓|", "swap|100|100|✓|", "wide|5000|5000|✓|"])
            // Values swapped between two columns, a NULL for a value, a point (no hash function: hashed as text).
            try await target.direct("""
                UPDATE one.swap SET a = b, b = a WHERE id = 7;
                UPDATE one.swap SET arr = ARRAY[40, 41] WHERE id = 40;
                UPDATE one.shapes SET p = point(0, 0) WHERE id = 9;
                """, database: target.database)
            let changed = try await target.rows(checksum)
            #expect(changed.contains("swap|100|100|✗|2 rows differ at id 7, 40") && changed.contains("shapes|100|100|✗|1 row differs at id 9"), "\(changed)")
            try await target.direct("""
                UPDATE one.swap SET a = b, b = a WHERE id = 7;
                UPDATE one.swap SET arr = ARRAY[40, NULL] WHERE id = 40;
                UPDATE one.shapes SET p = point(9, 9) WHERE id = 9;
                UPDATE one.far SET n = n + 1 WHERE id = 9000000000000 + 12345 * 3;
                DELETE FROM one.wide WHERE id = -1000000000000;
                INSERT INTO one.small VALUES (501, '{"g": 501}');
                """, database: target.database)
            let one = try await target.rows(checksum)
            #expect(one == [
                "far|20000|20000|✗|1 row differs at id 9000000037035",
                "shapes|100|100|✓|",
                "small|1001|1002|✗|1 row differs at Key 501",
                "swap|100|100|✓|",
                "wide|5000|4999|✗|1 row differs at id -1000000000000",
            ], "\(one)")
            // Two changed rows in the near-zero table: named by bisection, the same way.
            try await target.direct("UPDATE one.small SET v = '{}' WHERE \"Key\" IN (-3, 250)", database: target.database)
            let three = try await target.rows(checksum)
            #expect(three.contains("small|1001|1002|✗|3 rows differ at Key -3, 250, 501"), "\(three)")
        }
    }
}
