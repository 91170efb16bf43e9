import NIOConcurrencyHelpers
import PostgresWire

/// Maps the cancel keys the proxy hands to clients onto the backend sessions they stand for.
///
/// A client sees its server session's real process ID (it matches pg_stat_activity and the
/// pid of its own NOTIFYs) with a secret of the proxy's: a cancel must come through the proxy,
/// which swaps in the server's secret. Process IDs are unique among a server's live sessions.
public final class CancelRegistry: Sendable {
    private let entries = NIOLockedValueBox<[Int32: (clientSecret: Int32, server: BackendKey, admin: AdminCallCanceller?)]>([:])

    public init() {}

    /// Records that `client` (the server's process ID with the proxy's secret) stands for `server`.
    /// `admin`: the session's admin calls, which run in the proxy and not on the server.
    public func register(client: BackendKey, server: BackendKey, admin: AdminCallCanceller? = nil) {
        entries.withLockedValue { $0[client.processID] = (client.secretKey, server, admin) }
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
        entry(for: key)?.server
    }

    /// The server's key and the session's admin calls for a client's cancel request.
    func entry(for key: BackendKey) -> (server: BackendKey, admin: AdminCallCanceller?)? {
        entries.withLockedValue { entries in
            guard let entry = entries[key.processID] else { return nil }
            // Compare without an early exit so timing does not reveal how much matched.
            let difference = UInt32(bitPattern: entry.clientSecret ^ key.secretKey)
            return difference == 0 ? (entry.server, entry.admin) : nil
        }
    }

    public var count: Int { entries.withLockedValue { $0.count } }
}

/// The admin call a session is running, if any, so that a CancelRequest (psql's Ctrl-C) stops
/// it as it would stop a statement: the call's task is cancelled, its libpq statements with it.
public final class AdminCallCanceller: Sendable {
    private let task = NIOLockedValueBox<Task<Void, Never>?>(nil)

    public init() {}

    func running(_ call: Task<Void, Never>?) {
        task.withLockedValue { $0 = call }
    }

    func cancel() {
        task.withLockedValue { $0 }?.cancel()
    }
}
