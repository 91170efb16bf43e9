import NIOConcurrencyHelpers
import PostgresWire

/// Maps the cancel keys the proxy hands to clients onto the backend sessions they stand for.
///
/// A client sees its server session's real process ID (it matches pg_stat_activity and the
/// pid of its own NOTIFYs) with a secret of the proxy's: a cancel must come through the proxy,
/// which swaps in the server's secret. Process IDs are unique among a server's live sessions.
public final class CancelRegistry: Sendable {
    private let entries = NIOLockedValueBox<[Int32: (clientSecret: Int32, server: BackendKey)]>([:])

    public init() {}

    /// Records that `client` (the server's process ID with the proxy's secret) stands for `server`.
    public func register(client: BackendKey, server: BackendKey) {
        entries.withLockedValue { $0[client.processID] = (client.secretKey, server) }
    }

    public func unregister(_ client: BackendKey) {
        entries.withLockedValue { entries in
            if entries[client.processID]?.clientSecret == client.secretKey {
                entries[client.processID] = nil
            }
        }
    }

    /// The server's key for a client's cancel request, if the key is one the proxy issued.
    public func backend(for key: BackendKey) -> BackendKey? {
        entries.withLockedValue { entries in
            guard let entry = entries[key.processID] else { return nil }
            // Compare without an early exit so timing does not reveal how much matched.
            let difference = UInt32(bitPattern: entry.clientSecret ^ key.secretKey)
            return difference == 0 ? entry.server : nil
        }
    }

    public var count: Int { entries.withLockedValue { $0.count } }
}
