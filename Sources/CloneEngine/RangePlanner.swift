import PQ

/// Cuts one large table into ranges that separate connections copy at the same time.
///
/// By a NOT NULL integer column with a unique index (the primary key, usually): equal spans
/// of its values between the smallest and largest. Otherwise by physical position (ctid
/// ranges of heap pages, which PostgreSQL 14 and later scan as TID range scans). The first
/// and last ranges are open, so rows outside the measured bounds (there are none in the
/// snapshot, but the heap may have grown) are still copied exactly once.
///
/// Whether to split at all is decided on the table's whole size, TOAST included: a table of
/// few heap pages whose data lives in TOAST is as long to copy as its bytes say (sizing by
/// heap pages alone would leave it whole).
public enum RangePlanner {
    public enum Key: Sendable, Equatable {
        case integer(column: String, min: Int64, max: Int64)
        case pages(Int64)
    }

    /// How many parts for `bytes` of table with `workers` connections: none (0) below the
    /// threshold; otherwise two per worker, but no part under `minimumPart` bytes.
    public static func partCount(bytes: Int64, threshold: Int64, workers: Int, minimumPart: Int64 = 8 << 20) -> Int {
        guard workers > 1, bytes > threshold, bytes > 0 else { return 0 }
        let bySize = max(2, Int(min(bytes / max(minimumPart, 1), 1024)))
        return min(workers * 2, bySize)
    }

    /// WHERE predicates, in order, that together cover every row once.
    public static func predicates(_ key: Key, parts: Int) -> [String] {
        guard parts > 1 else { return [] }
        switch key {
        case .integer(let column, let low, let high):
            guard high > low else { return [] }
            // `values`: how many integers lie in [low, high].
            let (span, overflow) = high.subtractingReportingOverflow(low)
            guard !overflow, span < Int64.max else { return [] }
            let values = span + 1
            let count = min(Int64(parts), values)
            guard count > 1 else { return [] }
            let step = values / count + (values % count == 0 ? 0 : 1)
            let bounds = (1..<count).map { low + $0 * step }.filter { $0 <= high }
            return cut(bounds.map(String.init), column: SQL.identifier(column))
        case .pages(let pages):
            guard pages > 1 else { return [] }
            let count = Int64(min(Int64(parts), pages))
            let step = pages / count + (pages % count == 0 ? 0 : 1)
            let bounds = (1..<count).map { $0 * step }.filter { $0 < pages }
            return cut(bounds.map { "'(\($0),0)'::pg_catalog.tid" }, column: "ctid")
        }
    }

    private static func cut(_ bounds: [String], column: String) -> [String] {
        guard !bounds.isEmpty else { return [] }
        var predicates = ["\(column) < \(bounds[0])"]
        for index in 1..<bounds.count {
            predicates.append("\(column) >= \(bounds[index - 1]) AND \(column) < \(bounds[index])")
        }
        predicates.append("\(column) >= \(bounds[bounds.count - 1])")
        return predicates
    }
}
