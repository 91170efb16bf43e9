import PQ
@testable import Proxy
import Testing

@Suite struct BackendEndpointTests {
    @Test func tcpWithDefaults() throws {
        let endpoint = try BackendEndpoint(conninfo: ConnInfo(parsing: "host=127.0.0.1 user=postgres password=secret"))
        #expect(endpoint.address == .tcp(host: "127.0.0.1", port: 5432))
        #expect(endpoint.tlsMode == .prefer)
    }

    @Test func unixSocketDirectory() throws {
        let endpoint = try BackendEndpoint(conninfo: ConnInfo(parsing: "host=/tmp/sock port=5433"))
        #expect(endpoint.address == .unixSocket(path: "/tmp/sock/.s.PGSQL.5433"))
        #expect(endpoint.tlsMode == .disable)
    }

    @Test func uriForm() throws {
        let endpoint = try BackendEndpoint(conninfo: ConnInfo(parsing: "postgresql://svc:pw@db.internal:6543/postgres?sslmode=require"))
        #expect(endpoint.address == .tcp(host: "db.internal", port: 6543))
        #expect(endpoint.tlsMode == .require)
    }

    @Test func badValuesAreNamed() throws {
        #expect(throws: ConfigurationError("--backend: invalid port \"x\"")) {
            _ = try BackendEndpoint(conninfo: ConnInfo(parsing: "host=h port=x"))
        }
        #expect(throws: ConfigurationError("--backend: invalid sslmode \"sometimes\"")) {
            _ = try BackendEndpoint(conninfo: ConnInfo(parsing: "host=h sslmode=sometimes"))
        }
    }

    @Test func redactedConnInfoHidesPassword() throws {
        let info = try ConnInfo(parsing: "host=h user=u password='s3cr3t word'")
        #expect(!info.redacted.contains("s3cr3t"))
        #expect(info.redacted == "host='h' user='u'")
        #expect(try ConnInfo(parsing: info.connectionString)["password"] == "s3cr3t word")
    }

    @Test func unparsableConnInfoDoesNotEchoInput() {
        do {
            // A forgotten "password=" makes libpq quote the secret in its message.
            _ = try ConnInfo(parsing: "host=h user=u hunter2")
            Issue.record("expected an error")
        } catch {
            #expect(!"\(error)".contains("hunter2"))
            #expect("\(error)" == "missing \"…\" after \"…\" in connection info string")
        }
        // A mistyped keyword is shown, so that the operator sees what to fix.
        do {
            _ = try ConnInfo(parsing: "hostx")
            Issue.record("expected an error")
        } catch {
            #expect("\(error)" == "missing \"=\" after \"hostx\" in connection info string")
        }
    }
}
