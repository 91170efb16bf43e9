/// A name as PostgreSQL compares it: byte for byte, on its first 63 bytes.
///
/// Swift's String equality and hashing treat canonically equivalent spellings as one string
/// ("é" and "e\u{301}", "K" and the Kelvin sign "\u{212A}"); the server keeps them apart. And the
/// server keeps prepared statements and portals (and identifiers) under their first
/// NAMEDATALEN - 1 = 63 bytes: two longer names that share those are one name there. Names the
/// proxy tracks for masking (prepared statements, portals, CTEs) are compared this way, or one
/// name could pass for another: a stale statement for a fresh one, a real table for a CTE.
struct ExactName: Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    /// The server's name length limit, in bytes.
    static let significantBytes = 63

    let name: String

    init(_ name: String) { self.name = name }

    init(stringLiteral value: String) { self.init(value) }

    static func == (a: ExactName, b: ExactName) -> Bool {
        a.name.utf8.prefix(significantBytes).elementsEqual(b.name.utf8.prefix(significantBytes))
    }

    func hash(into hasher: inout Hasher) {
        for byte in name.utf8.prefix(Self.significantBytes) { hasher.combine(byte) }
    }

    var description: String { name }
}
