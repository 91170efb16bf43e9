import Foundation
import Testing

/// Objects whose order of creation matters (fidelity round 31, S3): a `BEGIN ATOMIC` function
/// is checked when it is made, so one that reads a view comes after that view and before the
/// views that call it (it was made after every view, and the schema clone failed).
@Suite struct CloneOrderTests {
    @Test func aFunctionReadingAViewIsMadeBetweenTheViews() async throws {
        let sql = """
            CREATE SCHEMA ch;
            CREATE TABLE ch.b (id int PRIMARY KEY);
            INSERT INTO ch.b VALUES (1), (2);
            CREATE VIEW ch.v1 AS SELECT id FROM ch.b;
            CREATE FUNCTION ch.cnt() RETURNS bigint LANGUAGE sql STABLE BEGIN ATOMIC SELECT count(*) FROM ch.v1; END;
            CREATE FUNCTION ch.twice() RETURNS bigint LANGUAGE sql STABLE BEGIN ATOMIC SELECT ch.cnt() * 2; END;
            CREATE VIEW ch.v2 AS SELECT ch.twice() AS c;
            CREATE MATERIALIZED VIEW ch.m AS SELECT ch.cnt() AS c;
            """
        try await CloneFidelityTests.withSourceDatabase(sql) { _, sourceConnInfo, _ in
            try await withGuideTarget { (target: GuideTarget) async throws in
                let result = try await target.call("SELECT pgclone.schema(\(guideSQLLiteral(sourceConnInfo)), 'ch');")
                #expect(result.hasPrefix("OK: cloned schema ch (1 table, 2 rows,"), "\(result)")
                #expect(result.contains("2 functions") && result.contains("2 views") && result.contains("1 materialized view"), "\(result)")
                #expect(try await target.rows("SELECT c FROM ch.v2; SELECT c FROM ch.m;") == ["4", "2"])
                // Replaced in place by a second clone, the same.
                let again = try await target.call("SELECT pgclone.schema(\(guideSQLLiteral(sourceConnInfo)), 'ch', true, '{\"conflict\": \"replace\"}');")
                #expect(again.hasPrefix("OK: cloned schema ch"), "\(again)")
                #expect(try await target.rows("SELECT c FROM ch.v2;") == ["4"])
            }
        }
    }
}
