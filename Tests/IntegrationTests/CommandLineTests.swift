import Foundation
#if canImport(Glibc)
import Glibc
#endif
import PQ
import Testing

/// The `pgclone` binary itself: version, clone subcommands, `serve` with signals.
@Suite struct CommandLineTests {
    static let binary = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(".build/debug/pgclone").path

    @Test func versionMatchesTheSQLAPI() async throws {
        let output = try await Shell.run([Self.binary, "--version"])
        #expect(output.status == 0)
        #expect(output.stdout == "pgclone 3.6.0\n")
    }

    @Test func schemaSubcommandClonesAndReportsErrorsWithExitStatus() async throws {
        let environment = try TestEnvironment.require()
        let database = "cli_\(UInt32.random(in: 0...UInt32.max))"
        let admin = try await PQConnection.connect(environment.directTarget())
        try await admin.exec("CREATE DATABASE \(database)")
        defer { Task { _ = try? await admin.exec("DROP DATABASE \(database) WITH (FORCE)") } }
        let source = "host=127.0.0.1 port=\(environment.sourcePort) dbname=db1 user=postgres password=\(environment.password)"
        let target = environment.directTarget(database: database)
        let ok = try await Shell.run([Self.binary, "schema", "test_schema", "--source", source, "--target", target, "--parallel", "2"])
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(ok.stdout.hasPrefix("OK: cloned schema test_schema (5 tables, 43 rows"), "\(ok.stdout)")
        #expect(ok.stderr.contains("[5/5] "), "progress lines: \(ok.stderr)")
        let count = try await Shell.psql(target, "SELECT count(*) FROM test_schema.customers;")
        #expect(count.stdout == "10\n")

        let missing = try await Shell.run([Self.binary, "table", "test_schema", "nope", "--source", source, "--target", target])
        #expect(missing.status == 1)
        #expect(missing.stderr == "pgclone: ERROR: relation \"test_schema.nope\" does not exist on source\n")
        #expect(!missing.stderr.contains(environment.password))

        let badOptions = try await Shell.run([Self.binary, "table", "test_schema", "customers", "--source", source, "--target", target, "--options", "{\"bogus\": 1}"])
        #expect(badOptions.status != 0)
        #expect(badOptions.stderr.contains("unknown option \"bogus\""), "\(badOptions.stderr)")

        // --parallel takes what the SQL API's "parallel" takes (0 was accepted as 1).
        let zero = try await Shell.run([Self.binary, "schema", "test_schema", "--source", source, "--target", target, "--parallel", "0"])
        #expect(zero.status != 0)
        #expect(zero.stderr.contains("--parallel must be an integer from 1 to 64"), "\(zero.stderr)")
    }

