import NIOConcurrencyHelpers
import Synchronization

/// The memory all sessions together may use to hold client messages whole (the proxy holds a
/// statement complete to read it). A session reserves a long message's full length before
/// holding any of it; when the budget is spent it stops reading (back-pressure to its client)
/// until another session's message is done, so the process does not grow with the clients.
final class BufferBudget: Sendable {
    /// Messages up to this long are not counted: a read holds that much anyway.
    static let uncountedLength = 64 << 10

    let limit: Int
    private let used = Synchronization.Atomic<Int>(0)
    private let waiters = NIOLockedValueBox<[ObjectIdentifier: @Sendable () -> Void]>([:])

    init(limit: Int) {
        self.limit = limit
    }

    var inUse: Int { used.load(ordering: .relaxed) }

    /// Takes `bytes` from the budget, or returns false when they are not there.
    func reserve(_ bytes: Int) -> Bool {
        var current = used.load(ordering: .relaxed)
        while current + bytes <= limit {
            let (exchanged, original) = used.compareExchange(expected: current, desired: current + bytes, ordering: .acquiringAndReleasing)
            if exchanged { return true }
            current = original
        }
        return false
    }

    /// Gives `bytes` back and wakes the sessions that waited for some.
    func release(_ bytes: Int) {
        guard bytes > 0 else { return }
        used.subtract(bytes, ordering: .acquiringAndReleasing)
        let woken = waiters.withLockedValue { waiters in
            defer { waiters.removeAll() }
            return Array(waiters.values)
        }
        for wake in woken { wake() }
    }

    /// Calls `wake` once after the next release (at once if `bytes` fit already: a release
    /// between the failed reservation and this call must not be missed).
    func wait(_ id: ObjectIdentifier, for bytes: Int, _ wake: @escaping @Sendable () -> Void) {
        waiters.withLockedValue { $0[id] = wake }
        if used.load(ordering: .acquiring) + bytes <= limit, waiters.withLockedValue({ $0.removeValue(forKey: id) }) != nil {
            wake()
        }
    }

    func stopWaiting(_ id: ObjectIdentifier) {
        _ = waiters.withLockedValue { $0.removeValue(forKey: id) }
    }
}
