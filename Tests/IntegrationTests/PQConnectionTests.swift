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

    /// `SQL.literal` quotes any text so that the server reads back exactly that text, under
    /// both settings of standard_conforming_strings.
    @Test func literalsReadBackExactly() async throws {
        let environment = try TestEnvironment.require()
        let connection = try await PQConnection.connect(environment.directTarget())
        let values = ["", "plain", "it's", "''", "\\", "a\\'b", "\\'; DROP TABLE x; --", "€ and 日本 'quoted' \\n", "e\u{301}'\u{1F600}\\",
                      String(repeating: "'\\", count: 500)]
        for setting in ["on", "off"] {
            try await connection.exec("SET standard_conforming_strings = \(setting)")
            for value in values {
                let back = try await connection.execute("SELECT \(SQL.literal(value))::pg_catalog.text").string(0, 0)
                #expect(back == value, "standard_conforming_strings=\(setting): \(SQL.literal(value))")
            }
        }
        #expect(SQL.literal("it's") == "'it''s'")
        #expect(SQL.literal("a\\b") == "E'a\\\\b'")
        #expect(SQL.literal("plain") == "'plain'")
    }

    /// A connection is reusable only when it is open and outside a transaction; a backend
    /// terminated while the connection sat idle is noticed without sending anything.
    @Test func reusableOnlyWhenOpenAndIdle() async throws {
        let environment = try TestEnvironment.require()
        let connection = try await PQConnection.connect(environment.directTarget())
        #expect(await connection.isReusable)
        try await connection.exec("BEGIN")
        #expect(!(await connection.isReusable))
        _ = try? await connection.exec("SELECT 1/0")
        #expect(!(await connection.isReusable))
        try await connection.exec("ROLLBACK")
        #expect(await connection.isReusable)
        let pid = try await connection.keyProcessID
        let killer = try await PQConnection.connect(environment.directTarget())
        try await killer.exec("SELECT pg_catalog.pg_terminate_backend(\(pid), 5000)")
        #expect(!(await connection.isReusable))
    }
}
