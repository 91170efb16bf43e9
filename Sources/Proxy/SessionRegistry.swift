import NIOConcurrencyHelpers
import NIOCore

/// The open client channels, so that shutdown can ask each to finish and wait for all to close,
/// with what the console shows about each.
final class SessionRegistry: Sendable {
    private struct State {
        var channels: [ObjectIdentifier: any Channel] = [:]
        var infos: [ObjectIdentifier: SessionInfo] = [:]
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = NIOLockedValueBox(State())

    /// Adds a session; returns how many are open with it.
    @discardableResult
    func add(_ channel: any Channel, info: SessionInfo? = nil) -> Int {
        state.withLockedValue { state in
            state.channels[ObjectIdentifier(channel)] = channel
            if let info { state.infos[ObjectIdentifier(channel)] = info }
            return state.channels.count
        }
    }

    func remove(_ channel: any Channel) {
        let waiters = state.withLockedValue { state -> [CheckedContinuation<Void, Never>] in
            state.channels[ObjectIdentifier(channel)] = nil
            state.infos[ObjectIdentifier(channel)] = nil
            guard state.channels.isEmpty else { return [] }
            defer { state.waiters = [] }
            return state.waiters
        }
        waiters.forEach { $0.resume() }
    }

    var count: Int { state.withLockedValue { $0.channels.count } }

    /// Every open session's console information, by id.
    func infos() -> [SessionInfo] {
        state.withLockedValue { Array($0.infos.values) }.sorted { $0.id < $1.id }
    }

    /// Asks session `id` to close (KILL_CLIENT); false when there is none.
    func kill(id: Int) -> Bool {
        let channel = state.withLockedValue { state in
            state.infos.first(where: { $0.value.id == id }).flatMap { state.channels[$0.key] }
        }
        guard let channel else { return false }
        channel.pipeline.fireUserInboundEventTriggered(KillEvent())
        return true
    }

    /// Sends `event` to every open session.
    func broadcast(_ event: any Sendable) {
        for channel in state.withLockedValue({ Array($0.channels.values) }) {
            channel.pipeline.fireUserInboundEventTriggered(event)
        }
    }

    func closeAll() {
        for channel in state.withLockedValue({ Array($0.channels.values) }) {
            channel.close(promise: nil)
        }
    }

    /// Returns once no session is open.
    func waitUntilEmpty() async {
        await withCheckedContinuation { continuation in
            let ready = state.withLockedValue { state -> Bool in
                if state.channels.isEmpty { return true }
                state.waiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }
}

/// Asks a session to close as soon as it is idle (graceful shutdown).
struct QuiesceEvent: Sendable {}

/// Closes a session at once (the console's KILL_CLIENT).
struct KillEvent: Sendable {}
