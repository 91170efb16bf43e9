/// A name as PostgreSQL compares it: code point for code point.
///
/// Swift's String equality and hashing treat canonically equivalent spellings as one string
/// ("é" and "e\u{301}", "K" and the Kelvin sign "\u{212A}"); the server keeps them apart. Names
/// the proxy tracks for masking (prepared statements, portals, CTEs) are compared this way, or
/// one name could pass for another: a stale statement for a fresh one, a real table for a CTE.
struct ExactName: Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    let name: String

    init(_ name: String) { self.name = name }
    init(stringLiteral value: String) { name = value }

    static func == (a: ExactName, b: ExactName) -> Bool {
        a.name.unicodeScalars.elementsEqual(b.name.unicodeScalars)
    }

    func hash(into hasher: inout Hasher) {
        for scalar in name.unicodeScalars { hasher.combine(scalar.value) }
    }

    var description: String { name }
}
