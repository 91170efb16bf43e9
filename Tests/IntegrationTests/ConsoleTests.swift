import Foundation
#if canImport(Glibc)
import Glibc
#endif
import PQ
import Testing

/// The admin console (`dbname=pgclone` through the proxy), RELOAD, PAUSE/RESUME, KILL_CLIENT,
/// SHUTDOWN, the Prometheus endpoint, and a TLS certificate swapped by SIGHUP, against the
/// real binary.
@Suite(.serialized)
struct ConsoleTests {
    static func scrape(_ port: Int) async throws -> String {
        let output = try await Shell.run(["curl", "-s", "-f", "http://127.0.0.1:\(port)/metrics"])
        #expect(output.status == 0, "\(output.stderr)")
        return output.stdout
    }

    /// The value of one sample (`name{labels} value`), nil when absent.
    static func sample(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    @Test func consoleCommandsMetricsAndReload() async throws {
        let environment = try TestEnvironment.require()
        let suffix = guideRandomSuffix()
        let operatorRole = "console_op_\(suffix)", group = "console_group_\(suffix)", database = "console_db_\(suffix)"
        let admin = try await PQConnection.connect(environment.directTarget(database: "postgres"))
        try await admin.exec("""
            CREATE ROLE \(operatorRole) LOGIN PASSWORD 'op-secret';
            CREATE ROLE \(group);
            GRANT \(group) TO \(operatorRole);
            """)
        try await admin.exec("CREATE DATABASE \(database)")
        defer {
            Task {
                _ = try? await admin.exec("DROP DATABASE IF EXISTS \(database) WITH (FORCE)")
                _ = try? await admin.exec("DROP ROLE IF EXISTS \(operatorRole); DROP ROLE IF EXISTS \(group)")
            }
        }
        let probe = try await ServerBootstrapHelper.occupyPort()
        let metricsPort = probe.port
        probe.close()
        let configFile = URL(fileURLWithPath: environment.directory).appendingPathComponent("console-\(suffix).conf")
        try "admin_roles = someone_else\nmetrics = 127.0.0.1:\(metricsPort)\n".write(to: configFile, atomically: true, encoding: .utf8)
        let (process, port, log) = try await ConnectionChurnTests.launchProxy(environment, arguments: ["--config", configFile.path, "--log-level", "info"])
        defer { if process.isRunning { process.terminate() } }
        let console = environment.throughProxy(port, database: "pgclone")
        let asOperator = environment.throughProxy(port, user: operatorRole, password: "op-secret", database: "pgclone")

        // Only superusers and members of --admin-roles.
        let refused = try await Shell.psql(asOperator, "SHOW VERSION;")
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("FATAL:  permission denied for the pgclone console"), "\(refused.stderr)")

        #expect(try await Shell.psql(console, "SHOW VERSION;").stdout == "pgclone 3.6.0\n")
        let help = try await Shell.psql(console, "SHOW HELP;").stdout
        #expect(help.contains("KILL_CLIENT id|close one client connection (and its server connection)"), "\(help)")
        let config = try await Shell.psql(console, "SHOW CONFIG;").stdout
        #expect(config.contains("admin_roles|someone_else||t\n"), "\(config)")
        #expect(config.contains("listen|127.0.0.1:\(port)|127.0.0.1:6432|f\n"), "\(config)")
        #expect(!config.contains(environment.password))

        // RELOAD picks up a changed admin role; the console session stays.
        try "admin_roles = \(group)\nmetrics = 127.0.0.1:\(metricsPort)\n".write(to: configFile, atomically: true, encoding: .utf8)
        let held = try await PQConnection.connect(console)
        #expect(try await held.exec("RELOAD").status == .commandOK)
        #expect(try await Shell.psql(asOperator, "SHOW VERSION;").stdout == "pgclone 3.6.0\n")
        let afterReload = try await Shell.psql(console, "SHOW CONFIG;").stdout
        #expect(afterReload.contains("admin_roles|\(group)||t\n"), "\(afterReload)")

        // A reload that finds a bad value changes nothing and says why.
        try "admin_roles = nobody\nshutdown_grace = soon\nmetrics = 127.0.0.1:\(metricsPort)\n".write(to: configFile, atomically: true, encoding: .utf8)
        let rejected = try await Shell.psql(console, "\\set VERBOSITY verbose\nRELOAD;")
        #expect(rejected.stderr.contains("ERROR:  22023: RELOAD rejected: --shutdown-grace: expected seconds, got \"soon\""),
                "\(rejected.stderr)")
        #expect(try await Shell.psql(console, "SHOW CONFIG;").stdout.contains("admin_roles|\(group)||t\n"))
        // A policies directory whose files do not load rejects the whole reload too.
        let badPolicies = URL(fileURLWithPath: environment.directory).appendingPathComponent("console-bad-policies-\(suffix)")
        try FileManager.default.createDirectory(at: badPolicies, withIntermediateDirectories: true)
        try "policies: [\n".write(to: badPolicies.appendingPathComponent("bad.yaml"), atomically: true, encoding: .utf8)
        try "admin_roles = nobody\npolicies = \(badPolicies.path)\nmetrics = 127.0.0.1:\(metricsPort)\n".write(to: configFile, atomically: true, encoding: .utf8)
        let badReload = try await Shell.psql(console, "\\set VERBOSITY verbose\nRELOAD;")
        #expect(badReload.stderr.contains("ERROR:  22023: RELOAD rejected: policies: "), "\(badReload.stderr)")
        let unchanged = try await Shell.psql(console, "SHOW CONFIG;").stdout
        #expect(unchanged.contains("admin_roles|\(group)||t\n") && unchanged.contains("policies|||t\n"), "\(unchanged)")
        try "admin_roles = \(group)\nmetrics = 127.0.0.1:\(metricsPort)\n".write(to: configFile, atomically: true, encoding: .utf8)

