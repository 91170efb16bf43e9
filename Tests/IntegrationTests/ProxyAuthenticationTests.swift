import Foundation
import PQ
import Proxy
import Testing

/// Clients authenticate end to end against the target; the proxy only relays.
@Suite struct ProxyAuthenticationTests {
    @Test func everyAuthenticationMethodIsRelayed() async throws {
        let environment = try TestEnvironment.require()
        try await TargetRoles.ensure()
        let proxy = try await RunningProxy.start(environment)
        defer { Task { try await proxy.stop() } }
        let logins: [(user: String, password: String, method: String)] = [
            ("auth_trust", "", "trust"),
            ("auth_clear", TargetRoles.clearPassword, "password"),
            ("auth_md5", TargetRoles.md5Password, "md5"),
            (TargetRoles.scramUser, TargetRoles.scramPassword, "scram-sha-256"),
        ]
        for login in logins {
            let conninfo = environment.throughProxy(proxy.port, user: login.user, password: "'\(login.password.replacingOccurrences(of: "'", with: "\\'"))'")
            let connection = try await PQConnection.connect(conninfo)
            let result = try await connection.exec("SELECT current_user")
            #expect(result.string(0, 0) == login.user, "login as \(login.user) via \(login.method)")
        }
    }

    @Test func wrongPasswordIsRejectedByTheServer() async throws {
        let environment = try TestEnvironment.require()
        try await TargetRoles.ensure()
        let proxy = try await RunningProxy.start(environment)
        defer { Task { try await proxy.stop() } }
        for user in ["postgres", "auth_md5", "auth_clear"] {
            do {
                _ = try await PQConnection.connect(environment.throughProxy(proxy.port, user: user, password: "wrong"))
                Issue.record("wrong password accepted for \(user)")
            } catch let error as PQError {
                #expect(error.message.contains("password authentication failed for user \"\(user)\""), "\(error.message)")
            }
        }
        try await waitFor("rejected sessions to close") { proxy.server.sessionCount == 0 }
    }

    @Test func unknownDatabaseIsReportedAsTheServerSaysIt() async throws {
        let environment = try TestEnvironment.require()
        let proxy = try await RunningProxy.start(environment)
        defer { Task { try await proxy.stop() } }
        do {
            _ = try await PQConnection.connect(environment.throughProxy(proxy.port, database: "no_such_db"))
            Issue.record("unknown database accepted")
        } catch let error as PQError {
            #expect(error.message.contains("database \"no_such_db\" does not exist"), "\(error.message)")
        }
    }

    @Test func replicationConnectionsAreRefused() async throws {
        let environment = try TestEnvironment.require()
        let proxy = try await RunningProxy.start(environment)
        defer { Task { try await proxy.stop() } }
        do {
            _ = try await PQConnection.connect(environment.throughProxy(proxy.port, extra: "replication=database"))
            Issue.record("replication connection accepted")
        } catch let error as PQError {
            #expect(error.message.contains("pgclone does not relay replication connections"), "\(error.message)")
        }
    }

    @Test func clientTLSIsTerminatedByTheProxy() async throws {
        let environment = try TestEnvironment.require()
        let proxy = try await RunningProxy.start(environment) {
            $0.tlsCertificatePath = environment.proxyCertificate
            $0.tlsKeyPath = environment.proxyKey
        }
        defer { Task { try await proxy.stop() } }
        let base = "host=127.0.0.1 port=\(proxy.port) dbname=db2 user=postgres password=\(environment.password) connect_timeout=10"
        let tls = try await PQConnection.connect(base + " sslmode=require")
        #expect(try await tls.sslInUse)
        #expect(try await tls.exec("SELECT 'over tls'").string(0, 0) == "over tls")

        // verify-full against the proxy's own certificate (CN=localhost).
        let verified = try await PQConnection.connect("host=localhost port=\(proxy.port) dbname=db2 user=postgres password=\(environment.password) sslmode=verify-full sslrootcert=\(environment.proxyCertificate)")
        #expect(try await verified.sslInUse)

        // Channel binding cannot work through a TLS-terminating proxy: SCRAM-SHA-256-PLUS is withheld.
        let preferred = try await PQConnection.connect(base + " sslmode=require channel_binding=prefer")
        #expect(try await preferred.exec("SELECT 1").string(0, 0) == "1")
        do {
            _ = try await PQConnection.connect(base + " sslmode=require channel_binding=require")
            Issue.record("channel_binding=require cannot succeed through the proxy")
        } catch let error as PQError {
            #expect(error.message.contains("channel binding"), "\(error.message)")
        }

        // Plaintext still allowed when the client does not ask for TLS.
        let plain = try await PQConnection.connect(base + " sslmode=disable")
        #expect(try await plain.sslInUse == false)
    }

