import CoreMetrics
import Foundation
import NIOConcurrencyHelpers
import PQ

extension ProxyContext {
    static let clientStates = ["login", "active", "idle", "idle_in_transaction", "console"]
    static let serverStates = ["connecting", "login", "active", "idle"]

    /// Sets the gauges that are read rather than counted, just before a scrape: sessions and
    /// server connections by state, jobs by status, the process's memory and descriptors, and
    /// what clones have copied.
    func updateScrapeGauges() async {
        var clients = Dictionary(uniqueKeysWithValues: Self.clientStates.map { ($0, 0) })
        var servers = Dictionary(uniqueKeysWithValues: Self.serverStates.map { ($0, 0) })
        for info in sessions.infos() {
            let state = info.state
            let client = state.console ? "console" : state.state.replacingOccurrences(of: " ", with: "_")
            clients[clients[client] == nil ? "active" : client, default: 0] += 1
            if state.serverConnected {
                servers[state.state == "login" ? "login" : state.state == "active" ? "active" : "idle", default: 0] += 1
            } else if state.state == "login" {
                servers["connecting", default: 0] += 1
            }
        }
        for (state, count) in clients { Gauge(label: "pgclone_client_connections", dimensions: [("state", state)]).record(count) }
        for (state, count) in servers { Gauge(label: "pgclone_server_connections", dimensions: [("state", state)]).record(count) }
        let process = ProxyMetrics.processGauges()
        Gauge(label: "pgclone_process_resident_memory_bytes").record(process.residentBytes)
        Gauge(label: "pgclone_process_open_fds").record(process.openDescriptors)
        let copied = PQConnection.copiedTotals
        metrics.cloneTotals(rows: copied.rows, bytes: copied.bytes)
        if let counts = await jobCounts() {
            for status in JobStore.Status.allCases {
                Gauge(label: "pgclone_jobs", dimensions: [("status", status.rawValue)]).record(counts[status] ?? 0)
            }
        }
    }

    /// Jobs by status, read from the state database at most every few seconds and by one
    /// scrape at a time (the others take the last counts): scrapes must not pile up connections.
    private func jobCounts() async -> [JobStore.Status: Int]? {
        guard let jobs else { return nil }
        let now = ContinuousClock.now
        let (cached, read) = scrapeJobCounts.withLockedValue { state -> ([JobStore.Status: Int]?, Bool) in
            if let at = state.at, now - at < .seconds(5) { return (state.counts, false) }
            guard !state.reading else { return (state.counts, false) }
            state.reading = true
            return (state.counts, true)
        }
        guard read else { return cached }
        let counts = try? await jobs.store.countsByStatus()
        scrapeJobCounts.withLockedValue { state in
            state.reading = false
            state.at = ContinuousClock.now
            if let counts { state.counts = counts }
        }
        return counts ?? cached
    }
}