        // Clients, servers, stats.
        let appConnInfo = environment.throughProxy(port, database: database, extra: "application_name=console_app")
        let app = try await PQConnection.connect(appConnInfo)
        for _ in 0..<3 { _ = try await app.exec("SELECT 1") }
        let pid = try await app.exec("SELECT pg_backend_pid()").string(0, 0) ?? ""
        let clients = try await Shell.psql(console, "SHOW CLIENTS;").stdout.split(separator: "\n").map(String.init)
        let appLine = try #require(clients.first { $0.contains("|console_app|") }, "\(clients)")
        let fields = appLine.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        #expect(fields[0] == "C" && fields[2] == "postgres" && fields[3] == database && fields[4] == "idle" && fields[11] == "no", "\(appLine)")
        let clientID = fields[1]
        let servers = try await Shell.psql(console, "SHOW SERVERS;").stdout
        #expect(servers.contains("|\(pid)|\(clientID)|no|"), "\(servers)")
        let stats = try await Shell.psql(console, "SHOW STATS;").stdout.split(separator: "\n").first { $0.hasPrefix(database + "|") }
        let statsFields = try #require(stats, "no stats for \(database)").split(separator: "|").map(String.init)
        #expect((Int(statsFields[1]) ?? 0) >= 4, "\(statsFields)")
        #expect((Int(statsFields[3]) ?? 0) > 0 && (Int(statsFields[4]) ?? 0) > 0)
        // psql's expanded display works on console results.
        let expanded = try await Shell.psql(console, "\\x on\nSHOW VERSION;").stdout
        #expect(expanded.contains("version|pgclone 3.6.0"), "\(expanded)")

        // PAUSE holds a new statement until RESUME.
        #expect(try await held.exec("PAUSE \(database)").status == .commandOK)
        let waiting = Task { try await app.exec("SELECT 'ran'").string(0, 0) }
        try await Task.sleep(for: .milliseconds(700))
        let paused = try await Shell.psql(console, "SHOW CLIENTS;").stdout
        #expect(paused.contains("|console_app|no|0|t|f"), "\(paused)")
        #expect(try await held.exec("RESUME \(database)").status == .commandOK)
        #expect(try await waiting.value == "ran")

        // Metrics: counters move with traffic; no label carries a user or database name.
        _ = try await Shell.psql(environment.throughProxy(port, database: database), "SELECT pgclone.version();")
        let before = try await Self.scrape(metricsPort)
        #expect((Self.sample(before, "pgclone_admin_calls_total") ?? 0) >= 1, "admin calls are counted")
        let statementsBefore = try #require(Self.sample(before, "pgclone_statements_total"), "\(before)")
        for _ in 0..<5 { _ = try await app.exec("SELECT 2") }
        let after = try await Self.scrape(metricsPort)
        #expect((Self.sample(after, "pgclone_statements_total") ?? 0) >= statementsBefore + 5)
        #expect((Self.sample(after, "pgclone_bytes_total{direction=\"client_to_server\"}") ?? 0) > 0)
        #expect((Self.sample(after, "pgclone_client_connections{state=\"idle\"}") ?? 0) >= 1)
        #expect((Self.sample(after, "pgclone_client_connections{state=\"console\"}") ?? 0) >= 1)
        #expect((Self.sample(after, "pgclone_process_resident_memory_bytes") ?? 0) > 1_000_000)
        #expect((Self.sample(after, "pgclone_process_open_fds") ?? 0) > 3)
        #expect(after.contains("pgclone_statement_duration_seconds_bucket{le="), "\(after)")
        #expect((Self.sample(after, "pgclone_policy_reloads_total{result=\"ok\"}") ?? 0) >= 1)
        for untrusted in [database, operatorRole, "console_app", "postgres"] {
            #expect(!after.contains(untrusted), "\(untrusted) appears in /metrics")
        }
        let notFound = try await Shell.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(metricsPort)/other"])
        #expect(notFound.stdout == "404")

