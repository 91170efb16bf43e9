import Foundation
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
    }

    @Test func serveStopsGracefullyOnSIGTERM() async throws {
        let environment = try TestEnvironment.require()
        let port = Int.random(in: 20000...29999)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = ["serve", "--listen", "127.0.0.1:\(port)", "--shutdown-grace", "10", "--log-level", "warning"]
        process.environment = ProcessInfo.processInfo.environment.merging(["PGCLONE_BACKEND": environment.backendConnInfo]) { $1 }
        let errorPipe = Pipe()
        process.standardError = errorPipe
        process.standardOutput = FileHandle.nullDevice
        try process.run()
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
        let log = String(decoding: errorPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(!log.contains(environment.password))
    }
}
