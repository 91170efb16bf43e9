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

    /// HMAC-SHA256 of `text` (an SQL text expression) as a bytea expression.
    static func hmac(_ text: String) -> String {
        let (inner, outer) = lock.withLock { pads ?? ("", "") }
        let innerHash = "pg_catalog.sha256(\(MaskStrategy.op("pg_catalog.decode('\(inner)', 'hex')", "||", "pg_catalog.convert_to(\(text), 'UTF8')")))"
        return "pg_catalog.sha256(\(MaskStrategy.op("pg_catalog.decode('\(outer)', 'hex')", "||", innerHash)))"
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
