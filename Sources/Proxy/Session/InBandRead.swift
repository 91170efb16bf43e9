import PostgresWire

/// How the proxy runs its own query on a client's session without disturbing it.
///
/// The masking context is read on the session itself (it depends on the session's role,
/// search_path and temporary tables). The read must not fail the client's transaction, nor be
/// stopped by the client's own statement_timeout or lock_timeout (a read that fails leaves
/// the session refusing statements): outside a transaction it runs in a read-only transaction
/// of its own, inside one under a savepoint that is rolled back afterwards, so that its SET
/// LOCALs vanish with it. It never runs in a failed transaction.
enum InBandRead {
    static let savepoint = "pgclone_in_band_read"

    /// `query` wrapped for a session whose last ReadyForQuery said `status`.
    static func wrap(_ query: String, status: BackendMessage.TransactionStatus) -> String {
        let settings = "SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0; SET LOCAL idle_in_transaction_session_timeout = 0"
        switch status {
        case .idle:
            return "BEGIN READ ONLY; \(settings); \(query); COMMIT"
        case .inTransaction, .failed:
            return "SAVEPOINT \(savepoint); \(settings); \(query); ROLLBACK TO SAVEPOINT \(savepoint); RELEASE SAVEPOINT \(savepoint)"
        }
    }

    /// What puts the session back as it was after the wrapped query failed part way.
    static func restore(status: BackendMessage.TransactionStatus) -> String {
        switch status {
        case .idle:
            return "ROLLBACK"
        case .inTransaction, .failed:
            return "ROLLBACK TO SAVEPOINT \(savepoint); RELEASE SAVEPOINT \(savepoint)"
        }
    }
}
