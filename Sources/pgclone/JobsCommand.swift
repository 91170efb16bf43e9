import ArgumentParser
import Foundation
import PQ

extension Pgclone {
    /// `pgclone jobs`: the background jobs of a proxy, as a table or live.
    struct Jobs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the background jobs of a pgclone proxy (pgclone.jobs_view).",
            discussion: """
            --target is a conninfo through the proxy (jobs live in its state database and run in \
            the proxies). --watch redraws every --interval seconds with a bar per job and per worker \
            (the table it is copying), rows/s, bytes/s and an estimated time left; it ends when no \
            job is pending or running.
            """
        )
        @Option(help: "libpq conninfo through the pgclone proxy (or PGCLONE_TARGET).") var target: String?
        @Flag(help: "Redraw until no job is pending or running.") var watch = false
        @Option(help: "Seconds between redraws with --watch.") var interval: Double = 1

        func run() async throws {
            guard let conninfo = target ?? ProcessInfo.processInfo.environment["PGCLONE_TARGET"] else {
                throw ValidationError("--target is required (a libpq conninfo through the pgclone proxy)")
            }
            guard interval >= 0.1 else { throw ValidationError("--interval must be at least 0.1 seconds") }
            let connection: PQConnection
            do {
                connection = try await PQConnection.connect(conninfo, label: "jobs")
            } catch let error as PQError {
                throw CommandFailure("could not connect to target: \(error.message)")
            }
            var previous: [Int64: JobSample] = [:]
            var renderer = JobsScreen()
            while true {
                let jobs = try await Self.read(connection)
                let now = ContinuousClock.now
                if watch {
                    let lines = renderer.watchLines(jobs, previous: previous, now: now)
                    print("\u{1B}[H\u{1B}[2J" + lines.joined(separator: "\n"))
                } else {
                    print(JobsScreen.table(jobs).joined(separator: "\n"))
                    return
                }
                previous = Dictionary(uniqueKeysWithValues: jobs.map { ($0.id, JobSample(job: $0, at: now)) })
                if !jobs.contains(where: { $0.status == "pending" || $0.status == "running" }) { return }
                try await Task.sleep(for: .milliseconds(Int(interval * 1000)))
            }
        }

        static func read(_ connection: PQConnection) async throws -> [JobRow] {
            let result: PQResult
            do {
                result = try await connection.exec("""
                    SELECT job_id, status, op_type, schema_name, table_name, current_phase, tables_completed, tables_total,
                           rows_copied, bytes_copied, elapsed_ms, pct_complete, error_message
                    FROM pgclone.jobs_view ORDER BY job_id
                    """)
            } catch let error as PQError {
                if error.sqlState == "42P01" || error.sqlState == "3F000" {
                    throw CommandFailure("\(error.message): --target must be a connection through a pgclone proxy")
                }
                throw CommandFailure(error.message)
            }
            return result.rows.indices.map { row in
                JobRow(id: Int64(result.string(row, 0) ?? "") ?? 0, status: result.string(row, 1) ?? "", operation: result.string(row, 2) ?? "",
                       schema: result.string(row, 3), table: result.string(row, 4), phase: result.string(row, 5),
                       tablesCompleted: Int(result.string(row, 6) ?? "") ?? 0, tablesTotal: Int(result.string(row, 7) ?? "") ?? 0,
                       rows: Int64(result.string(row, 8) ?? "") ?? 0, bytes: Int64(result.string(row, 9) ?? "") ?? 0,
                       elapsedMilliseconds: Int64(result.string(row, 10) ?? ""), percent: Double(result.string(row, 11) ?? "") ?? 0,
                       error: result.string(row, 12))
            }
        }
    }
}

struct JobRow: Sendable {
    var id: Int64
    var status: String
    var operation: String
    var schema: String?
    var table: String?
    var phase: String?
    var tablesCompleted: Int
    var tablesTotal: Int
    var rows: Int64
    var bytes: Int64
    var elapsedMilliseconds: Int64?
    var percent: Double
    var error: String?
}

struct JobSample {
    var job: JobRow
    var at: ContinuousClock.Instant
}

