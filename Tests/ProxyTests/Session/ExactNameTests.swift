@testable import Proxy
import Testing

/// Names compare as the server compares prepared statements, portals and identifiers.
@Suite struct ExactNameTests {
    @Test func canonicallyEquivalentSpellingsAreDifferentNames() {
        #expect(ExactName("\u{212A}") != ExactName("K"))
        #expect(ExactName("se\u{301}") != ExactName("s\u{e9}"))
        #expect(ExactName("s\u{e9}") == ExactName("s\u{e9}"))
    }

    /// Round 17: "s"×63 + "1" and "s"×63 + "2" are one statement on the server (it keeps the first
    /// 63 bytes); taken for two, the second's Parse (refused, 42P05) left the first to run.
    @Test func onlyTheFirst63BytesCount() {
        let stem = String(repeating: "s", count: 63)
        #expect(ExactName(stem + "1") == ExactName(stem + "2"))
        #expect(ExactName(stem + "1") == ExactName(stem))
        #expect(Set([ExactName(stem + "1"), ExactName(stem + "2"), ExactName(stem)]).count == 1)
        #expect(ExactName(String(stem.dropLast()) + "1") != ExactName(String(stem.dropLast()) + "2"))
        // Bytes, not characters: a two-byte character across the limit leaves its first byte.
        let multibyte = String(repeating: "s", count: 62) + "\u{e9}"
        #expect(ExactName(multibyte) == ExactName(String(repeating: "s", count: 62) + "\u{e8}"))
        #expect(ExactName(multibyte) != ExactName(String(repeating: "s", count: 62) + "x"))
    }
}
