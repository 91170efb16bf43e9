import CloneEngine
import Masking
import JSON
import SQLParser
@testable import Proxy
import Testing

/// The rewriter is pure: a statement and a masking context in, a rewritten statement,
/// a refusal or a request for a fresher context out.
@Suite struct MaskingRewriterTests {
    static let employees = MaskingContext.Table(
        oid: 16500, schema: "test_schema", name: "employees", resolvesUnqualified: false,
        columns: [
            .init(number: 1, name: "id", type: "integer", strategy: nil),
            .init(number: 2, name: "email", type: "text", strategy: .email),
            .init(number: 3, name: "ssn", type: "text", strategy: .null),
        ])

    static func context(unqualified: Bool = false, riskyDefiners: Set<String> = [], userFunctions: Set<String> = [], backedUp: Bool = false) -> MaskingContext {
        var table = employees
        table.resolvesUnqualified = unqualified
        if backedUp {
            table.reads = .views(all: "pgclone_masked.\"v\"", only: "pgclone_masked.\"v (only)\"")
            table.serverDenies = true
        }
        var context = MaskingContext(role: "reader", tables: [table], taintedRelations: ["emp_view"], riskyDefiners: riskyDefiners, policyVersion: 1)
        context.userFunctions = userFunctions
        return context
    }

    static let builtins: Set<String> = ["count", "upper", "lower", "left", "now", "row_to_json", "ts_rewrite", "=", "<", ">", "<=", ">=", "||", "~~", "+", "-",
                                        "type:int4", "type:text", "type:varchar", "type:numeric", "type:tsquery"]
    private func rewrite(_ sql: String, _ context: MaskingContext = context()) -> MaskingRewriter.Result {
        MaskingRewriter(context: context, builtinFunctions: Self.builtins).rewrite(sql)
    }
    private var masked: String { Self.employees.maskedRelation(only: false).text }
    static var maskedEmployees: String { employees.maskedRelation(only: false).text + " AS \"employees\"" }