/// What `pgclone jobs` prints.
struct JobsScreen {
    static func table(_ jobs: [JobRow]) -> [String] {
        let header = ["job_id", "status", "op_type", "schema", "table", "phase", "tables", "rows", "elapsed", "pct", "error"]
        let rows = jobs.map { job in
            [String(job.id), job.status, job.operation, job.schema ?? "", job.table ?? "", job.phase ?? "",
             "\(job.tablesCompleted)/\(job.tablesTotal)", String(job.rows), duration(job.elapsedMilliseconds.map { Double($0) / 1000 }),
             // (The first line of an error: its DETAIL and HINT lines would break the table.)
             String(format: "%.1f%%", job.percent), job.error.map { String($0.prefix { $0 != "\n" }) } ?? ""]
        }
        guard !rows.isEmpty else { return ["(no jobs)"] }
        return aligned([header] + rows)
    }

    /// One line per job (workers indented under their parent): bar, rows, speed, time left.
    mutating func watchLines(_ jobs: [JobRow], previous: [Int64: JobSample], now: ContinuousClock.Instant) -> [String] {
        var lines = ["pgclone jobs  (\(jobs.filter { $0.status == "running" }.count) running, \(jobs.filter { $0.status == "pending" }.count) pending)", ""]
        for job in jobs {
            let indent = job.operation == "worker" ? "    " : ""
            // table_name is the table in flight (schema-qualified); the schema when none is.
            var what = job.table ?? job.schema ?? ""
            if job.operation == "schema" {
                what = (job.schema ?? "") + (job.status == "running" ? job.table.map { " (\($0))" } ?? "" : "")
            }
            var speed = ""
            if job.status == "running", let before = previous[job.id] {
                let seconds = Double((now - before.at).components.seconds) + Double((now - before.at).components.attoseconds) / 1e18
                if seconds > 0 {
                    let rowRate = max(0, Double(job.rows - before.job.rows) / seconds)
                    let byteRate = max(0, Double(job.bytes - before.job.bytes) / seconds)
                    speed = "  \(Self.count(rowRate)) rows/s  \(Self.bytes(byteRate))/s"
                }
            }
            var left = ""
            if job.status == "running", job.percent > 0, job.percent < 100, let elapsed = job.elapsedMilliseconds {
                left = "  ETA " + Self.duration(Double(elapsed) / 1000 * (100 - job.percent) / job.percent)
            }
            let bar = job.operation == "worker" ? "" : Self.bar(job.percent) + " "
            let phase = job.phase.flatMap { $0 == job.status ? nil : $0 + " " } ?? ""
            lines.append("\(indent)#\(job.id) \(job.operation) \(what) \(bar)\(job.status) \(phase)"
                         + "tables \(job.tablesCompleted)/\(job.tablesTotal)  \(Self.count(Double(job.rows))) rows\(speed)\(left)"
                         + (job.error.map { "  error: \($0)" } ?? ""))
        }
        return lines
    }

    static func bar(_ percent: Double) -> String {
        let filled = max(0, min(30, Int(percent * 30 / 100)))
        return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: 30 - filled) + "] " + String(format: "%5.1f%%", percent)
    }

    static func count(_ value: Double) -> String {
        switch value {
        case 1e9...: return String(format: "%.1fG", value / 1e9)
        case 1e6...: return String(format: "%.1fM", value / 1e6)
        case 1e4...: return String(format: "%.1fk", value / 1e3)
        default: return String(Int(value))
        }
    }

    static func bytes(_ value: Double) -> String {
        switch value {
        case Double(1 << 30)...: return String(format: "%.1f GB", value / Double(1 << 30))
        case Double(1 << 20)...: return String(format: "%.1f MB", value / Double(1 << 20))
        case Double(1 << 10)...: return String(format: "%.1f kB", value / Double(1 << 10))
        default: return "\(Int(value)) B"
        }
    }

    static func duration(_ seconds: Double?) -> String {
        guard let seconds, seconds.isFinite, seconds >= 0 else { return "" }
        let whole = Int(seconds.rounded())
        return String(format: "%02d:%02d:%02d", whole / 3600, whole / 60 % 60, whole % 60)
    }

    static func aligned(_ rows: [[String]]) -> [String] {
        var widths = [Int](repeating: 0, count: rows.map(\.count).max() ?? 0)
        for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
        return rows.map { row in
            row.enumerated().map { index, cell in cell.padding(toLength: widths[index], withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }
    }
}