    /// TLS on both legs: the server supports channel binding over its TLS connection from the
    /// proxy, so it takes a TLS client that could bind (libpq's default) for a downgrade and
    /// refuses it; the error says what to change, and channel_binding=disable works.
    @Test func tlsOnBothLegsExplainsChannelBinding() async throws {
        let environment = try TestEnvironment.require()
        let proxy = try await RunningProxy.start(environment, backend: environment.backendConnInfo.replacingOccurrences(of: "sslmode=disable", with: "sslmode=require")) {
            $0.tlsCertificatePath = environment.proxyCertificate
            $0.tlsKeyPath = environment.proxyKey
        }
        defer { Task { try await proxy.stop() } }
        let base = "host=127.0.0.1 port=\(proxy.port) dbname=db2 user=postgres password=\(environment.password) connect_timeout=10 sslmode=require"
        let output = try await Shell.run(["psql", "-X", "-d", base + " channel_binding=prefer", "-c", "SELECT 1"])
        #expect(output.stderr.contains("FATAL:  SCRAM channel binding negotiation error"), "\(output.stderr)")
        #expect(output.stderr.contains("HINT:  pgclone terminates TLS, so SCRAM channel binding cannot reach the server: connect with channel_binding=disable"), "\(output.stderr)")
        let disabled = try await PQConnection.connect(base + " channel_binding=disable")
        #expect(try await disabled.exec("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").string(0, 0) == "t")
    }

    @Test func withoutCertificateTheProxyRefusesTLS() async throws {
        let environment = try TestEnvironment.require()
        let proxy = try await RunningProxy.start(environment)
        defer { Task { try await proxy.stop() } }
        let base = "host=127.0.0.1 port=\(proxy.port) dbname=db2 user=postgres password=\(environment.password) connect_timeout=10"
        let preferred = try await PQConnection.connect(base + " sslmode=prefer")
        #expect(try await preferred.sslInUse == false)
        do {
            _ = try await PQConnection.connect(base + " sslmode=require")
            Issue.record("sslmode=require must fail when the proxy has no certificate")
        } catch let error as PQError {
            #expect(error.message.contains("server does not support SSL"), "\(error.message)")
        }
    }

    @Test(arguments: ["require", "verify-full"])
    func backendTLSFromTheBackendConnInfo(_ mode: String) async throws {
        let environment = try TestEnvironment.require()
        let backend = "host=localhost port=\(environment.targetPort) user=postgres password=\(environment.password) sslmode=\(mode) sslrootcert=\(environment.targetServerCertificate)"
        let proxy = try await RunningProxy.start(environment, backend: backend)
        defer { Task { try await proxy.stop() } }
        let connection = try await PQConnection.connect(environment.throughProxy(proxy.port))
        let result = try await connection.exec("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        #expect(result.string(0, 0) == "t")
    }

    @Test func unixSocketBackend() async throws {
        let environment = try TestEnvironment.require()
        try await TargetRoles.ensure()
        let backend = "host=\(environment.targetSocketDirectory) port=\(environment.targetPort) user=postgres"
        let proxy = try await RunningProxy.start(environment, backend: backend)
        defer { Task { try await proxy.stop() } }
        let connection = try await PQConnection.connect(environment.throughProxy(proxy.port, user: "auth_trust"))
        #expect(try await connection.exec("SELECT client_addr IS NULL FROM pg_stat_activity WHERE pid = pg_backend_pid()").string(0, 0) == "t")
    }

    @Test func unreachableBackendGivesAClearError() async throws {
        let environment = try TestEnvironment.require()
        let proxy = try await RunningProxy.start(environment, backend: "host=127.0.0.1 port=1 user=postgres password=x sslmode=disable")
        defer { Task { try await proxy.stop() } }
        do {
            _ = try await PQConnection.connect(environment.throughProxy(proxy.port))
            Issue.record("connection through a proxy with no backend succeeded")
        } catch let error as PQError {
            #expect(error.message.contains("pgclone could not connect to the PostgreSQL server at 127.0.0.1:1"), "\(error.message)")
        }
    }
}