        // KILL_CLIENT ends that client only.
        let other = try await PQConnection.connect(environment.throughProxy(port, database: database))
        #expect(try await held.exec("KILL_CLIENT \(clientID)").status == .commandOK)
        try await waitFor("the killed client to go") {
            (try? await app.exec("SELECT 1")) == nil
        }
        #expect(try await other.exec("SELECT 'still here'").string(0, 0) == "still here")

        // Errors: unknown commands, the extended protocol.
        let unknown = try await Shell.psql(console, "\\set VERBOSITY verbose\nSELECT 1;")
        #expect(unknown.stderr.contains("ERROR:  42601: unknown pgclone console command \"SELECT\""), "\(unknown.stderr)")
        do {
            _ = try await held.query("SHOW VERSION", [])
            Issue.record("the extended protocol was accepted")
        } catch let error as PQError {
            #expect(error.sqlState == "0A000")
        }
        #expect(try await held.exec("SHOW VERSION").string(0, 0) == "pgclone 3.6.0")

        // A member's open console goes when RELOAD changes the admin roles.
        let operatorConsole = try await PQConnection.connect(asOperator)
        #expect(try await operatorConsole.exec("SHOW VERSION").string(0, 0) == "pgclone 3.6.0")
        try "admin_roles = someone_else\nmetrics = 127.0.0.1:\(metricsPort)\n".write(to: configFile, atomically: true, encoding: .utf8)
        #expect(try await held.exec("RELOAD").status == .commandOK)
        do {
            _ = try await operatorConsole.exec("SHOW VERSION")
            Issue.record("the console of a role no longer admin still answers")
        } catch is PQError {
            // (libpq reports the closed connection; the FATAL's reason is in the proxy's log.)
        }

        // Client-chosen names cannot forge log lines.
        _ = try await Shell.psql(environment.throughProxy(port, database: "nope\n2026-01-01T00:00:00+0000 critical pgclone: FORGED"), "SELECT 1;")

        // SHUTDOWN stops the proxy gracefully.
        _ = try? await held.exec("SHUTDOWN")
        try await waitFor("the proxy to exit", seconds: 40) { !process.isRunning }
        #expect(process.terminationStatus == 0)
        let text = try String(contentsOf: log, encoding: .utf8)
        #expect(text.contains("console: RELOAD") && text.contains("console: KILL_CLIENT") && text.contains("console: SHUTDOWN"))
        #expect(!text.contains(environment.password) && !text.contains("op-secret"))
        #expect(!text.contains("\n2026-01-01T00:00:00+0000 critical pgclone: FORGED"), "a forged log line")
        #expect(text.contains("reason=console closed: the admin roles changed"), "the member's console was not closed for its roles")
    }

    /// SIGHUP with a new certificate at the same paths: new sessions get it, an open TLS
    /// session goes on.
    @Test func tlsCertificateSwappedBySighup() async throws {
        let environment = try TestEnvironment.require()
        let directory = URL(fileURLWithPath: environment.directory).appendingPathComponent("tls-swap-\(guideRandomSuffix())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let certificate = directory.appendingPathComponent("server.crt").path, key = directory.appendingPathComponent("server.key").path
        func makeCertificate(_ name: String) async throws {
            let made = try await Shell.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=\(name)",
                                            "-keyout", key, "-out", certificate])
            #expect(made.status == 0)
            try FileManager.default.copyItem(atPath: certificate, toPath: directory.appendingPathComponent("\(name).crt").path)
        }
        try await makeCertificate("first")
        let (process, port, _) = try await ConnectionChurnTests.launchProxy(environment, arguments: ["--tls-cert", certificate, "--tls-key", key, "--log-level", "warning"])
        defer { if process.isRunning { process.terminate() } }
        func connect(_ root: String) async throws -> PQConnection {
            try await PQConnection.connect("host=127.0.0.1 port=\(port) dbname=db2 user=postgres password=\(environment.password) sslmode=verify-ca sslrootcert=\(directory.appendingPathComponent(root).path) connect_timeout=10")
        }
        let open = try await connect("first.crt")
        #expect(try await open.sslInUse)
        try FileManager.default.removeItem(atPath: certificate)
        try FileManager.default.removeItem(atPath: key)
        try await makeCertificate("second")
        kill(process.processIdentifier, SIGHUP)
        try await waitFor("the new certificate", seconds: 10) { (try? await connect("second.crt")) != nil }
        #expect((try? await connect("first.crt")) == nil, "the old certificate is still served")
        #expect(try await open.exec("SELECT 'same session'").string(0, 0) == "same session")
    }
}
