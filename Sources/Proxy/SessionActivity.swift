import PostgresWire

/// Tracks whether a session is between requests, from message types alone.
///
/// A session is idle when every request that expects a ReadyForQuery (Query,
/// Sync, FunctionCall) has had it, no extended-protocol message is waiting for
/// its Sync, and the last ReadyForQuery said "idle" (not in a transaction).
/// Graceful shutdown closes idle sessions; admin calls wait for this state.
public struct SessionActivity: Sendable, Hashable {
    public private(set) var awaitingReadyForQuery = 0
    public private(set) var hasUnsyncedExtendedMessages = false
    /// An extended-protocol message came after the last request (Query, Sync, FunctionCall).
    private var extendedSinceLastRequest = false
    public private(set) var transactionStatus: BackendMessage.TransactionStatus = .idle
    /// A COPY FROM STDIN (started by a Query or an Execute): the server ignores the Syncs that
    /// come before the copy's end (libpq and tokio-postgres send one after the Execute; a client
    /// may send one among the data), which answer nothing. Counted from the last Query or
    /// Execute, the one that may start a copy.
    private var syncsSinceStarter = 0
    private var clientEndedCopySinceStarter = false
    private var serverInCopyIn = false
    /// Requests sent (a client's Query, Sync or FunctionCall): answers are matched to them.
    public private(set) var sentRequests = 0
    /// Requests the server ignored (Syncs during an extended COPY FROM STDIN).
    public private(set) var ignoredRequests = 0
    /// Requests answered or ignored: the batches behind them are over.
    public var settledRequests: Int { answeredRequests &+ ignoredRequests }
    /// Requests answered (ReadyForQuery for a client's Query, Sync or FunctionCall), for statistics.
    public private(set) var answeredRequests = 0
    /// Transactions ended (back to idle from a transaction block), for statistics.
    public private(set) var endedTransactions = 0

    public init() {}

    public mutating func clientSent(_ type: UInt8) {
        switch type {
        case FrontendMessage.ID.query.rawValue, FrontendMessage.ID.functionCall.rawValue:
            awaitingReadyForQuery += 1
            sentRequests &+= 1
            extendedSinceLastRequest = false
            startedRequest()
        case FrontendMessage.ID.sync.rawValue:
            // (During a COPY FROM STDIN the server ignores it.)
            if serverInCopyIn { return }
            if !clientEndedCopySinceStarter { syncsSinceStarter += 1 }
            awaitingReadyForQuery += 1
            sentRequests &+= 1
            hasUnsyncedExtendedMessages = false
            extendedSinceLastRequest = false
        case FrontendMessage.ID.parse.rawValue, FrontendMessage.ID.bind.rawValue,
             FrontendMessage.ID.describe.rawValue, FrontendMessage.ID.execute.rawValue,
             FrontendMessage.ID.close.rawValue:
            hasUnsyncedExtendedMessages = true
            extendedSinceLastRequest = true
            if type == FrontendMessage.ID.execute.rawValue { startedRequest() }
        case FrontendMessage.ID.copyDone.rawValue, FrontendMessage.ID.copyFail.rawValue:
            clientEndedCopySinceStarter = true
            serverInCopyIn = false
        case FrontendMessage.ID.flush.rawValue:
            // Flush asks for the answers so far; it starts nothing (psycopg sends Sync then Flush).
            break
        default:
            break
        }
    }

    public mutating func serverSentReadyForQuery(_ status: BackendMessage.TransactionStatus) {
        // The server is out of any copy (one it ended with an error too, without the client's
        // CopyDone: its later Syncs count again; round 38).
        serverInCopyIn = false
        // A server never sends more ReadyForQuery than requested, except the
        // first one after authentication; clamp rather than go negative.
        let answered = awaitingReadyForQuery > 0
        if answered { answeredRequests &+= 1 }
        awaitingReadyForQuery = max(0, awaitingReadyForQuery - 1)
        // Every request answered and nothing sent since the last: the server is waiting for the
        // client, even when extended messages went before a Query without a Sync (the Query ran
        // after them, and its ReadyForQuery says the server is between requests). Else a Close
        // without a Sync, then simple queries, kept the session "in a batch" for good, and the
        // proxy never read its context again (round 18). (After an error the server skips to the
        // next Sync, a Query too: then its ReadyForQuery never comes and this is not reached.)
        if awaitingReadyForQuery == 0, !extendedSinceLastRequest { hasUnsyncedExtendedMessages = false }
        // A request answered outside a transaction block was one (autocommit), as is a block's end.
        if status == .idle && (transactionStatus != .idle || answered) { endedTransactions &+= 1 }
        transactionStatus = status
    }

    /// A Query or an Execute: what may start a COPY FROM STDIN.
    private mutating func startedRequest() {
        syncsSinceStarter = 0
        clientEndedCopySinceStarter = false
    }

    /// The server started a COPY FROM STDIN: the Syncs the client sent since the request that
    /// started it and before the copy's end are ignored (no ReadyForQuery answers them: they
    /// count as answered), and so are those it sends until its CopyDone or CopyFail (round 36).
    /// (Which Sync fell in which copy cannot always be told: one query may start several copies,
    /// and the client's messages may all come before the server's answers. Nothing that masks
    /// relies on these counts; the proxy's own answers and quiet sessions do.)
    public mutating func serverStartedCopyIn() {
        let ignored = min(syncsSinceStarter, awaitingReadyForQuery)
        awaitingReadyForQuery -= ignored
        ignoredRequests &+= ignored
        syncsSinceStarter -= ignored
        if !clientEndedCopySinceStarter { serverInCopyIn = true }
    }

    /// A ReadyForQuery that answers the proxy's own internal query: only the status changes.
    public mutating func observe(_ status: BackendMessage.TransactionStatus) {
        transactionStatus = status
    }

    /// Nothing in flight: the server is waiting for the client.
    public var isQuiet: Bool { awaitingReadyForQuery == 0 && !hasUnsyncedExtendedMessages }

    /// Quiet and outside any transaction: the session can be closed without losing work.
    public var isIdle: Bool { isQuiet && transactionStatus == .idle }
}
