import PQ
import Testing

/// The libpq wrapper against a real server.
@Suite struct PQConnectionTests {
    /// DDL built from a source server's catalog runs with `execute`: a definition that
    /// smuggles in a second statement fails as a whole, and nothing of it runs.
    @Test func executeRunsExactlyOneStatement() async throws {
        let environment = try TestEnvironment.require()
        let connection = try await PQConnection.connect(environment.directTarget())
        let table = "pq_guard_\(UInt32.random(in: 0...UInt32.max))"
        try await connection.exec("CREATE TABLE public.\(table) (id int); INSERT INTO public.\(table) VALUES (1)")
        do {
            try await connection.execute("COMMENT ON TABLE public.\(table) IS 'x'; DROP TABLE public.\(table)")
            Issue.record("two statements ran through execute")
        } catch let error as PQError {
            #expect(error.sqlState == "42601", "\(error.message)")
            #expect(error.message == "cannot insert multiple commands into a prepared statement")
        }
        #expect(try await connection.execute("SELECT count(*) FROM public.\(table)").string(0, 0) == "1")
        #expect(try await connection.execute("SELECT obj_description('public.\(table)'::regclass)").string(0, 0) == nil)
        try await connection.exec("DROP TABLE public.\(table)")
    }
}
