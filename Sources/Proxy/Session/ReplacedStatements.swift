/// Statement names a client closes and prepares again in one batch (npgsql's and pgx's
/// statement caches: Close, Parse of the same name, Bind, Execute, Sync). The client's own Close
/// frees the name, so the proxy needs no Close of its own there; but an error earlier in the
/// batch makes the server skip both the Close and the Parse, and the name then still holds the
/// old statement (prepared before the session's masking changed, perhaps). So a name prepared
/// that way is trusted within its batch (an error skips the Binds after it too) and, once the
/// batch is synced, only when its answers came without an error (which cannot say whether it
/// came before the Close or after it). Until then a Bind of it in a later batch is refused;
/// never waited for (a server that skips a Sync, as in COPY FROM STDIN, would leave it waiting
/// for good).
struct ReplacedStatements: Sendable, Hashable {
    /// Names the client's Close freed earlier in the batch being sent.
    private var closedInBatch: Set<ExactName> = []
    /// Names prepared in the batch being sent on the strength of that Close.
    private var unsynced: Set<ExactName> = []
    /// An error came since the client's last Sync (it may be the batch's own).
    private var errorSinceSync = false

    private struct Pending: Sendable, Hashable {
        var names: Set<ExactName>
        /// ReadyForQuery messages to come up to and including the batch's own.
        var remaining: Int
        var error: Bool
    }
    private var pending: [Pending] = []

    var isEmpty: Bool { closedInBatch.isEmpty && unsynced.isEmpty && pending.isEmpty }
    /// Whether the client's Sync must be read.
    var watchesSync: Bool { !closedInBatch.isEmpty || !unsynced.isEmpty }

    /// The client closed the statement `name`.
    mutating func clientClosed(statement name: String) {
        if !name.isEmpty { closedInBatch.insert(ExactName(name)) }
    }

    /// Whether the client's own Close freed `name` earlier in this batch.
    func freedInBatch(_ name: String) -> Bool {
        !name.isEmpty && closedInBatch.contains(ExactName(name))
    }

    /// A protocol Parse of `name` goes to the server relying on that Close.
    mutating func prepared(_ name: String) {
        if freedInBatch(name) { unsynced.insert(ExactName(name)) }
    }

    /// Within its own batch a replaced name may be bound; after its Sync, only once confirmed.
    func awaitsConfirmation(_ name: String) -> Bool {
        let exact = ExactName(name)
        return !unsynced.contains(exact) && pending.contains { $0.names.contains(exact) }
    }

    /// The client's Sync ends the batch: `awaiting` is the number of ReadyForQuery messages due,
    /// this Sync's included.
    mutating func clientSynced(awaiting: Int) {
        if !unsynced.isEmpty {
            pending.append(Pending(names: unsynced, remaining: awaiting, error: errorSinceSync))
        }
        closedInBatch.removeAll()
        unsynced.removeAll()
        errorSinceSync = false
    }

    /// A simple Query inside the batch: its answers do not say what ran before it. The names
    /// prepared there are given up (refused until prepared again).
    mutating func clientQueried() -> Set<ExactName> {
        let given = unsynced
        closedInBatch.removeAll()
        unsynced.removeAll()
        return given
    }

    /// An ErrorResponse for the client: of the batch being sent, or of the oldest one in flight.
    mutating func serverError() {
        errorSinceSync = true
        for index in pending.indices where pending[index].remaining == 1 { pending[index].error = true }
    }

    /// A ReadyForQuery for the client. Returns the names that may still hold their old
    /// statement (an error in their batch).
    mutating func serverReady() -> Set<ExactName> {
        var given: Set<ExactName> = []
        for index in pending.indices { pending[index].remaining -= 1 }
        for answered in pending where answered.remaining <= 0 && answered.error { given.formUnion(answered.names) }
        pending.removeAll { $0.remaining <= 0 }
        return given
    }
}
