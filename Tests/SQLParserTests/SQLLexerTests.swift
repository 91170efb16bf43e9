import SQLParser
import Testing

@Suite struct SQLLexerTests {
    /// Parentheses inside strings, quoted names, comments and dollar quotes (empty tag
    /// included) do not count.
    @Test(arguments: [
        ("f(1, 2) + 3", 7),
        ("f('a)', \"b)\", $$ ) $$, $t$ ) $t$, E'\\') ') x", 42),
        ("f(/* ) */ 1 -- )\n) y", 18),
        ("f(g(1), (2)) z", 12),
    ])
    func endOfCall(_ sql: String, _ end: Int) {
        #expect(SQLLexer(sql).endOfCall(startingAt: 0) == end)
    }

    @Test func unclosedCallHasNoEnd() {
        #expect(SQLLexer("f($$ ) ").endOfCall(startingAt: 0) == nil)
        #expect(SQLLexer("f('x').").endOfCall(startingAt: 0) == 6)
    }

    @Test func qualifiedNames() {
        #expect(SQLLexer("test_schema . \"Mixed Case\" AS x").endOfQualifiedName(startingAt: 0) == 26)
        #expect(SQLLexer("people WHERE").endOfQualifiedName(startingAt: 0) == 6)
        #expect(SQLLexer("SELECT * FROM ONLY t").previousWord(before: 19)?.0 == "only")
    }
}
