import PostgresWire
@testable import Proxy
import Testing

@Suite struct CancelRegistryTests {
    @Test func issuedKeyMapsToBackendAndOnlyWithTheRightSecret() {
        let registry = CancelRegistry()
        let backend = BackendKey(processID: 4242, secretKey: 99)
        let key = registry.register(backend: backend)
        #expect(key != backend)
        #expect(registry.backend(for: key) == backend)
        #expect(registry.backend(for: BackendKey(processID: key.processID, secretKey: key.secretKey &+ 1)) == nil)
        #expect(registry.backend(for: backend) == nil)
        registry.unregister(key)
        #expect(registry.backend(for: key) == nil)
        #expect(registry.count == 0)
    }

    @Test func keysAreUnique() {
        let registry = CancelRegistry()
        let keys = (0..<1000).map { registry.register(backend: BackendKey(processID: Int32($0), secretKey: 0)) }
        #expect(Set(keys.map(\.processID)).count == 1000)
    }
}
