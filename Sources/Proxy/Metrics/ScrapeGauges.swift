import CoreMetrics
import Foundation
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
        if let jobs, let counts = try? await jobs.store.countsByStatus() {
            for status in JobStore.Status.allCases {
                Gauge(label: "pgclone_jobs", dimensions: [("status", status.rawValue)]).record(counts[status] ?? 0)
            }
        }
    }
}
