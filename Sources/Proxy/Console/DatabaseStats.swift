import NIOConcurrencyHelpers

/// Totals per database since the proxy started (SHOW STATS). Sessions add to them once per
/// read burst that completed something, never per message.
final class DatabaseStats: Sendable {
    struct Totals: Sendable, Equatable {
        var requests = 0
        var transactions = 0
        var bytesReceived = 0
        var bytesSent = 0
        /// Time with a request in flight, microseconds.
        var requestMicroseconds = 0
        var rewrites = 0
        var refusals = 0
        var maskedStatements = 0

        mutating func add(_ other: Totals) {
            requests += other.requests
            transactions += other.transactions
            bytesReceived += other.bytesReceived
            bytesSent += other.bytesSent
            requestMicroseconds += other.requestMicroseconds
            rewrites += other.rewrites
            refusals += other.refusals
            maskedStatements += other.maskedStatements
        }

        var isEmpty: Bool { self == Totals() }
    }

    private let byDatabase = NIOLockedValueBox<[String: Totals]>([:])

    func add(_ totals: Totals, database: String) {
        guard !totals.isEmpty else { return }
        byDatabase.withLockedValue { $0[database, default: Totals()].add(totals) }
    }

    var snapshot: [(database: String, totals: Totals)] {
        byDatabase.withLockedValue { $0 }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }
}
