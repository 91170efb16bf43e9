import Logging
import ServiceLifecycle
import UnixSignals

/// Reloads policies on SIGHUP and when a policy file changes (checked every second).
/// It is the only place in the process that traps SIGHUP.
public struct PolicyReloader: Service {
    let store: PolicyStore
    let state: StatePolicies?
    let interval: Duration

    public init(store: PolicyStore, state: StatePolicies?, interval: Duration = .seconds(1)) {
        self.store = store
        self.state = state
        self.interval = interval
    }

    public func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
                    store.reload()
                    if let state, let policies = try? await state.load() { store.setStatePolicies(policies) }
                }
            }
            group.addTask {
                var signature = store.directorySignature()
                while !Task.isCancelled && !Task.isShuttingDownGracefully {
                    try? await Task.sleep(for: interval)
                    let now = store.directorySignature()
                    if now != signature {
                        signature = now
                        store.reload()
                    }
                    // Policies created through the SQL API by any proxy fronting this target.
                    if let state, let policies = try? await state.load() {
                        store.setStatePolicies(policies)
                    }
                }
            }
            try? await gracefulShutdown()
            group.cancelAll()
        }
    }
}
