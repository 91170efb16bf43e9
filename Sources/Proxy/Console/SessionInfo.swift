import Foundation
import NIOConcurrencyHelpers

/// What the console shows about one client session (and the server connection it holds). The
/// handler writes it at the few moments it changes (startup, session opened, a statement
/// beginning or ending, a new masking context); the console reads it.
final class SessionInfo: Sendable {
    struct State: Sendable {
        var user = ""
        var database = ""
        var applicationName = ""
        var clientAddress = ""
        var clientPort = 0
        var tls = false
        /// `login` until authenticated, then `idle`, `active` or `idle in transaction`.
        var state = "login"
        var requestTime: Date?
        var serverPID: Int32 = 0
        var serverConnected = false
        var serverConnectTime: Date?
        var masked = false
        var policyGeneration = 0
        var console = false
        var waitingOnPause = false
    }

    let id: Int
    let connectTime = Date()
    private let box = NIOLockedValueBox(State())

    init(id: Int) {
        self.id = id
    }

    var state: State { box.withLockedValue { $0 } }

    func update(_ body: (inout State) -> Void) {
        box.withLockedValue { body(&$0) }
    }
}
