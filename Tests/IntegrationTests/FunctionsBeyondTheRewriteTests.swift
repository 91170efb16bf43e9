import PQ
@testable import Proxy
import Testing

/// The list of built-ins a masked role may not call, checked against the server's own catalog.
@Suite struct FunctionsBeyondTheRewriteTests {
    @Test func everyListedNameIsABuiltInAndEveryBuiltInThatReachesBeyondIsListed() async throws {
        let environment = try TestEnvironment.require()
        let connection = try await PQConnection.connect(environment.directTarget())
        let listed = FunctionsBeyondTheRewrite.names.keys.sorted()
        let existing = Set(try await connection.query(
            "SELECT DISTINCT proname::text FROM pg_proc WHERE oid < 16384 AND proname::text = ANY ($1::text[])",
            [SQL.textArray(listed)]).strings.compactMap { $0 })
        #expect(Set(listed).subtracting(existing).isEmpty, "not built-in functions: \(Set(listed).subtracting(existing).sorted())")
        // The C routines that run a query given as text, or read server files or large objects.
        let reaching = Set(try await connection.exec("""
            SELECT DISTINCT proname::text FROM pg_proc
            WHERE oid < 16384 AND prolang = (SELECT oid FROM pg_language WHERE lanname = 'internal')
              AND prosrc ~ '^(be_lo|pg_read_file|pg_read_binary_file|pg_stat_file|pg_ls_|query_to_xml|cursor_to_xml|table_to_xml|schema_to_xml|database_to_xml|ts_stat|tsquery_rewrite_query)'
            """).strings.compactMap { $0 })
        #expect(reaching.count > 30)
        #expect(reaching.subtracting(listed).isEmpty, "missing from the list: \(reaching.subtracting(listed).sorted())")
    }
}
