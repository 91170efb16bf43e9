/// ParseComplete (or CloseComplete) answers the server owes, in the order their messages went
/// to it: the client's, passed on, and the proxy's own (a statement it put in the client's
/// stream), swallowed. Each is tagged with its batch (the client's requests sent before it), so
/// that the answers a batch's error skipped are forgotten with that batch alone: the proxy's own
/// answers of a batch pipelined behind it stay expected. (They were forgotten at every
/// ReadyForQuery, and a pipelined client then got the proxy's own answers; round 32.)
struct OwnAnswers: Sendable, Hashable {
    private var expected: [(batch: Int, own: Bool)] = []

    var isEmpty: Bool { expected.isEmpty }

    /// A client's message went to the server after `batch` requests (Query, Sync, FunctionCall).
    mutating func client(batch: Int) { expected.append((batch, false)) }

    /// One of the proxy's own.
    mutating func own(batch: Int) { expected.append((batch, true)) }

    /// An answer came: whether it is the proxy's own (to swallow).
    mutating func answered() -> Bool {
        expected.isEmpty ? false : expected.removeFirst().own
    }

    /// The `answered`-th request's ReadyForQuery came: what its batch still owed (skipped after
    /// an error) will not come.
    mutating func batchEnded(answered: Int) {
        expected.removeAll { $0.batch < answered }
    }

    static func == (lhs: OwnAnswers, rhs: OwnAnswers) -> Bool {
        lhs.expected.elementsEqual(rhs.expected) { $0.batch == $1.batch && $0.own == $1.own }
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(expected.count)
        for entry in expected {
            hasher.combine(entry.batch)
            hasher.combine(entry.own)
        }
    }
}
