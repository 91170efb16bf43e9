/// Counts a session keeps for statistics and metrics; the handler adds the deltas to the
/// proxy's totals once per read burst, so nothing shared is touched per message.
struct SessionCounters: Equatable, Sendable {
    var maskedStatements = 0
    var rewrites = 0
    /// Refusals by reason, indexed as `reasons` (a fixed set: see `reason(for:)`): comparing
    /// two counters stays cheap on the relay path, which does it once per read burst.
    var refusals = [Int](repeating: 0, count: SessionCounters.reasons.count)

    var totalRefusals: Int { refusals.reduce(0, +) }

    mutating func refused(_ sqlState: String) {
        refusals[Self.reasons.firstIndex(of: Self.reason(for: sqlState)) ?? Self.reasons.count - 1] &+= 1
    }

    /// A refusal's reason from its SQLSTATE: never a value a client chose.
    static func reason(for sqlState: String) -> String {
        switch sqlState {
        case "42501": return "permission"
        case "0A000": return "unsupported"
        case "42601", "22021", "22P05": return "unreadable"
        case "57014": return "canceled"
        default: return "other"
        }
    }

    static let reasons = ["permission", "unsupported", "unreadable", "canceled", "other"]
}
