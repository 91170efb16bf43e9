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
        // A -- comment ends at a carriage return, as on the server.
        ("f(1 --\r) x", 8),
        // An E string continued on the next line keeps its escapes: \' does not close it.
        ("f(E'a'\n'\\') ') y", 14),
        ("f(E'a'\n  -- c\n'\\') ') y", 21),
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

    /// Looking back from a name never lands inside a comment, and the word must be right before
    /// the name (only white space and comments between).
    @Test func previousWordSkipsCommentsAndStrings() {
        let commented = "SELECT * FROM -- only\n sec.emp"
        #expect(SQLLexer(commented).previousWord(before: commented.utf8.count - 7)?.0 == "from")
        let block = "SELECT * FROM ONLY /* table */ sec.emp"
        #expect(SQLLexer(block).previousWord(before: block.utf8.count - 7)?.0 == "only")
        let quoted = "SELECT 'only' sec"
        #expect(SQLLexer(quoted).previousWord(before: 14) == nil)
        let dollar = "SELECT $$only$$ x"
        #expect(SQLLexer(dollar).previousWord(before: 16) == nil)
    }

    /// U&"..." names (with UESCAPE) and comments around dots are parts of a qualified name.
    @Test func unicodeEscapedAndCommentedNames() {
        let unicode = #"U&"s\0065c" . U&"!0065mp" UESCAPE '!' x"#
        let parts = SQLLexer(unicode).qualifiedNameParts(startingAt: 0)
        #expect(parts.count == 2)
        #expect(SQLLexer(unicode).endOfQualifiedName(startingAt: 0) == unicode.utf8.count - 2)
        #expect(SQLLexer("sec /* x */ . -- y\n emp z").endOfQualifiedName(startingAt: 0) == 23)
    }

    /// E'...' takes backslash escapes; DATE'...' (a word ending in E) does not.
    @Test func escapeStringsAreOnlyAfterALoneE() {
        #expect(SQLLexer("f(DATE'a\\') x").endOfCall(startingAt: 0) == 11)
        #expect(SQLLexer("f(E'a\\') ') x").endOfCall(startingAt: 0) == 11)
    }
}
