import NIOConcurrencyHelpers
import PQ

/// Connections to the state database kept between uses.
///
/// Every job-store call used to open a connection of its own: a poll of `jobs_view`, a
/// heartbeat, a claim every half second. Each new connection costs the target a backend
/// (fork, SCRAM authentication, cold caches): ~12 ms of CPU a poll, measured, which a clone
/// running on the same cores pays for. A few are kept, each for a limited time, and only
/// when they are outside any transaction and still open.
final class IdleStateConnections: Sendable {
    private struct Idle {
        var connection: PQConnection
        var since: ContinuousClock.Instant
    }

    private struct State {
        var kept: [Idle] = []
        /// Closed (shutdown): nothing is kept any more.
        var closed = false
    }

    private let state = NIOLockedValueBox(State())
    let capacity: Int
    let maximumIdle: Duration

    init(capacity: Int = 4, maximumIdle: Duration = .seconds(60)) {
        self.capacity = capacity
        self.maximumIdle = maximumIdle
    }

    /// The most recently used connection still fit for use, or nil.
    func take() async -> PQConnection? {
        while let candidate = popFresh() {
            if await candidate.isReusable { return candidate }
        }
        return nil
    }

    /// The last kept connection not idle for too long; older ones are dropped (and so closed).
    private func popFresh() -> PQConnection? {
        let now = ContinuousClock.now
        let (picked, stale) = state.withLockedValue { state -> (PQConnection?, [Idle]) in
            let stale = state.kept.filter { now - $0.since > maximumIdle }
            state.kept.removeAll { now - $0.since > maximumIdle }
            return (state.kept.popLast()?.connection, stale)
        }
        withExtendedLifetime(stale) {}  // closed here, outside the lock
        return picked
    }

    /// Keeps `connection` for the next user when it is reusable and there is room; else closes it.
    func put(_ connection: PQConnection) async {
        guard await connection.isReusable else { return }
        let now = ContinuousClock.now
        state.withLockedValue { state in
            guard !state.closed, state.kept.count < capacity else { return }
            state.kept.append(Idle(connection: connection, since: now))
        }
    }

    /// Closes every kept connection and keeps none from now on (shutdown).
    func close() {
        let all = state.withLockedValue { state -> [Idle] in
            state.closed = true
            defer { state.kept = [] }
            return state.kept
        }
        withExtendedLifetime(all) {}  // closed here, outside the lock
    }
}
