import Logging
import PQ
import ServiceLifecycle
import UnixSignals

/// Reloads policies on SIGHUP and when a policy file changes (checked every second).
/// It is the only place in the process that traps SIGHUP.
public struct PolicyReloader: Service {
    let store: PolicyStore
    let state: StatePolicies?
    let interval: Duration
    /// What SIGHUP does instead of reloading the policies alone (the proxy's whole reload).
    let onHangup: (@Sendable () async -> Void)?

    public init(store: PolicyStore, state: StatePolicies?, interval: Duration = .seconds(1), onHangup: (@Sendable () async -> Void)? = nil) {
        self.store = store
        self.state = state
        self.interval = interval
        self.onHangup = onHangup
    }

    public func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
                    if let onHangup {
                        await onHangup()
                        continue
                    }
                    store.reload()
                    guard let state else { continue }
                    do {
                        store.setStatePolicies(try await state.load())
                    } catch {
                        store.stateFailed(StatePolicies.describe(error))
                    }
                }
            }
            group.addTask {
                var signature = store.directorySignature()
                // One connection to the state database, kept open (connecting every second
                // forked a backend and ran a SCRAM exchange every second); after a failure,
                // attempts back off up to half a minute.
                var connection: PQConnection?
                var skip = 0, backoff = 1
                var first = true
                while !Task.isCancelled && !Task.isShuttingDownGracefully {
                    // The state database is read at once: sessions that could be masked wait for it.
                    if !first { try? await Task.sleep(for: interval) }
                    first = false
                    let now = store.directorySignature()
                    if now != signature {
                        signature = now
                        store.reload()
                    }
                    // Policies created through the SQL API by any proxy fronting this target.
                    guard let state else { continue }
                    if skip > 0 {
                        skip -= 1
                        continue
                    }
                    do {
                        let open: PQConnection
                        if let connection { open = connection } else { open = try await state.connect() }
                        connection = open
                        store.setStatePolicies(try await state.load(on: open))
                        backoff = 1
                    } catch {
                        // Stopping: the read was cancelled, nothing failed.
                        if Task.isCancelled || Task.isShuttingDownGracefully { break }
                        store.stateFailed(StatePolicies.describe(error))
                        connection = nil
                        skip = backoff
                        backoff = min(backoff * 2, 30)
                    }
                }
            }
            try? await gracefulShutdown()
            group.cancelAll()
        }
    }
}