    /// Each reason `serve` cannot start is one line that names the option, and exit status 1.
    /// `pgclone policy check --target` finds what would make masked reads fail or leak (round
    /// 44): a strategy that cannot produce its column's type (F6), a generated column computed
    /// from a masked one (F8); keyed strategies are checked with PGCLONE_MASK_SECRET (F7).
    @Test func policyCheckFindsStrategiesThatCannotMaskAndGeneratedCopies() async throws {
        let environment = try TestEnvironment.require()
        let database = "policycheck_\(UInt32.random(in: 0...UInt32.max))"
        let admin = environment.directTarget(database: "postgres")
        try #require(try await Shell.psql(admin, "CREATE DATABASE \(database);").status == 0)
        defer { Task { _ = try? await Shell.psql(admin, "DROP DATABASE IF EXISTS \(database) WITH (FORCE);") } }
        let target = environment.directTarget(database: database)
        try #require(try await Shell.psql(target, """
            CREATE TABLE public.people (id int, code smallint, doc jsonb, ssn text, ssn_upper text GENERATED ALWAYS AS (upper(ssn)) STORED);
            """).status == 0)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("policycheck-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try """
            policies:
              - table: public.people
                columns:
                  code: pseudonym
                  doc: {type: partial, prefix: 1, suffix: 1}
                  ssn: {type: partial, prefix: 0, suffix: 4}

            """.write(to: directory.appendingPathComponent("people.yaml"), atomically: true, encoding: .utf8)
        let checked = try await Shell.run([Self.binary, "policy", "check", directory.path, "--target", target],
                                          environment: ["PGCLONE_MASK_SECRET": "policy-check-secret"])
        #expect(checked.status == 1, "\(checked.stdout) \(checked.stderr)")
        #expect(checked.stderr.contains("public.people.code: strategy \"pseudonym\" cannot mask a column of type smallint: smallint out of range"), "\(checked.stderr)")
        #expect(checked.stderr.contains("public.people.doc: strategy \"partial\" cannot mask a column of type jsonb"), "\(checked.stderr)")
        #expect(checked.stderr.contains("NOTICE: ") && checked.stderr.contains("public.people.ssn_upper is generated from masked column \"ssn\" and holds its value: masked roles read it as NULL"), "\(checked.stderr)")
        #expect(!checked.stderr.contains("needs a secret"), "\(checked.stderr)")
    }

    @Test func serveStartupErrorsAreOneLineNamingTheOption() async throws {
        let environment = try TestEnvironment.require()
        let directory = URL(fileURLWithPath: environment.directory).appendingPathComponent("startup-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for name in ["a", "b"] {
            let made = try await Shell.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=\(name)",
                                            "-keyout", directory.appendingPathComponent("\(name).key").path, "-out", directory.appendingPathComponent("\(name).crt").path])
            #expect(made.status == 0)
        }
        let file = directory.appendingPathComponent("not-a-directory")
        try "x".write(to: file, atomically: true, encoding: .utf8)
        let listener = try await ServerBootstrapHelper.occupyPort()
        defer { listener.close() }
        let backend = environment.backendConnInfo
        let wrongPassword = "host=\(environment.host) port=\(environment.targetPort) dbname=postgres user=postgres password=wrong sslmode=disable"
        let cases: [([String], String)] = [
            (["--backend", "hostx"], "pgclone: --backend: missing \"=\" after \"hostx\" in connection info string"),
            (["--backend", backend, "--policies", file.path], "pgclone: --policies: \(file.path) is a file, not a directory"),
            (["--backend", backend, "--policies", directory.appendingPathComponent("missing").path], "pgclone: --policies: \(directory.appendingPathComponent("missing").path) does not exist"),
            (["--backend", backend, "--listen", "127.0.0.1:\(listener.port)"], "pgclone: --listen 127.0.0.1:\(listener.port): address already in use"),
            (["--backend", backend, "--tls-cert", directory.appendingPathComponent("a.crt").path, "--tls-key", directory.appendingPathComponent("b.key").path],
             "pgclone: --tls-key: does not match --tls-cert"),
            (["--backend", wrongPassword, "--require-backend"], "pgclone: --backend: the service role cannot log in to the target: connection to server at \"127.0.0.1\", port \(environment.targetPort) failed: FATAL:  password authentication failed for user \"postgres\""),
        ]
        for (arguments, expected) in cases {
            let output = try await Shell.run([Self.binary, "serve", "--log-level", "error", "--state-database", TargetRoles.cliStateDatabase] + arguments, timeout: 30)
            #expect(output.status == 1, "\(arguments)")
            #expect(output.stderr == expected + "\n", "\(arguments)")
            #expect(!output.stderr.contains(environment.password))
        }
    }

    /// An empty file in the test directory for a `pgclone serve` child's stderr, writable by the
    /// unprivileged user a test may run it as.
    static func serveLog(_ environment: TestEnvironment, _ name: String, port: Int) -> URL {
        let log = URL(fileURLWithPath: environment.directory).appendingPathComponent("\(name)-\(port)-\(UInt32.random(in: 0...UInt32.max)).log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        chmod(log.path, 0o666)
        return log
    }

    /// The proxy as an unprivileged user (the Docker image runs it as one): its socket options
    /// must be ones such a user may set. TCP_NODELAY was set at the socket level, where the same
    /// number is SO_DEBUG: root may set that, anyone else got EACCES and every client was dropped.
    @Test func serveAcceptsClientsAsAnUnprivilegedUser() async throws {
        let environment = try TestEnvironment.require()
        let port = Int.random(in: 20000...29999)
        try await TargetRoles.ensure()
        let log = Self.serveLog(environment, "unprivileged", port: port)
        let serve = [Self.binary, "serve", "--listen", "127.0.0.1:\(port)", "--log-level", "warning", "--state-database", TargetRoles.cliStateDatabase,
                     "--backend", environment.backendConnInfo]
        // As root, the server's own user runs it.
        let process = getuid() == 0
            ? try ChildProcess("/usr/sbin/runuser", ["-u", "postgres", "--"] + serve, error: .file(log.path))
            : try ChildProcess(Self.binary, Array(serve.dropFirst()), error: .file(log.path))
        defer { if process.isRunning { process.terminate() } }
        var connection: PQConnection?
        var lastError = ""
        try await waitFor("the proxy to accept connections") {
            do {
                connection = try await PQConnection.connect(environment.throughProxy(port))
            } catch {
                lastError = "\(error)"
            }
            return connection != nil || !process.isRunning
        }
        let session = try #require(connection, "\(lastError); proxy log: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
        #expect(try await session.exec("SELECT 'served as ' || current_user").string(0, 0) == "served as postgres")
        // A second client, and a statement with a result of many rows (written in several pieces).
        let second = try await PQConnection.connect(environment.throughProxy(port))
        #expect(try await second.exec("SELECT count(*) FROM (SELECT repeat('x', 1000) FROM generate_series(1, 2000)) s").string(0, 0) == "2000")
    }

    @Test func serveStopsGracefullyOnSIGTERM() async throws {
        let environment = try TestEnvironment.require()
        let port = Int.random(in: 20000...29999)
        try await TargetRoles.ensure()
        let log = Self.serveLog(environment, "sigterm", port: port)
        let process = try ChildProcess(Self.binary, ["serve", "--listen", "127.0.0.1:\(port)", "--shutdown-grace", "10", "--log-level", "warning", "--state-database", TargetRoles.cliStateDatabase],
                                       environment: ["PGCLONE_BACKEND": environment.backendConnInfo], error: .file(log.path))
        defer { if process.isRunning { process.terminate() } }
        var connection: PQConnection?
        try await waitFor("the proxy to accept connections") {
            connection = try? await PQConnection.connect(environment.throughProxy(port))
            return connection != nil
        }
        let session = try #require(connection)
        try await session.exec("BEGIN")
        kill(process.processIdentifier, SIGTERM)
        try await Task.sleep(for: .milliseconds(300))
        // The open transaction may finish; then the proxy exits by itself.
        #expect(try await session.exec("SELECT 'finishing'").string(0, 0) == "finishing")
        try await session.exec("COMMIT")
        try await waitFor("the proxy to exit") { !process.isRunning }
        #expect(process.terminationStatus == 0)
        #expect(try !String(contentsOf: log, encoding: .utf8).contains(environment.password))
    }
}

/// A listening socket on a free port, to make another bind fail.
enum ServerBootstrapHelper {
    final class Listener: @unchecked Sendable {
        let fd: Int32
        let port: Int
        init(fd: Int32, port: Int) { self.fd = fd; self.port = port }
        func close() { _ = Glibc.close(fd) }
    }

    static func occupyPort() async throws -> Listener {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && listen(fd, 1) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw RawError("could not bind a port") }
        return Listener(fd: fd, port: Int(UInt16(bigEndian: address.sin_port)))
    }
}
