import Foundation
import Logging
import PQ
import Proxy
import Testing

/// The proxy relays every protocol feature unchanged, checked with real clients.
@Suite(.serialized) struct ProxyRelayTests {
    @Test func psqlScriptGivesTheSameOutputAsADirectConnection() async throws {
        let environment = try TestEnvironment.require()
        let proxy = try await RunningProxy.start(environment)
        defer { Task { try await proxy.stop() } }
        let script = """
            \\set ON_ERROR_STOP 0
            CREATE TEMP TABLE t (id int PRIMARY KEY, v text, j jsonb, b bytea);
            INSERT INTO t SELECT g, 'row ' || g || E'\\tünï', jsonb_build_object('g', g), decode('00ff' || lpad(to_hex(g), 4, '0'), 'hex') FROM generate_series(1, 500) g;
            SELECT count(*), sum(id), md5(string_agg(v || j::text || encode(b, 'hex'), ',' ORDER BY id)) FROM t;
            SELECT 1/0;
            BEGIN; INSERT INTO t VALUES (1000, 'x'); SAVEPOINT s; SELECT nope; ROLLBACK TO s; COMMIT;
            SELECT v FROM t WHERE id = 1000;
            DO $$ BEGIN RAISE NOTICE 'notice from server %', 42; END $$;
            LISTEN chan; NOTIFY chan, 'payload';
            SHOW server_encoding;
            SET application_name = 'changed'; SHOW application_name;
            \\copy t (id, v) TO STDOUT WITH (FORMAT csv)
            """
        let direct = try await Shell.run(["psql", "-X", "-d", environment.directTarget()], input: script)
        let proxied = try await Shell.run(["psql", "-X", "-d", environment.throughProxy(proxy.port)], input: script)
        #expect(direct.status == 0)
        #expect(proxied.status == direct.status)
        // NOTIFY carries the server PID of the notifying session, which differs between the two runs.
        let normalize = { (text: String) in text.replacingOccurrences(of: #"server process with PID \d+"#, with: "PID", options: .regularExpression) }
        #expect(normalize(proxied.stdout) == normalize(direct.stdout))
        #expect(normalize(proxied.stderr) == normalize(direct.stderr))
        #expect(proxied.stderr.contains("ERROR:  division by zero"))
        #expect(proxied.stderr.contains("NOTICE:  notice from server 42"))
        #expect(proxied.stdout.contains("Asynchronous notification \"chan\" with payload \"payload\""))
    }

    /// A failed admin call is logged (who, SQLSTATE, message), never with a password.
    @Test func aFailedAdminCallIsLogged() async throws {
        let environment = try TestEnvironment.require()
        let capture = LogCapture()
        let proxy = try await RunningProxy.start(environment, logger: capture.logger())
        defer { Task { try await proxy.stop() } }
        let source = "host=127.0.0.1 port=\(environment.sourcePort) dbname=db1 user=postgres password=\(environment.password)"
        let output = try await Shell.psql(environment.throughProxy(proxy.port), "SELECT pgclone.table('\(source)', 'test_schema', 'nope', true);")
        #expect(output.status != 0)
        let failure = try #require(capture.records.first { $0.message == "admin call failed" })
        #expect(failure.level == .warning)
        #expect(failure.metadata["sqlstate"] == "42P01")
        #expect(failure.metadata["role"] == "postgres")
        #expect(failure.metadata["error"] == "relation \"test_schema.nope\" does not exist on source")
        let everything = capture.records.map { "\($0.message) \($0.metadata)" }.joined(separator: "\n")
        #expect(!everything.contains(environment.password))
    }

    @Test func oneLogLineWhenASessionOpensAndOneWhenItCloses() async throws {
        let environment = try TestEnvironment.require()
        let capture = LogCapture()
        let proxy = try await RunningProxy.start(environment, logger: capture.logger())
        defer { Task { try await proxy.stop() } }
        let output = try await Shell.psql(environment.throughProxy(proxy.port, extra: "application_name=logcheck"), "SELECT repeat('x', 1000);")
        #expect(output.status == 0)
        try await waitFor("the close line") { capture.records.contains { $0.message == "session closed" } }
        let sessionLines = capture.records.filter { $0.metadata["application_name"] == "logcheck" }
        #expect(sessionLines.map(\.message) == ["session opened", "session closed"])
        let closed = try #require(sessionLines.last)
        #expect(closed.metadata["user"] == "postgres")
        #expect(closed.metadata["database"] == "db2")
        #expect(closed.metadata["peer"]?.contains("127.0.0.1") == true)
        #expect(closed.metadata["reason"] == "client disconnected")
        #expect(Int(closed.metadata["bytes.from_server"] ?? "") ?? 0 > 1000)
        #expect(Int(closed.metadata["bytes.from_client"] ?? "") ?? 0 > 0)
        #expect(closed.metadata["duration_ms"].flatMap(Int.init) != nil)
        let everything = capture.records.map { "\($0.message) \($0.metadata)" }.joined(separator: "\n")
        #expect(!everything.contains(environment.password))
    }

    /// No password, at any log level: not the service role's, not a client's, not a source's
    /// given to an admin call (a service's description once printed its conninfo at debug).
    @Test func noPasswordInAnyLogLineEvenAtTrace() async throws {
        let environment = try TestEnvironment.require()
        try await TargetRoles.ensure()
        let capture = LogCapture()
        let database = "db2"
        let proxy = try await RunningProxy.start(environment, logger: capture.logger(level: .trace), backstopDatabases: [database],
                                                 readsStateDatabase: true)
        let client = try await Shell.run(["psql", "-X", "-At", "-d", "host=127.0.0.1 port=\(proxy.port) dbname=\(database) user=\(TargetRoles.scramUser) sslmode=disable",
                                          "-c", "SELECT 1"], environment: ["PGPASSWORD": TargetRoles.scramPassword])
        #expect(client.status == 0, "\(client.stderr)")
        let target = "log_check_\(UInt32.random(in: 0...UInt32.max))"
        let source = "host=127.0.0.1 port=\(environment.sourcePort) dbname=db1 user=postgres password=\(environment.password)"
        let clone = try await Shell.psql(environment.throughProxy(proxy.port),
                                         "SELECT pgclone.table('\(source)', 'test_schema', 'customers', false, '\(target)');")
        #expect(clone.stdout.hasPrefix("OK: cloned"), "\(clone.stdout)\(clone.stderr)")
        _ = try await Shell.psql(environment.directTarget(), "DROP TABLE IF EXISTS test_schema.\(target);")
        try await proxy.stop()
        let everything = capture.records.map { "\($0.message) \($0.metadata)" }.joined(separator: "\n")
        #expect(capture.records.contains { $0.level == .trace || $0.level == .debug }, "nothing was logged below info")
        for secret in [environment.password, TargetRoles.scramPassword] {
            #expect(!everything.contains(secret), "a log line carries a password")
        }
    }

    @Test func libpqSimpleExtendedBinaryAndPrepared() async throws {
        let environment = try TestEnvironment.require()
        let proxy = try await RunningProxy.start(environment)
        defer { Task { try await proxy.stop() } }
        let connection = try await PQConnection.connect(environment.throughProxy(proxy.port))

        let simple = try await connection.exec("SELECT 'a' AS x, NULL::int AS y; SELECT 41 + 1 AS answer")
        #expect(simple.columnNames == ["answer"])
        #expect(simple.string(0, 0) == "42")

        let binary = try await connection.query("SELECT $1::int4, $2::text, $3::int8, NULL::text", ["42", "héllo", "-9000000000"], resultFormat: .binary)
        #expect(binary.rows[0][0] == [0, 0, 0, 42])
        #expect(binary.rows[0][1] == Array("héllo".utf8))
        #expect(binary.rows[0][2] == withUnsafeBytes(of: Int64(-9_000_000_000).bigEndian, Array.init))
        #expect(binary.rows[0][3] == nil)

        try await connection.prepare(name: "s1", "SELECT $1::int * 2")
        for i in 0..<20 {
            let result = try await connection.executePrepared(name: "s1", ["\(i)"])
            #expect(result.string(0, 0) == "\(i * 2)")
        }
        await #expect(throws: PQError.self) { try await connection.query("SELECT * FROM no_such_table") }
        do {
            _ = try await connection.query("SELECT * FROM no_such_table")
        } catch let error as PQError {
            #expect(error.sqlState == "42P01")
            #expect(error.message == "relation \"no_such_table\" does not exist")
        }
        #expect(try await connection.exec("SELECT 'still usable'").string(0, 0) == "still usable")
    }

    @Test func pipelineModeWithAnErrorMidPipeline() async throws {
        let environment = try TestEnvironment.require()
        let proxy = try await RunningProxy.start(environment)
        defer { Task { try await proxy.stop() } }
        let connection = try await PQConnection.connect(environment.throughProxy(proxy.port))
        let results = try await connection.pipeline([
            .query("SELECT 1"),
            .prepare(name: "p", query: "SELECT $1::int + 1"),
            .executePrepared(name: "p", parameters: ["5"]),
            .query("SELECT 1/0"),
            .query("SELECT 'skipped after error'"),
        ])
        #expect(try results[0].get().string(0, 0) == "1")
        #expect(try results[2].get().string(0, 0) == "6")
        guard case .failure(let error) = results[3] else {
            Issue.record("division by zero should fail")
            return
        }
        #expect(error.sqlState == "22012")
        guard case .failure = results[4] else {
            Issue.record("statement after an error in the same sync must be aborted")
            return
        }
        // The next sync starts fresh.
        let after = try await connection.pipeline([.query("SELECT 'fresh'"), .executePrepared(name: "p", parameters: ["1"])])
        #expect(try after[0].get().string(0, 0) == "fresh")
        #expect(try after[1].get().string(0, 0) == "2")
    }

    @Test func copyInAndOutRoundTripAndServerErrorDuringCopyIn() async throws {
        let environment = try TestEnvironment.require()
        let proxy = try await RunningProxy.start(environment)
        defer { Task { try await proxy.stop() } }
        let connection = try await PQConnection.connect(environment.throughProxy(proxy.port))
        try await connection.exec("CREATE TEMP TABLE c (id int, v text)")
        let rows = (1...20_000).map { "\($0)\tvalue \($0) \\\\ tab\\t end\n" }
        let chunks = stride(from: 0, to: rows.count, by: 1000).map { Array(rows[$0..<min($0 + 1000, rows.count)].joined().utf8) }
        let copied = try await connection.copyIn("COPY c FROM STDIN", chunks: chunks)
        #expect(copied.commandTag == "COPY 20000")

        let collected = CollectedBytes()
        let out = try await connection.copyOut("COPY (SELECT * FROM c ORDER BY id) TO STDOUT") { collected.append($0) }
        #expect(out.commandTag == "COPY 20000")
        #expect(collected.text == rows.joined())

        // A bad row in the middle: the server fails the COPY while the client is still sending.
        var bad = rows
        bad[5000] = "not-a-number\tx\n"
        let badChunks = stride(from: 0, to: bad.count, by: 1000).map { Array(bad[$0..<min($0 + 1000, bad.count)].joined().utf8) }
        do {
            try await connection.copyIn("COPY c FROM STDIN", chunks: badChunks)
            Issue.record("COPY with a bad row must fail")
        } catch let error as PQError {
            #expect(error.sqlState == "22P02")
        }
        #expect(try await connection.exec("SELECT count(*) FROM c").string(0, 0) == "20000")
    }

    @Test func cancelOfALongQueryArrivesThroughTheProxy() async throws {
        let environment = try TestEnvironment.require()
        let proxy = try await RunningProxy.start(environment)
        defer { Task { try await proxy.stop() } }
        let connection = try await PQConnection.connect(environment.throughProxy(proxy.port))
        // The client sees the server's process ID (pg_stat_activity and NOTIFY carry it) with the
        // proxy's secret: a cancel sent straight to the server with this key does nothing.
        let serverPID = try await connection.exec("SELECT pg_backend_pid()").string(0, 0)
        let keyPID = try await connection.keyProcessID
        #expect("\(keyPID)" == serverPID)

        let started = ContinuousClock.now
        let sleeper = Task { try await connection.exec("SELECT pg_sleep(30)") }
        try await Task.sleep(for: .milliseconds(300))
        let cancelAt = ContinuousClock.now
        try connection.cancel()
        let outcome = await sleeper.result
        let elapsed = ContinuousClock.now - cancelAt
        guard case .failure(let error as PQError) = outcome else {
            Issue.record("pg_sleep(30) was not cancelled")
            return
        }
        #expect(error.sqlState == "57014")
        #expect(error.message == "canceling statement due to user request")
        #expect(elapsed < .seconds(1))
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(try await connection.exec("SELECT 'after cancel'").string(0, 0) == "after cancel")
    }

    @Test func functionCallProtocolViaLargeObjects() async throws {
        // psql's \lo_import and \lo_export use libpq's large-object API, which sends FunctionCall messages.
        let environment = try TestEnvironment.require()
        let proxy = try await RunningProxy.start(environment)
        defer { Task { try await proxy.stop() } }
        let file = URL(fileURLWithPath: environment.directory).appendingPathComponent("lo-\(UUID().uuidString).bin")
        let payload = Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        try payload.write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let exported = file.appendingPathExtension("out")
        defer { try? FileManager.default.removeItem(at: exported) }
        let output = try await Shell.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", environment.throughProxy(proxy.port)], input: """
            BEGIN;
            \\lo_import '\(file.path)'
            \\lo_export :LASTOID '\(exported.path)'
            SELECT length(lo_get(:LASTOID)), md5(lo_get(:LASTOID));
            SELECT lo_unlink(:LASTOID);
            COMMIT;
            """)
        #expect(output.status == 0, "\(output.stderr)")
        #expect(try Data(contentsOf: exported) == payload)
        #expect(output.stdout.contains("300000|"))
    }

    @Test func valuesOfHundredsOfMegabytesPassThrough() async throws {
        let environment = try TestEnvironment.require()
        let proxy = try await RunningProxy.start(environment)
        defer { Task { try await proxy.stop() } }
        let connection = try await PQConnection.connect(environment.throughProxy(proxy.port))
        let result = try await connection.exec("SELECT repeat('x', 200 * 1024 * 1024) AS big, 'tail' AS after")
        #expect(result.rows[0][0]?.count == 200 * 1024 * 1024)
        #expect(result.string(0, 1) == "tail")
    }
}

final class CollectedBytes: @unchecked Sendable {
    private let lock = NSLock()
    private var bytes: [UInt8] = []
    func append(_ chunk: [UInt8]) { lock.withLock { bytes += chunk } }
    var text: String { lock.withLock { String(decoding: bytes, as: UTF8.self) } }
}
