import CoreMetrics
import Foundation
import NIOConcurrencyHelpers

/// The proxy's metrics, through swift-metrics (whatever backend the process bootstrapped:
/// Prometheus in `pgclone serve --metrics`, nothing otherwise). No dimension carries a value
/// from a client: not a user, not a database name, never SQL text; the only dimensions are
/// fixed sets (direction, state, result, reason, status).
final class ProxyMetrics: Sendable {
    let bytesFromClients = Counter(label: "pgclone_bytes_total", dimensions: [("direction", "client_to_server")])
    let bytesFromServers = Counter(label: "pgclone_bytes_total", dimensions: [("direction", "server_to_client")])
    let statements = Counter(label: "pgclone_statements_total")
    let transactions = Counter(label: "pgclone_transactions_total")
    let statementDuration = Timer(label: "pgclone_statement_duration_seconds", preferredDisplayUnit: .seconds)
    let maskedStatements = Counter(label: "pgclone_masked_statements_total")
    let rewrites = Counter(label: "pgclone_rewrites_total")
    let cacheHits = Counter(label: "pgclone_rewrite_cache_total", dimensions: [("result", "hit")])
    let cacheMisses = Counter(label: "pgclone_rewrite_cache_total", dimensions: [("result", "miss")])
    /// Indexed as `SessionCounters.reasons`.
    let refusals: [Counter] = SessionCounters.reasons.map { Counter(label: "pgclone_refusals_total", dimensions: [("reason", $0)]) }
    let reloadsOK = Counter(label: "pgclone_policy_reloads_total", dimensions: [("result", "ok")])
    let reloadsFailed = Counter(label: "pgclone_policy_reloads_total", dimensions: [("result", "failed")])
    let adminCalls = Counter(label: "pgclone_admin_calls_total")
    let cloneRows = Counter(label: "pgclone_clone_rows_total")
    let cloneBytes = Counter(label: "pgclone_clone_bytes_total")
    private let cloneReported = NIOLockedValueBox((rows: 0, bytes: 0))

    /// The process's COPY totals so far: the counters move by what is new since the last scrape.
    func cloneTotals(rows: Int, bytes: Int) {
        let (newRows, newBytes) = cloneReported.withLockedValue { reported -> (Int, Int) in
            defer { reported = (rows, bytes) }
            return (rows - reported.rows, bytes - reported.bytes)
        }
        if newRows > 0 { cloneRows.increment(by: newRows) }
        if newBytes > 0 { cloneBytes.increment(by: newBytes) }
    }

    func policyReloads(ok: Bool) {
        (ok ? reloadsOK : reloadsFailed).increment()
    }

    /// A session's counts since the last report.
    func add(_ counters: SessionCounters, since last: SessionCounters, cacheHits hits: Int, cacheMisses misses: Int) {
        if counters.maskedStatements != last.maskedStatements { maskedStatements.increment(by: counters.maskedStatements - last.maskedStatements) }
        if counters.rewrites != last.rewrites { rewrites.increment(by: counters.rewrites - last.rewrites) }
        for index in refusals.indices where counters.refusals[index] != last.refusals[index] {
            refusals[index].increment(by: counters.refusals[index] - last.refusals[index])
        }
        if hits > 0 { cacheHits.increment(by: hits) }
        if misses > 0 { cacheMisses.increment(by: misses) }
    }

    // MARK: - Read at scrape time

    /// Sessions by state, server connections by state, process RSS and descriptors.
    static func processGauges() -> (residentBytes: Double, openDescriptors: Double) {
        var resident = 0.0
        if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
           let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
           let kilobytes = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap({ Double($0) }) {
            resident = kilobytes * 1024
        }
        let descriptors = Double((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0)
        return (resident, descriptors)
    }
}
