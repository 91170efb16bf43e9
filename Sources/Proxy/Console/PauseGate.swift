import NIOConcurrencyHelpers
import Synchronization

/// PAUSE and RESUME of the console: while a database (or every one) is paused, sessions on it
/// start no new transaction; statements inside an open transaction go on, so that it can end.
final class PauseGate: Sendable {
    private struct State {
        var all = false
        var databases: Set<String> = []
        var waiters: [ObjectIdentifier: @Sendable () -> Void] = [:]
    }

    private let state = NIOLockedValueBox(State())
    /// Read on every new statement without the lock: true while anything at all is paused.
    private let anyPaused = Atomic<Bool>(false)

    func isPaused(_ database: String) -> Bool {
        guard anyPaused.load(ordering: .acquiring) else { return false }
        return state.withLockedValue { $0.all || $0.databases.contains(database) }
    }

    var pausedDatabases: (all: Bool, databases: Set<String>) {
        state.withLockedValue { ($0.all, $0.databases) }
    }

    func pause(_ database: String?) {
        state.withLockedValue { state in
            if let database { state.databases.insert(database) } else { state.all = true }
        }
        anyPaused.store(true, ordering: .releasing)
    }

    /// Returns false when `database` was not paused (or everything is: then only a RESUME
    /// without a name lifts it, as in PgBouncer).
    @discardableResult
    func resume(_ database: String?) -> Bool {
        let (changed, waiters) = state.withLockedValue { state -> (Bool, [@Sendable () -> Void]) in
            let changed: Bool
            if let database {
                guard !state.all else { return (false, []) }
                changed = state.databases.remove(database) != nil
            } else {
                changed = state.all || !state.databases.isEmpty
                state.all = false
                state.databases = []
            }
            let waiters = Array(state.waiters.values)
            state.waiters = [:]
            return (changed, waiters)
        }
        anyPaused.store(state.withLockedValue { $0.all || !$0.databases.isEmpty }, ordering: .releasing)
        // Every waiter looks again (another database may still be paused).
        waiters.forEach { $0() }
        return changed
    }

    /// `wake` runs (on any thread) at the next RESUME.
    func wait(_ session: ObjectIdentifier, wake: @escaping @Sendable () -> Void) {
        state.withLockedValue { $0.waiters[session] = wake }
    }

    func stopWaiting(_ session: ObjectIdentifier) {
        state.withLockedValue { _ = $0.waiters.removeValue(forKey: session) }
    }
}
