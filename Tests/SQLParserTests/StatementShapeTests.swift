import SQLParser
import Testing

@Suite struct StatementShapeTests {
    private func shape(_ sql: String) -> StatementShape { StatementShape(Array(sql.utf8)) }
    private func key(_ sql: String) -> String {
        String(decoding: shape(sql).key.map { $0 == 0xFF ? UInt8(ascii: "?") : $0 }, as: UTF8.self)
    }

    @Test func numericConstantsAreTakenOut() {
        #expect(key("SELECT abalance FROM pgbench_accounts WHERE aid = 4711;") == "SELECT abalance FROM pgbench_accounts WHERE aid = ?;")
        #expect(key("SELECT 1.5, .5, 2., 1e10, 3.1E-7, 1_000") == "SELECT ?, ?, ?, ?, ?, ?")
        #expect(shape("SELECT x FROM t WHERE a = 17").key == shape("SELECT x FROM t WHERE a = 123456").key)
        #expect(shape("SELECT 1.5e2").constants == [7..<12])
    }

    @Test(arguments: [
        ("SELECT * FROM t1 JOIN a$2 ON true", "SELECT * FROM t1 JOIN a$2 ON true"),
        ("SELECT $1, $23", "SELECT $1, $23"),
        ("SELECT '42', E'4\\'2', \"col 7\", $$ 9 $$, $q$ 8 $q$", "SELECT '42', E'4\\'2', \"col 7\", $$ 9 $$, $q$ 8 $q$"),
        ("SELECT 1 -- 2\n/* 3 /* 4 */ */", "SELECT ? -- 2\n/* 3 /* 4 */ */"),
        ("SELECT -5, +6", "SELECT -?, +?"),
        ("SELECT 1e, 2ex", "SELECT ?e, ?ex"),
        ("SELECT a[1:2], x::numeric(10,2)", "SELECT a[?:?], x::numeric(?,?)"),
        ("SELECT U&'d\\0061t', B'0101', X'1F'", "SELECT U&'d\\0061t', B'0101', X'1F'"),
    ])
    func onlyRealNumericConstantsAreSlots(_ sql: String, _ expected: String) {
        #expect(key(sql) == expected)
    }

    /// Different texts that only look alike must not share a key.
    @Test func differentStatementsDifferentKeys() {
        #expect(shape("SELECT 1 FROM t").key != shape("SELECT '1' FROM t").key)
        #expect(shape("SELECT t1 FROM t").key != shape("SELECT t2 FROM t").key)
        #expect(shape("SELECT $1 FROM t").key != shape("SELECT $2 FROM t").key)
        #expect(shape("SELECT -1 FROM t").key != shape("SELECT 1 FROM t").key)
    }

    @Test func templateFillsInTheNewStatementsConstants() throws {
        let first = Array("SELECT email FROM people WHERE id = 17 LIMIT 2".utf8)
        let firstShape = StatementShape(first)
        let range = 18..<24  // "people"
        #expect(String(decoding: first[range], as: UTF8.self) == "people")
        let template = try #require(ShapedRewrite(text: first, shape: firstShape, replacements: [(range, Array("(SELECT 1 AS email) AS people".utf8))]))
        let second = Array("SELECT email FROM people WHERE id = 123456 LIMIT 30".utf8)
        let secondShape = StatementShape(second)
        #expect(secondShape.key == firstShape.key)
        let rewritten = String(decoding: template.apply(to: second, constants: secondShape.constants), as: UTF8.self)
        #expect(rewritten == "SELECT email FROM (SELECT 1 AS email) AS people WHERE id = 123456 LIMIT 30")
        let same = String(decoding: template.apply(to: first, constants: firstShape.constants), as: UTF8.self)
        #expect(same == "SELECT email FROM (SELECT 1 AS email) AS people WHERE id = 17 LIMIT 2")
    }

    @Test func templatesAtTheEdgesAndOverlaps() throws {
        let text = Array("TABLE t".utf8)
        let template = try #require(ShapedRewrite(text: text, shape: StatementShape(text), replacements: [(0..<7, Array("SELECT 1".utf8))]))
        #expect(template.pieces == [Array("SELECT 1".utf8)])
        // A replacement that covers a constant makes the rewrite depend on it: no template.
        let numbered = Array("SELECT 5 FROM t".utf8)
        #expect(ShapedRewrite(text: numbered, shape: StatementShape(numbered), replacements: [(7..<8, Array("x".utf8))]) == nil)
        #expect(ShapedRewrite(text: numbered, shape: StatementShape(numbered), replacements: [(5..<9, Array("x".utf8))]) == nil)
        let end = try #require(ShapedRewrite(text: numbered, shape: StatementShape(numbered), replacements: [(14..<15, Array("u".utf8))]))
        #expect(end.pieces == [Array("SELECT ".utf8), Array(" FROM u".utf8)])
    }
}
