/// Counts a session keeps for statistics and metrics; the handler adds the deltas to the
/// proxy's totals once per read burst, so nothing shared is touched per message.
struct SessionCounters: Equatable, Sendable {
    var maskedStatements = 0
    var rewrites = 0
    /// Refusals by reason (a bounded set: see `reason(for:)`).
    var refusals: [String: Int] = [:]

    mutating func refused(_ sqlState: String) {
        refusals[Self.reason(for: sqlState), default: 0] &+= 1
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
