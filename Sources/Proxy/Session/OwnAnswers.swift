/// ParseComplete (or CloseComplete) answers the server owes, in the order their messages went
/// to it: the client's, passed on, and the proxy's own (a statement it put in the client's
/// stream), swallowed. Each is tagged with its batch (the client's requests sent before it), so
/// that the answers a batch's error skipped are forgotten with that batch alone: the proxy's own
/// answers of a batch pipelined behind it stay expected. (They were forgotten at every
/// ReadyForQuery, and a pipelined client then got the proxy's own answers; round 32.)
struct OwnAnswers: Sendable, Hashable {
    private struct Expected: Sendable, Hashable {
        var batch: Int
        var own: Bool
    }
    private var expected: [Expected] = []

    var isEmpty: Bool { expected.isEmpty }

    /// A client's message went to the server after `batch` requests (Query, Sync, FunctionCall).
    mutating func client(batch: Int) { expected.append(Expected(batch: batch, own: false)) }

    /// One of the proxy's own.
    mutating func own(batch: Int) { expected.append(Expected(batch: batch, own: true)) }

    /// An answer came: whether it is the proxy's own (to swallow).
    mutating func answered() -> Bool {
        expected.isEmpty ? false : expected.removeFirst().own
    }

    /// The `answered`-th request's ReadyForQuery came: what its batch still owed (skipped after
    /// an error) will not come.
    mutating func batchEnded(answered: Int) {
        expected.removeAll { $0.batch < answered }
    }
}
