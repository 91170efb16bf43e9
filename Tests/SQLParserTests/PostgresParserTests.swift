import SQLParser
import Testing

@Suite struct PostgresParserTests {
    @Test func statementsAndLocations() throws {
        let statements = try PostgresParser.parse("SELECT 1; SELECT 2")
        #expect(statements.count == 2)
        #expect(statements.map(\.node.tagged?.tag) == ["SelectStmt", "SelectStmt"])
        #expect(statements[1].location == 9)
    }

    @Test func syntaxErrorsCarryTheServersMessage() {
        #expect(throws: SyntaxError.self) { try PostgresParser.parse("SELEC 1") }
        do { _ = try PostgresParser.parse("SELEC 1") } catch { #expect(error.message == "syntax error at or near \"SELEC\"") }
    }

    /// A hostile statement whose tree is deeper than the reader follows is an error, not a
    /// crash (10,000 terms took the proxy down before the depth limit).
    @Test(arguments: [10_000, 100_000, 500_000, 600_000])
    func deeplyNestedStatementsAreRefused(_ terms: Int) {
        let sql = "SELECT " + Array(repeating: "1", count: terms).joined(separator: "+")
        do {
            _ = try PostgresParser.parse(sql)
            Issue.record("a \(terms)-term expression was read")
        } catch {
            // 600,000 terms are over the length limit; the rest parse (on a parser thread) to a tree too deep to read.
            #expect(error.message.contains(terms > 500_000 ? "too long" : "too complex"), "\(error.message)")
        }
    }

    @Test func ordinaryDepthStillParses() throws {
        let sql = "SELECT " + Array(repeating: "1", count: 300).joined(separator: "+")
        #expect(try PostgresParser.parse(sql).count == 1)
    }
}