    @Test func readsOfTheMaskedTableBecomeTheMaskedRelation() {
        #expect(rewrite("SELECT email FROM test_schema.employees WHERE id = 1")
                == .rewritten("SELECT email FROM \(masked) AS \"employees\" WHERE id = 1"))
        #expect(rewrite("SELECT e.email FROM test_schema.employees e") == .rewritten("SELECT e.email FROM \(masked) e"))
        #expect(rewrite("SELECT * FROM ONLY test_schema.employees") == .rewritten("SELECT * FROM \(Self.employees.maskedRelation(only: true).text) AS \"employees\""))
        #expect(rewrite("TABLE test_schema.employees") == .rewritten("SELECT * FROM \(masked) AS \"employees\""))
        // ONLY (t): the parentheses go with the name; with an alias after them, and under the server backstop.
        #expect(rewrite("SELECT id FROM ONLY ( test_schema.employees ) WHERE id = 1")
                == .rewritten("SELECT id FROM \(Self.employees.maskedRelation(only: true).text) AS \"employees\" WHERE id = 1"))
        #expect(rewrite("SELECT e.id FROM ONLY (test_schema.employees) e") == .rewritten("SELECT e.id FROM \(Self.employees.maskedRelation(only: true).text) e"))
        #expect(rewrite("SELECT id FROM ONLY (test_schema.employees)", Self.context(backedUp: true))
                == .rewritten("SELECT id FROM ONLY pgclone_masked.\"v (only)\" AS \"employees\""))
        // COPY t TO reads t's own rows only, as the server does.
        let only = Self.employees.maskedRelation(only: true).text
        #expect(rewrite("COPY test_schema.employees TO STDOUT")
                == .rewritten("COPY (SELECT * FROM \(only) AS \"employees\") TO STDOUT"))
        #expect(rewrite("COPY test_schema.employees (id, email) TO STDOUT")
                == .rewritten("COPY (SELECT \"id\", \"email\" FROM \(only) AS \"employees\") TO STDOUT"))
        var partitioned = Self.context()
        partitioned.tables[0].isPartitioned = true
        #expect(rewrite("COPY test_schema.employees TO STDOUT", partitioned)
                == .refused(AdminError("42809", "cannot copy from partitioned table \"employees\"", hint: "Try the COPY (SELECT ...) TO variant.")))
        #expect(rewrite("SELECT 1 FROM \"test_schema\".\"employees\"") == .rewritten("SELECT 1 FROM \(masked) AS \"employees\""))
    }

    /// A view cannot be sampled: BERNOULLI and SYSTEM become a filter on random(), with the
    /// table's alias kept; anything else is refused, as is a percentage that is not a constant.
    /// A system column named sends the read to the relation that carries them; a `*` over the
    /// masked table must still be the table's own columns (round 15: `SELECT xmin, ctid, *`
    /// showed the six system columns a second time).
    @Test func aStarNextToASystemColumnIsTheTablesOwnColumns() {
        let system = Self.employees.maskedRelation(only: false, system: true).text
        let own = "\"employees\".\"id\", \"employees\".\"email\", \"employees\".\"ssn\""
        #expect(rewrite("SELECT ctid, * FROM test_schema.employees") == .rewritten("SELECT ctid, \(own) FROM \(system) AS \"employees\""))
        #expect(rewrite("SELECT e.xmin, e . * FROM test_schema.employees e WHERE e.id = 1")
                == .rewritten("SELECT e.xmin, \"e\".\"id\", \"e\".\"email\", \"e\".\"ssn\" FROM \(system) e WHERE e.id = 1"))
        // Under the server backstop: the view with system columns, the same columns.
        let systemView = Self.context(backedUp: true).tables[0].maskedRelation(only: false, system: true).text
        #expect(rewrite("SELECT * FROM test_schema.employees WHERE ctid = '(0,1)'", Self.context(backedUp: true))
                == .rewritten("SELECT \(own) FROM \(systemView) AS \"employees\" WHERE ctid = '(0,1)'"))
        // Without a system column, * stays (the relation has only the table's columns).
        #expect(rewrite("SELECT * FROM test_schema.employees") == .rewritten("SELECT * FROM \(masked) AS \"employees\""))
        // A bare * over the masked table and another relation cannot be written out here.
        if case .refused(let error) = rewrite("SELECT ctid, * FROM test_schema.employees, pg_catalog.pg_class c") {
            #expect(error.message.contains("list the columns"), "\(error.message)")
        } else {
            Issue.record("a * over a join with a system column was not refused")
        }
    }

    @Test func tableSamplesOfAMaskedTableBecomeAFilter() {
        let masked = Self.employees.maskedRelation(only: false).text
        #expect(rewrite("SELECT count(*) FROM test_schema.employees e TABLESAMPLE BERNOULLI (10) WHERE e.id > 1")
                == .rewritten("SELECT count(*) FROM (SELECT * FROM \(masked) AS pgclone_sample WHERE pg_catalog.random() OPERATOR(pg_catalog.<) ((10)::pg_catalog.float8 OPERATOR(pg_catalog./) 100)) e  WHERE e.id > 1"))
        for sql in ["SELECT 1 FROM test_schema.employees TABLESAMPLE SYSTEM (10) REPEATABLE (1)",
                    "SELECT 1 FROM test_schema.employees TABLESAMPLE BERNOULLI ((SELECT count(*) FROM test_schema.employees))"] {
            guard case .refused = rewrite(sql) else {
                Issue.record("\(sql) was not refused")
                continue
            }
        }
    }

    /// The server ends a -- comment at a carriage return as at a line feed. Read only up to a
    /// line feed, the sample's percentage ran past its parenthesis and swallowed the second read
    /// of the table, which went to the server unrewritten.
    @Test func aCommentEndsAtACarriageReturnAsOnTheServer() {
        let sql = "SELECT * FROM (SELECT id, email FROM test_schema.employees TABLESAMPLE BERNOULLI (100 --\r)) s UNION ALL SELECT id, email FROM test_schema.employees WHERE 0 < ((1\n))"
        switch rewrite(sql) {
        case .rewritten(let text):
            #expect(!text.contains("FROM test_schema.employees"), "\(text)")
            #expect(text.ranges(of: Self.employees.maskedRelation(only: false).text).count == 2, "\(text)")
        case let other:
            Issue.record("\(other)")
        }
    }

    /// Names compare as the server compares them, code point for code point: a CTE named with
    /// the Kelvin sign is not the table "Kunden" (Swift's String equality says it is).
    @Test func aCTEWithACanonicallyEquivalentNameDoesNotHideTheTable() {
        var kunden = Self.employees
        kunden.schema = "o8"
        kunden.name = "Kunden"
        kunden.resolvesUnqualified = true
        let context = MaskingContext(role: "reader", tables: [kunden], taintedRelations: [], riskyDefiners: [], policyVersion: 1)
        let sql = "WITH \"\u{212A}unden\" AS (SELECT 1 AS ssn) SELECT ssn FROM \"Kunden\""
        guard case .rewritten(let text) = rewrite(sql, context) else {
            Issue.record("\(rewrite(sql, context))")
            return
        }
        #expect(text.hasSuffix("SELECT ssn FROM \(kunden.maskedRelation(only: false).text) AS \"Kunden\""), "\(text)")
        #expect(ExactName("\u{212A}") != ExactName("K") && ExactName("se\u{301}") != ExactName("s\u{e9}") && ExactName("s\u{e9}") == ExactName("s\u{e9}"))
    }

    @Test func everyOneOfManyReadsIsRewritten() throws {
        let parts = Array(repeating: "SELECT email FROM test_schema.employees", count: 400)
        guard case .rewritten(let text) = rewrite(parts.joined(separator: " UNION ALL ")) else {
            Issue.record("not rewritten")
            return
        }
        #expect(text == Array(repeating: "SELECT email FROM \(masked) AS \"employees\"", count: 400).joined(separator: " UNION ALL "))
        // Each UNION nests the tree one level deeper: past the reader's depth limit the statement is refused.
        let tooDeep = Array(repeating: "SELECT email FROM test_schema.employees", count: 2000).joined(separator: " UNION ALL ")
        guard case .refused(let error) = rewrite(tooDeep) else {
            Issue.record("a 2000-way UNION was not refused")
            return
        }
        #expect(error.message.contains("too complex"), "\(error.message)")
    }

    @Test func namesResolveAsTheServerWould() {
        // Unqualified: only when the search_path reaches the table, where the server backs the
        // masking; where only readable code runs (a view of the role's own could move
        // search_path unseen), a name that any masked table has is taken to be that table.
        let backedUp = Self.context(backedUp: true)
        #expect(rewrite("SELECT email FROM employees", backedUp) == .unchanged)
        #expect(rewrite("SELECT email FROM employees") == .rewritten("SELECT email FROM \(masked) AS \"employees\""))
        #expect(rewrite("SELECT email FROM employees", Self.context(unqualified: true)) == .rewritten("SELECT email FROM \(masked) AS \"employees\""))
        // A CTE named like the table is the CTE; inside the CTE's own body the name is the table.
        #expect(rewrite("WITH employees AS (SELECT 1 AS email) SELECT email FROM employees", Self.context(unqualified: true)) == .unchanged)
        #expect(rewrite("WITH x AS (SELECT email FROM test_schema.employees) SELECT * FROM x")
                == .rewritten("WITH x AS (SELECT email FROM \(masked) AS \"employees\") SELECT * FROM x"))
        // Mentions in strings and comments are not reads.
        #expect(rewrite("SELECT 'FROM test_schema.employees' -- test_schema.employees") == .unchanged)
    }

    /// A syntax error is PostgreSQL's own (42601, its message); where the server backs every
    /// masked table, what pgclone cannot parse goes to the server as written.
    @Test func syntaxErrorsAreThePostgreSQLError() {
        #expect(rewrite("SELEC 1") == .refused(AdminError("42601", "syntax error at or near \"SELEC\"")))
        #expect(rewrite("SELEC 1", Self.context(backedUp: true)) == .unchanged)
        let bytes = Array("SELEC 1".utf8)
        #expect(MaskingRewriter(context: Self.context(backedUp: true)).analyze("SELEC 1", bytes: bytes).effects == .all)
    }

    /// Definitions read no rows: a masked role may make, change and drop its own objects. The
    /// names they define are not reads (not rewritten even when they match a masked table's);
    /// the queries inside them are.
    @Test(arguments: [
        ("CREATE TABLE employees (id int, ssn text)", nil),
        ("DROP TABLE IF EXISTS employees, mine CASCADE", nil),
        ("CREATE SCHEMA s CREATE TABLE employees (id int)", nil),
        ("CREATE TYPE mood AS ENUM ('sad', 'ok')", nil),
        ("CREATE TYPE pair AS (a int, b text)", nil),
        ("CREATE TYPE r AS RANGE (subtype = int4)", nil),
        ("CREATE TEMP TABLE t (x int DEFAULT 1 CHECK (x > 0))", nil),
        ("ALTER TABLE test_schema.employees ADD COLUMN note text NOT NULL DEFAULT 'n', ALTER ssn SET STATISTICS 0", nil),
        ("SELECT pg_catalog.lower('X'), lower('Y')", nil),
        ("TRUNCATE employees", nil),
        ("COMMENT ON TABLE employees IS 'x'", nil),
        ("ALTER ROLE reader PASSWORD 'x'", nil),
        ("CREATE INDEX ON mine (upper(x))", nil),
        ("CREATE TABLE mine (x text REFERENCES other (y))", nil),
        ("CREATE VIEW v AS SELECT ssn FROM test_schema.employees",
         "CREATE VIEW v AS SELECT ssn FROM \(Self.maskedEmployees)"),
        ("CREATE TABLE copy AS SELECT * FROM employees",
         "CREATE TABLE copy AS SELECT * FROM \(Self.maskedEmployees)"),
        ("SELECT ssn INTO employees_copy FROM employees",
         "SELECT ssn INTO employees_copy FROM \(Self.maskedEmployees)"),
    ] as [(String, String?)])
    func definitionsRunAndTheirQueriesAreRewritten(_ sql: String, _ expected: String?) {
        let result = rewrite(sql, Self.context(unqualified: true))
        #expect(result == (expected.map { .rewritten($0) } ?? .unchanged), "\(sql)")
    }

    /// Where the server backs every masked table, any statement may run: DO, CALL, extensions,
    /// triggers; the server refuses what they would read.
    @Test func everyStatementRunsWhereTheServerBacksTheMasking() {
        for sql in ["DO $$ BEGIN NULL; END $$", "CREATE EXTENSION hstore", "CREATE TRIGGER t BEFORE INSERT ON mine FOR EACH ROW EXECUTE FUNCTION f()",
                    "CALL p()", "CREATE TABLE mine (x text REFERENCES test_schema.employees (ssn))"] {
            #expect(rewrite(sql, Self.context(userFunctions: ["p", "f"], backedUp: true)) == .unchanged, "\(sql)")
        }
        let effects = MaskingRewriter(context: Self.context(backedUp: true)).analyze("DO $$ BEGIN NULL; END $$", bytes: Array("DO $$ BEGIN NULL; END $$".utf8)).effects
        #expect(effects == .all)
    }

    @Test(arguments: [
        ("DO $$ BEGIN NULL; END $$", "DO is not allowed"),
        ("UPDATE test_schema.employees SET ssn = NULL", "UPDATE on test_schema.employees is not allowed"),
        ("SELECT query_to_xml('select 1', true, false, '')", "function query_to_xml() is not allowed"),
        ("SELECT * FROM emp_view", "emp_view reads a masked table"),
        ("SELECT leak()", "function leak() runs with the rights of its owner"),
        ("SELECT ts_rewrite('a'::tsquery, 'SELECT ssn, ssn FROM test_schema.employees')", "function ts_rewrite() is not allowed"),
        ("SELECT lo_get(16000)", "function lo_get() is not allowed"),
        ("SELECT dblink('dbname=x', 'SELECT 1')", "function dblink() is not allowed"),
        ("EXPLAIN ANALYZE SELECT 1", "EXPLAIN ANALYZE is not allowed"),
        ("CREATE TRIGGER t BEFORE INSERT ON mine FOR EACH ROW EXECUTE FUNCTION f()", "CREATE TRIGGER is not allowed"),
        ("CREATE EXTENSION hstore", "CREATE EXTENSION is not allowed"),
        ("CREATE TABLE mine (x text DEFAULT leak())", "function leak() runs with the rights of its owner"),
        ("CREATE TABLE mine (x text DEFAULT report())", "function report() is not built in"),
        ("CREATE INDEX ON mine ((report(x)))", "function report() is not built in"),
        ("CREATE TABLE mine (x text REFERENCES test_schema.employees (ssn))", "a foreign key to masked table test_schema.employees is not allowed"),
        ("ALTER TABLE mine ADD FOREIGN KEY (x) REFERENCES test_schema.employees (ssn)", "a foreign key to masked table test_schema.employees is not allowed"),
        ("CREATE TYPE r AS RANGE (subtype = int4, subtype_diff = report)", "with a subtype_diff function is not allowed"),
        // A masked owner's definitions that would read values or move them out of the policy.
        ("ALTER TABLE test_schema.employees ADD CONSTRAINT c CHECK (ssn::int > 0)", "ALTER TABLE on masked table test_schema.employees is not allowed"),
        ("ALTER TABLE test_schema.employees ADD COLUMN c text GENERATED ALWAYS AS (ssn) STORED", "ALTER TABLE on masked table test_schema.employees"),
        ("ALTER TABLE test_schema.employees ADD COLUMN c int CHECK (ssn::int > c)", "ALTER TABLE on masked table test_schema.employees"),
        ("ALTER TABLE test_schema.employees ADD COLUMN note text, ALTER ssn TYPE int USING ssn::int", "ALTER TABLE on masked table test_schema.employees"),
        ("ALTER TABLE test_schema.employees RENAME ssn TO x", "on masked table test_schema.employees is not allowed"),
        ("ALTER TABLE test_schema.employees SET SCHEMA public", "on masked table test_schema.employees is not allowed"),
        ("CREATE UNIQUE INDEX ON test_schema.employees (left(ssn, 3))", "CREATE INDEX on masked table test_schema.employees"),
        ("CREATE STATISTICS s ON id, ssn FROM test_schema.employees", "on masked table test_schema.employees"),
        ("GRANT SELECT ON test_schema.employees TO PUBLIC", "on masked table test_schema.employees"),
        ("GRANT SELECT ON ALL TABLES IN SCHEMA test_schema TO PUBLIC", "GRANT on masked table test_schema.employees"),
        // An unqualified built-in name that is also a user function's, or one made earlier in the text.
        ("CREATE FUNCTION me.lower(text) RETURNS text LANGUAGE sql AS 'SELECT $1'; SELECT lower('X')", "CREATE FUNCTION is not allowed"),
        ("SELECT chunk_data FROM pg_toast.pg_toast_16400", "pg_toast.pg_toast_16400 holds tables' values out of line"),
        ("UPDATE pg_settings SET setting = 'x' WHERE name = 'search_path'", "writing pg_settings is not allowed; use SET"),
        ("SELECT 'z'::me.mood", "type me.mood is not built in"),
        ("SELECT CAST(ROW('z') AS ct)", "type ct is not built in"),
        ("PREPARE p1(me.domu) AS SELECT $1", "type me.domu is not built in"),
        ("SELECT * FROM upper('x') AS x(c me.domu)", "type me.domu is not built in"),
        ("CREATE TABLE mine (c me.domu)", "type me.domu is not built in"),
        ("CREATE OR REPLACE FUNCTION me.f() RETURNS int LANGUAGE sql AS 'SELECT 1'", "CREATE FUNCTION is not allowed"),
        ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", "CREATE FUNCTION is not allowed"),
        ("LISTEN people_changes", "LISTEN is not allowed"),
        ("ALTER SCHEMA test_schema RENAME TO elsewhere", "renaming schema test_schema, which holds masked table test_schema.employees, is not allowed"),
        // Functional notation calls the function too.
        ("SELECT k.report FROM mine k", "function report() is not built in"),
        ("SELECT (k).report FROM mine k", "function report() is not built in"),
        ("SELECT m.k.leak FROM me.mine k", "function leak() runs with the rights of its owner"),
        ("SELECT chunk_data FROM pg_toast_16400", "pg_toast_16400 holds tables' values out of line"),
    ])
    func whatCannotBeSeenIntoIsRefused(_ sql: String, _ message: String) {
        guard case .refused(let error) = rewrite(sql, Self.context(riskyDefiners: ["leak"], userFunctions: ["leak", "report"])) else {
            Issue.record("\(sql) was not refused")
            return
        }
        #expect(error.sqlState == "42501")
        #expect(error.message.contains(message), "\(error.message)")
    }

    /// A user function named like a built-in may be what an unqualified call reaches (through
    /// search_path, or a closer argument type): judged as a user function; the qualified
    /// built-in still runs.
    @Test func aUserFunctionNamedLikeABuiltinIsJudgedAsAUserFunction() {
        let context = Self.context(userFunctions: ["upper"])
        guard case .refused(let error) = rewrite("SELECT upper('x')", context) else {
            Issue.record("upper('x') was not refused")
            return
        }
        #expect(error.message.contains("function upper() is not built in"), "\(error.message)")
        #expect(rewrite("SELECT pg_catalog.upper('x')", context) == .unchanged)
        #expect(rewrite("SELECT upper('x')", Self.context(userFunctions: ["upper"], backedUp: true)) == .unchanged)
    }

    /// Mask views exist (for the other masked roles) but the server does not hold this session
    /// back (an owner): a write naming the masked table would read it, refused.
    @Test func aWriteIsRefusedWhereTheServerDoesNotHoldTheSessionBack() {
        var context = Self.context(backedUp: true)
        context.tables[0].serverDenies = false
        guard case .refused(let error) = rewrite("DELETE FROM test_schema.employees WHERE ssn = 'x' RETURNING id", context) else {
            Issue.record("the write was not refused")
            return
        }
        #expect(error.message.contains("DELETE on test_schema.employees is not allowed"), "\(error.message)")
        #expect(rewrite("DELETE FROM test_schema.employees WHERE id = 1", Self.context(backedUp: true)) == .unchanged)
    }

    /// Under the server backstop too: the policy would no longer find its table.
    @Test func aSchemaHoldingAMaskedTableIsNotRenamed() {
        guard case .refused(let error) = rewrite("ALTER SCHEMA test_schema RENAME TO elsewhere", Self.context(backedUp: true)) else {
            Issue.record("the rename was not refused")
            return
        }
        #expect(error.message.contains("renaming schema test_schema"), "\(error.message)")
        #expect(rewrite("ALTER SCHEMA other RENAME TO elsewhere", Self.context(backedUp: true)) == .unchanged)
    }

    /// set_config of a setting that decides nothing about masking changes nothing the proxy follows.
    @Test func setConfigOfAHarmlessSettingChangesNothing() {
        let builtins = Self.builtins.union(["set_config", "current_setting"])
        func effects(_ sql: String) -> MaskingRewriter.Effects {
            MaskingRewriter(context: Self.context(), builtinFunctions: builtins).analyze(sql, bytes: Array(sql.utf8)).effects
        }
        #expect(effects("SELECT current_setting('jit'), set_config('jit', 'off', false)") == [])
        #expect(effects("SELECT set_config('jit', $1, false)") == [])
        #expect(effects("SELECT set_config('role', 'x', false)") == .all)
        #expect(effects("SELECT set_config($1, 'x', false)") == .all)
    }

    /// User operators reached without being written as `a op b`: ANY/ALL and IN over a subquery,
    /// CASE x WHEN, BETWEEN, ORDER BY USING.
    @Test(arguments: [
        "SELECT 'a' OPERATOR(me.===) ANY (SELECT 'b')",
        "SELECT 1 WHERE 'a' IN (SELECT 'b')",
        "SELECT CASE 'a' WHEN 'b' THEN 1 END",
        "SELECT 1 WHERE 2 BETWEEN 1 AND 3",
        "SELECT 1 WHERE 2 NOT BETWEEN 1 AND 3",
        "SELECT x FROM (VALUES (1)) v(x) ORDER BY x USING <",
        "SELECT * FROM (VALUES (1)) a(x) JOIN (VALUES (1)) b(x) USING (x)",
        "SELECT * FROM (VALUES (1)) a(x) NATURAL JOIN (VALUES (1)) b(x)",
    ])
    func userOperatorsReachedIndirectlyAreRefused(_ sql: String) {
        var context = Self.context()
        context.userOperators = ["===", "=", ">=", "<=", "<", ">"]
        guard case .refused(let error) = rewrite(sql, context) else {
            Issue.record("\(sql) was not refused")
            return
        }
        #expect(error.message.contains("is not built in"), "\(error.message)")
        // With no user operators of those names, built-in ones run (=== is unknown: read again).
        #expect(rewrite(sql, Self.context()) == (sql.contains("===") ? .needsFreshContext(function: "operator ===") : .unchanged), "\(sql)")
    }

    /// Casts to built-in types run (drivers cast their parameters); an extension's operators are
    /// known, not a role's own; a type of a role's own named like a built-in one is its own.
    @Test func builtinCastsAndExtensionOperatorsRun() {
        #expect(rewrite("SELECT $1::int, CAST('1' AS numeric), '{1}'::int[], 'x'::pg_catalog.text") == .unchanged)
        var shadowed = Self.context()
        shadowed.userTypes = ["text"]
        guard case .refused(let error) = rewrite("SELECT 'z'::text", shadowed) else {
            Issue.record("a cast to a shadowed built-in type name was not refused")
            return
        }
        #expect(error.message.contains("type text is not built in"), "\(error.message)")
        #expect(rewrite("SELECT 'z'::pg_catalog.text", shadowed) == .unchanged)
        var context = Self.context()
        context.extensionOperators = ["~<~"]
        #expect(rewrite("SELECT 'a' ~<~ 'b'", context) == .unchanged)
    }

    /// CREATE TABLE ... AS EXECUTE and EXPLAIN EXECUTE run a prepared statement: recorded as EXECUTE.
    @Test func nestedExecuteIsRecordedAsExecute() {
        for sql in ["CREATE TABLE loot AS EXECUTE p", "EXPLAIN EXECUTE p", "EXPLAIN CREATE TABLE loot AS EXECUTE p"] {
            let analysis = MaskingRewriter(context: Self.context(backedUp: true)).analyze(sql, bytes: Array(sql.utf8))
            #expect(analysis.uses == [.execute("p")], "\(sql)")
        }
    }

    /// With every masked table backed up by the server, a function that is not built in runs as
    /// the caller (whom the server stops); while a table relies on the rewrite alone, only
    /// built-ins and functions a policy allows may run.
    @Test func functionsThatAreNotBuiltInNeedTheServerBackstopOrThePolicysWord() {
        #expect(rewrite("SELECT report()", Self.context(userFunctions: ["report"], backedUp: true)) == .unchanged)
        guard case .refused(let error) = rewrite("SELECT report()", Self.context(userFunctions: ["report"])) else {
            Issue.record("a user function ran while a policy relies on the rewrite alone")
            return
        }
        #expect(error.message.contains("function report() is not built in"), "\(error.message)")
        var allowed = Self.context(userFunctions: ["report"])
        allowed.allowedFunctions = ["report"]
        #expect(rewrite("SELECT report()", allowed) == .unchanged)
        // ts_rewrite with three tsqueries reads nothing.
        #expect(rewrite("SELECT ts_rewrite('a'::tsquery, 'a'::tsquery, 'b'::tsquery)", Self.context()) == .unchanged)
        // Operators: a risky one is refused; one the context does not know asks for a fresh context.
        var operators = Self.context(backedUp: true)
        operators.userOperators = ["###", "@@@"]
        operators.riskyOperators = ["###"]
        guard case .refused = rewrite("SELECT 1 ### 2", operators) else {
            Issue.record("a risky operator ran")
            return
        }
        #expect(MaskingRewriter(context: operators, builtinFunctions: Self.builtins.union(["="])).rewrite("SELECT 1 @@@ 2") == .unchanged)
        #expect(MaskingRewriter(context: operators, builtinFunctions: Self.builtins.union(["="])).rewrite("SELECT 1 %%% 2") == .needsFreshContext(function: "operator %%%"))
    }

    @Test func functionsTheContextDoesNotKnowAskForAFreshOne() {
        #expect(rewrite("SELECT count(*), upper('a'), pg_catalog.now()") == .unchanged)
        #expect(rewrite("SELECT report()", Self.context(userFunctions: ["report"], backedUp: true)) == .unchanged)
        #expect(rewrite("SELECT brand_new()", Self.context(backedUp: true)) == .needsFreshContext(function: "brand_new"))
        // A built-in name in another schema is a user function.
        #expect(rewrite("SELECT public.upper('a')", Self.context(backedUp: true)) == .needsFreshContext(function: "upper"))
        // Without the built-in names every function is unknown.
        #expect(MaskingRewriter(context: Self.context(backedUp: true)).rewrite("SELECT count(*)") == .needsFreshContext(function: "count"))
    }

    /// The context is read in the user's own session, under the user's search_path: every
    /// operator in it is pg_catalog's (an `=` in a schema before pg_catalog could blind it).
    @Test(arguments: ["context", "role check"])
    func inBandQueriesQualifyEveryOperatorAndFunction(_ which: String) throws {
        let policies = PolicySet(policies: [TablePolicy(schema: "s", table: "t", unmaskedRoles: ["a"], maskedRoles: ["b"],
                                                        columns: [.init(name: "c", strategy: .email)], source: "test", database: "d")], version: 1)
        let sql = which == "context" ? MaskingContext.query(for: policies, includeBuiltins: true) : AdminSQL.roleCheck(adminRoles: ["admins"])
        #expect(try PostgresParser.parse(sql).count == 1)
        let names = try PostgresParser.operatorAndFunctionNames(in: sql)
        #expect(!names.isEmpty)
        let unqualified = names.filter { $0.count != 2 || $0[0] != "pg_catalog" }.map { $0.joined(separator: ".") }
        #expect(unqualified.isEmpty, "\(unqualified)")
    }
}

extension Result where Success == String {
    /// The relation text of a successful `maskedRelation`.
    var text: String { (try? get()) ?? "" }
}
