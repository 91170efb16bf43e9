import Foundation
import Proxy
import Testing

/// Real drivers and tools through the proxy: pgbench, psycopg 3 and asyncpg.
@Suite struct ClientCompatibilityTests {
    private static let pythonDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("python")

    private func clientEnvironment(_ environment: TestEnvironment, port: Int) -> [String: String] {
        ["PGHOST": "127.0.0.1", "PGPORT": "\(port)", "PGUSER": "postgres", "PGPASSWORD": environment.password,
         "PGDATABASE": "db2", "PGSSLMODE": "disable"]
    }

    @Test func pgbenchInitialisesAndRunsThroughTheProxy() async throws {
        let environment = try TestEnvironment.require()
        let proxy = try await RunningProxy.start(environment)
        defer { Task { try await proxy.stop() } }
        let env = clientEnvironment(environment, port: proxy.port)
        let database = "bench_\(UInt32.random(in: 0...UInt32.max))"
        #expect(try await Shell.run(["createdb", database], environment: env).status == 0)
        let initialise = try await Shell.run(["pgbench", "-i", "-s", "1", "-q", database], environment: env)
        #expect(initialise.status == 0, "\(initialise.stderr)")
        for mode in ["simple", "extended", "prepared"] {
            let run = try await Shell.run(["pgbench", "-n", "-c", "4", "-j", "2", "-t", "200", "-M", mode, database], environment: env)
            #expect(run.status == 0, "\(mode): \(run.stderr)")
            #expect(run.stdout.contains("number of transactions actually processed: 800/800"), "\(mode): \(run.stdout)")
            #expect(run.stdout.contains("number of failed transactions: 0 (0.000%)"), "\(mode): \(run.stdout)")
        }
        let count = try await Shell.psql("host=127.0.0.1 port=\(proxy.port) dbname=\(database) user=postgres password=\(environment.password)", "SELECT count(*) FROM pgbench_history")
        #expect(count.stdout == "2400\n")
        _ = try await Shell.run(["dropdb", "--force", database], environment: clientEnvironment(environment, port: environment.targetPort))
    }

    @Test(arguments: ["psycopg_client.py", "asyncpg_client.py"])
    func pythonDriverThroughTheProxy(_ script: String) async throws {
        let environment = try TestEnvironment.require()
        let proxy = try await RunningProxy.start(environment)
        defer { Task { try await proxy.stop() } }
        let path = Self.pythonDirectory.appendingPathComponent(script).path
        let output = try await Shell.run(["python3", path], environment: clientEnvironment(environment, port: proxy.port), timeout: 180)
        #expect(output.status == 0, "\(output.stdout)\n\(output.stderr)")
        #expect(output.stdout.contains("OK \(script.replacingOccurrences(of: ".py", with: ""))"), "\(output.stdout)")
    }
}
