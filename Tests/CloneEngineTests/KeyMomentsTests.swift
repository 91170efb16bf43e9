@testable import CloneEngine
import Testing

struct KeyMomentsTests {
    /// The sums of a list of (key, hash) rows, as the server computes them.
    func moments(_ rows: [(key: Int64, hash: Int128)], offset: Int64) -> KeyMoments {
        KeyMoments(count: Int64(rows.count), hashSum: rows.reduce(0) { $0 + $1.hash },
                   weightedSum: rows.reduce(0) { $0 + $1.hash * (Int128($1.key) - Int128(offset)) })
    }

    let rows: [(key: Int64, hash: Int128)] = (1...1000).map { (Int64($0), Int128(($0 &* 2_654_435_761) % 4_294_967_291) - (1 << 31)) }

    @Test func offsetsKeepEveryProductWithinInt8() {
        #expect(KeyMoments.offset(low: 1, high: 1_000_000) == 0)
        #expect(KeyMoments.offset(low: -5, high: (1 << 32) - 1) == 0)
        #expect(KeyMoments.offset(low: 5_000_000_000_000, high: 5_000_000_000_000 + (1 << 32) - 1) == 5_000_000_000_000)
        #expect(KeyMoments.offset(low: 0, high: 1 << 33) == nil)
        #expect(KeyMoments.offset(low: Int64.min, high: Int64.max) == nil)
    }

    @Test func oneChangedRowIsNamedAndConfirmed() {
        var changed = rows
        changed[653].hash += 12345
        let (a, b) = (moments(rows, offset: 0), moments(changed, offset: 0))
        let key = a.singleDifferingKey(comparedWith: b, offset: 0, range: 1...1000)
        #expect(key == 654)
        #expect(KeyMoments.explains(sourceHash: rows[653].hash, targetHash: changed[653].hash, key: 654, offset: 0, a, b))
        // The same sums do not confirm a row whose hashes are equal on both sides.
        #expect(!KeyMoments.explains(sourceHash: rows[653].hash, targetHash: rows[653].hash, key: 654, offset: 0, a, b))
    }

    @Test func aRowMissingOnEitherSideIsNamed() {
        let offset: Int64 = 7_000_000_000_000
        let shifted = rows.map { (key: $0.key + offset, hash: $0.hash) }
        let missing = shifted.filter { $0.key != offset + 17 }
        let (a, b) = (moments(shifted, offset: offset), moments(missing, offset: offset))
        let range = (offset + 1)...(offset + 1000)
        #expect(a.singleDifferingKey(comparedWith: b, offset: offset, range: range) == offset + 17)
        #expect(KeyMoments.explains(sourceHash: shifted[16].hash, targetHash: nil, key: offset + 17, offset: offset, a, b))
        // Only on the target: the other way round.
        #expect(b.singleDifferingKey(comparedWith: a, offset: offset, range: range) == offset + 17)
        #expect(KeyMoments.explains(sourceHash: nil, targetHash: shifted[16].hash, key: offset + 17, offset: offset, b, a))
    }

    @Test func twoDifferingRowsAreNotMistakenForOne() {
        var changed = rows
        changed[9].hash += 1000
        changed[29].hash += 1000
        let (a, b) = (moments(rows, offset: 0), moments(changed, offset: 0))
        // The sums point at key 20 (the mean), whose own hashes do not explain them.
        let key = a.singleDifferingKey(comparedWith: b, offset: 0, range: 1...1000)
        #expect(key == 20)
        #expect(!KeyMoments.explains(sourceHash: rows[19].hash, targetHash: changed[19].hash, key: 20, offset: 0, a, b))
        // Differences that cancel in Σh name no key at all.
        var swapped = rows
        swapped[3].hash += 50
        swapped[4].hash -= 50
        #expect(moments(rows, offset: 0).singleDifferingKey(comparedWith: moments(swapped, offset: 0), offset: 0, range: 1...1000) == nil)
    }

    @Test func identicalSidesAreEqual() {
        #expect(moments(rows, offset: 0) == moments(rows.reversed(), offset: 0))
        #expect(moments(rows, offset: 0).singleDifferingKey(comparedWith: moments(rows, offset: 0), offset: 0, range: 1...1000) == nil)
    }
}

struct RowHashTests {
    /// Each column's extended hash (its text's where it has none) seeded by its position, NULL
    /// its own value, XORed, the high half kept; then every column as text; then the row's text.
    @Test func candidatesGoFromColumnHashesToRowText() {
        let candidates = Verifier.rowHashes(["\"id\"", "\"Mood\""], functions: ["pg_catalog.hashint4extended", nil])
        #expect(candidates == [
            "((COALESCE(pg_catalog.hashint4extended(\"id\", 1), -7046029254386353131) OPERATOR(pg_catalog.#) COALESCE(pg_catalog.hashtextextended(\"Mood\"::pg_catalog.text COLLATE pg_catalog.\"C\", 2), -7046029254386312628)) OPERATOR(pg_catalog.>>) 32)",
            "((COALESCE(pg_catalog.hashtextextended(\"id\"::pg_catalog.text COLLATE pg_catalog.\"C\", 1), -7046029254386353131) OPERATOR(pg_catalog.#) COALESCE(pg_catalog.hashtextextended(\"Mood\"::pg_catalog.text COLLATE pg_catalog.\"C\", 2), -7046029254386312628)) OPERATOR(pg_catalog.>>) 32)",
            "pg_catalog.hashtext(ROW(\"id\", \"Mood\")::pg_catalog.text)::pg_catalog.int8",
        ])
        // No column with a function of its own: the text candidates only.
        #expect(Verifier.rowHashes(["\"p\""], functions: [nil]).count == 2)
        // bpchar hashes its output text in every column candidate (its cast to text drops trailing blanks).
        let padded = Verifier.rowHashes(["\"b\""], functions: [Verifier.blankPaddedText])
        #expect(padded.count == 2)
        #expect(padded[0] == "((COALESCE(pg_catalog.hashtextextended(pg_catalog.textin(pg_catalog.bpcharout(\"b\")) COLLATE pg_catalog.\"C\", 1), -7046029254386353131)) OPERATOR(pg_catalog.>>) 32)")
    }
}
