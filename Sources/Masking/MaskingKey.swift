import Foundation

/// The secret behind the keyed strategies (pseudonym, fake_name, fake_email, noise).
///
/// It comes from the proxy's configuration (`--mask-secret`, PGCLONE_MASK_SECRET) and is
/// never stored in a database. HMAC-SHA256 runs on the server with core functions only:
/// the key is pre-mixed into the standard inner and outer pads here, so statements carry
/// the pads (as bytea literals), not the secret itself.
public enum MaskingKey {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var pads: (inner: String, outer: String)?

    /// Installs the secret (at most 64 bytes) for this process.
    public static func install(_ secret: String) throws(MaskError) {
        let bytes = Array(secret.utf8)
        guard !bytes.isEmpty, bytes.count <= 64 else {
            throw MaskError("the masking secret must be 1 to 64 bytes long")
        }
        let padded = bytes + Array(repeating: 0, count: 64 - bytes.count)
        let inner = padded.map { String(format: "%02x", $0 ^ 0x36) }.joined()
        let outer = padded.map { String(format: "%02x", $0 ^ 0x5c) }.joined()
        lock.withLock { pads = (inner, outer) }
    }

    public static var isInstalled: Bool { lock.withLock { pads != nil } }

    /// The installed pads as hex digits (for the server-side key table of masked views).
    public static var hexPads: (inner: String, outer: String)? { lock.withLock { pads } }

    /// Where a keyed mask expression finds the pads.
    public enum Source: Sendable, Hashable {
        /// As literals in the statement: only for statements no masked role can see (clones, mask_in_place).
        case literals
        /// Read from a table `(inner_pad bytea, outer_pad bytea)` that only the owner of a masked view
        /// can read: a view's definition is public (pg_views), and a masked role's own statement text
        /// is visible to it (pg_stat_activity), so neither may carry the pads.
        case table(String)
    }

    /// HMAC-SHA256 of `text` (an SQL text expression) as a bytea expression.
    static func hmac(_ text: String, from source: Source) -> String {
        let inner: String, outer: String
        switch source {
        case .literals:
            let literal = lock.withLock { Self.pads ?? (inner: "", outer: "") }
            inner = "pg_catalog.decode('\(literal.inner)', 'hex')"
            outer = "pg_catalog.decode('\(literal.outer)', 'hex')"
        case .table(let table):
            inner = "(SELECT k.inner_pad FROM \(table) k)"
            outer = "(SELECT k.outer_pad FROM \(table) k)"
        }
        let innerHash = "pg_catalog.sha256(\(MaskStrategy.op(inner, "||", "pg_catalog.convert_to(\(text), 'UTF8')")))"
        return "pg_catalog.sha256(\(MaskStrategy.op(outer, "||", innerHash)))"
    }

    static let firstNames = ["Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie", "Avery", "Quinn",
                             "Robin", "Drew", "Reese", "Skyler", "Rowan", "Emerson", "Finley", "Hayden", "Kendall", "Logan",
                             "Parker", "Sage", "Blake", "Cameron", "Dakota", "Elliot", "Harper", "Jesse", "Kai", "Lee"]
    static let lastNames = ["Smith", "Jones", "Brown", "Garcia", "Miller", "Davis", "Wilson", "Moore", "Clark", "Lewis",
                            "Walker", "Hall", "Young", "King", "Wright", "Scott", "Green", "Baker", "Adams", "Nelson",
                            "Carter", "Mitchell", "Turner", "Phillips", "Campbell", "Parker", "Evans", "Edwards", "Collins", "Stewart"]

    static func pick(_ names: [String], byte: Int, of hmac: String) -> String {
        let index = MaskStrategy.op("1", "+", MaskStrategy.op("pg_catalog.get_byte(\(hmac), \(byte))", "%", String(names.count)))
        return "(ARRAY[\(names.map { "'\($0)'" }.joined(separator: ","))]::pg_catalog.text[])[\(index)]"
    }
}
