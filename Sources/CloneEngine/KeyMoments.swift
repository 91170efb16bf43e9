import PQ

/// The first checksum pass over a table with an integer key, on one side: the row count, the
/// sum of the rows' hashes h (int4) and the sum of h·k, k being the key less an offset.
///
/// Two sides whose sums agree hold the same rows (as far as a sum of hashes can tell, as for
/// any checksum). When exactly one row differs (changed, or present on one side only) with
/// hashes h₁ on the source and h₂ on the target (0 for a missing row), the differences are
/// Δcount = [h₂ exists] − [h₁ exists], ΔΣh = h₂ − h₁ and ΔΣh·k = (h₂ − h₁)·k, so k = ΔΣh·k / ΔΣh:
/// the row is found from the sums alone, without a second scan.
struct KeyMoments: Equatable {
    var count: Int64
    var hashSum: Int128
    var weightedSum: Int128

    /// The offset subtracted from keys so that |h·k| < 2⁶³ (|h| < 2³¹, 0 ≤ k < 2³²); none
    /// when the keys are already small enough, nil when the range is too wide for the sums.
    static func offset(low: Int64, high: Int64) -> Int64? {
        let limit: Int64 = 1 << 32
        if low > -limit && high < limit { return 0 }
        let (width, overflow) = high.subtractingReportingOverflow(low)
        guard !overflow, width < limit else { return nil }
        return low
    }

    /// One scan: count, Σh, Σh·(k − offset). Sums of int8 are numeric: exact.
    /// `OFFSET 0` keeps the subquery a subquery: flattened, the planner would put the row hash
    /// in both sums and compute it twice per row (1M rows of pgbench_accounts: 195 ms, 136 ms
    /// with the fence).
    static func sql(relation: String, column: String, hash: String, offset: Int64) -> String {
        let key = offset == 0 ? "\(column)::pg_catalog.int8" : "(\(column)::pg_catalog.int8 OPERATOR(pg_catalog.-) \(offset)::pg_catalog.int8)"
        return """
            SELECT pg_catalog.count(*), COALESCE(pg_catalog.sum(s.h), 0), COALESCE(pg_catalog.sum(s.h OPERATOR(pg_catalog.*) s.k), 0)
            FROM (SELECT \(hash)::pg_catalog.int8 AS h, \(key) AS k FROM \(relation) AS t OFFSET 0) AS s
            """
    }

    init(count: Int64, hashSum: Int128, weightedSum: Int128) {
        self.count = count
        self.hashSum = hashSum
        self.weightedSum = weightedSum
    }

    init(_ result: PQResult) throws(CloneError) {
        guard result.rows.count == 1, let count = Int64(result.string(0, 0) ?? ""), let hashSum = Int128(result.string(0, 1) ?? ""),
              let weightedSum = Int128(result.string(0, 2) ?? "") else {
            throw CloneError("XX000", "unexpected result of a checksum query: \(result.rows.count) rows")
        }
        self.init(count: count, hashSum: hashSum, weightedSum: weightedSum)
    }

    /// The key of the one row that would explain every difference, if there is such a key
    /// within `range`; it must still be confirmed (`explains`) by reading that row.
    func singleDifferingKey(comparedWith other: KeyMoments, offset: Int64, range: ClosedRange<Int64>) -> Int64? {
        let hashDelta = other.hashSum - hashSum
        let weightedDelta = other.weightedSum - weightedSum
        guard hashDelta != 0, weightedDelta % hashDelta == 0, abs(other.count - count) <= 1 else { return nil }
        let key = weightedDelta / hashDelta + Int128(offset)
        guard key >= Int128(range.lowerBound), key <= Int128(range.upperBound) else { return nil }
        return Int64(key)
    }

    /// Whether the row `key`, with these hashes on each side (nil: no such row), accounts for
    /// all the differences between `source` and `target`.
    static func explains(sourceHash: Int128?, targetHash: Int128?, key: Int64, offset: Int64, _ source: KeyMoments, _ target: KeyMoments) -> Bool {
        let countDelta = Int64(targetHash == nil ? 0 : 1) - Int64(sourceHash == nil ? 0 : 1)
        let hashDelta = (targetHash ?? 0) - (sourceHash ?? 0)
        let weight = Int128(key) - Int128(offset)
        return countDelta == target.count - source.count
            && hashDelta == target.hashSum - source.hashSum
            && hashDelta * weight == target.weightedSum - source.weightedSum
    }
}
