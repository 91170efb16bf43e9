import PostgresWire
@testable import Proxy
import Testing

@Suite struct CancelRegistryTests {
    @Test func theClientsKeyMapsToTheServersOnlyWithTheProxysSecret() {
        let registry = CancelRegistry()
        let server = BackendKey(processID: 4242, secretKey: 99)
        let client = BackendKey(processID: 4242, secretKey: 12345)
        registry.register(client: client, server: server)
        #expect(registry.backend(for: client) == server)
        // The server's own secret is not the proxy's: a cancel must come with the key the client was given.
        #expect(registry.backend(for: server) == nil)
        #expect(registry.backend(for: BackendKey(processID: 4242, secretKey: 12346)) == nil)
        registry.unregister(BackendKey(processID: 4242, secretKey: 1))
        #expect(registry.count == 1, "a stale key does not remove the current one")
        registry.unregister(client)
        #expect(registry.backend(for: client) == nil)
        #expect(registry.count == 0)
    }
}
