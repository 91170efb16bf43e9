import NIOConcurrencyHelpers
import PostgresWire

/// Maps the cancel keys the proxy hands to clients onto the backend sessions they stand for.
///
/// Clients never see a backend's real key: a client that learns another
/// client's proxy key can only cancel through the proxy, and the proxy's keys
/// are random rather than server process IDs.
public final class CancelRegistry: Sendable {
    private let entries = NIOLockedValueBox<[Int32: (secret: Int32, backend: BackendKey)]>([:])

    public init() {}

    /// Issues a fresh proxy key for `backend`.
    public func register(backend: BackendKey) -> BackendKey {
        entries.withLockedValue { entries in
            var key: BackendKey
            repeat {
                key = BackendKey(processID: Int32.random(in: 1...Int32.max), secretKey: Int32.random(in: Int32.min...Int32.max))
            } while entries[key.processID] != nil
            entries[key.processID] = (key.secretKey, backend)
            return key
        }
    }

    public func unregister(_ key: BackendKey) {
        entries.withLockedValue { entries in
            if entries[key.processID]?.secret == key.secretKey {
                entries[key.processID] = nil
            }
        }
    }

    /// The backend key for a client's cancel request, if the key is one we issued.
    public func backend(for key: BackendKey) -> BackendKey? {
        entries.withLockedValue { entries in
            guard let entry = entries[key.processID] else { return nil }
            // Compare without an early exit so timing does not reveal how much matched.
            let difference = UInt32(bitPattern: entry.secret ^ key.secretKey)
            return difference == 0 ? entry.backend : nil
        }
    }

    public var count: Int { entries.withLockedValue { $0.count } }
}
