import Foundation
import Proxy
import Testing

/// The clusters `scripts/test` starts, described by its `PGCLONE_TEST_*` variables.
///
/// Integration tests fail (they are never skipped) when these are missing: run
/// them through `scripts/test`.
struct TestEnvironment: Sendable {
    let host: String
    let sourcePort: Int
    let targetPort: Int
    let password: String
    let targetSocketDirectory: String
    let proxyCertificate: String
    let proxyKey: String
    let targetServerCertificate: String
    let directory: String

    static let current: TestEnvironment? = {
        // Every test's proxies, clients and service connections share this process: hundreds
        // of tests at once hold over a thousand descriptors (1,012 measured on two cores), more
        // than the 1,024 soft limit container runtimes give. `pgclone serve` raises its own
        // the same way.
        DescriptorLimit.raiseSoftLimitToHard()
        let env = ProcessInfo.processInfo.environment
        guard let host = env["PGCLONE_TEST_HOST"],
              let source = env["PGCLONE_TEST_SOURCE_PORT"].flatMap(Int.init),
              let target = env["PGCLONE_TEST_TARGET_PORT"].flatMap(Int.init),
              let password = env["PGCLONE_TEST_PASSWORD"],
              let socket = env["PGCLONE_TEST_TARGET_SOCKET"],
              let cert = env["PGCLONE_TEST_TLS_CERT"],
              let key = env["PGCLONE_TEST_TLS_KEY"],
              let serverCert = env["PGCLONE_TEST_TARGET_SERVER_CERT"],
              let directory = env["PGCLONE_TEST_DIR"]
        else { return nil }
        return TestEnvironment(host: host, sourcePort: source, targetPort: target, password: password,
                               targetSocketDirectory: socket, proxyCertificate: cert, proxyKey: key,
                               targetServerCertificate: serverCert, directory: directory)
    }()

    static func require() throws -> TestEnvironment {
        try #require(current, "PGCLONE_TEST_* variables are missing: run the integration tests through scripts/test")
    }

    /// Superuser conninfo straight to the target (bypassing the proxy).
    func directTarget(database: String = "db2") -> String {
        "host=\(host) port=\(targetPort) dbname=\(database) user=postgres password=\(password) connect_timeout=10"
    }

    /// The proxy's `--backend` value: the target over TCP.
    var backendConnInfo: String {
        "host=\(host) port=\(targetPort) dbname=postgres user=postgres password=\(password) sslmode=disable"
    }

    func throughProxy(_ port: Int, user: String = "postgres", password: String? = nil, database: String = "db2", extra: String = "") -> String {
        "host=127.0.0.1 port=\(port) dbname=\(database) user=\(user) password=\(password ?? self.password) sslmode=disable connect_timeout=10 \(extra)"
    }
}
