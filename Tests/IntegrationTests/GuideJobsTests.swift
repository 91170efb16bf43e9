import Foundation
#if canImport(Glibc)
import Glibc
#endif
import JSON
import PQ
import Proxy
import Testing

/// Guide tests 15, 16 and 17 (background jobs, parallel cloning, the progress view), cancel
/// in the middle of a COPY, and a proxy killed in the middle of a job. Jobs live in the shared
/// state database, so these tests run one after the other and look at their own job ids.
@Suite("Guide tests 15-17: jobs", .serialized)
struct GuideJobsTests {
    /// Waits until job `id` is no longer pending or running; returns its status.
    static func waitForEnd(_ target: GuideTarget, _ id: String, seconds: Double = 60) async throws -> String {
        var status = ""
        try await waitFor("job \(id) to end", seconds: seconds) {
            status = try await target.rows("SELECT status FROM pgclone.jobs_view WHERE job_id = \(id);").first ?? ""
            return status != "pending" && status != "running" && !status.isEmpty
        }
        return status
    }

    /// A source database with one table big enough for a job to be caught in the middle of it.
    static func withBigSource(_ body: (String) async throws -> Void) async throws {
        let environment = try TestEnvironment.require()
        let name = "jobs_src_\(guideRandomSuffix())"
        let admin = try await PQConnection.connect("host=127.0.0.1 port=\(environment.sourcePort) dbname=postgres user=postgres password=\(environment.password)")
        try await admin.exec("CREATE DATABASE \(name)")
        let source = try await PQConnection.connect("host=127.0.0.1 port=\(environment.sourcePort) dbname=\(name) user=postgres password=\(environment.password)")
        try await source.exec("""
            CREATE SCHEMA big;
            CREATE TABLE big.a_small (id int PRIMARY KEY, v text);
            INSERT INTO big.a_small SELECT g, 'v' || g FROM generate_series(1, 100) g;
            CREATE TABLE big.b_large (id bigint PRIMARY KEY, payload text);
            INSERT INTO big.b_large SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 1500000) g;
            """)
        do {
            try await body("host=127.0.0.1 port=\(environment.sourcePort) dbname=\(name) user=postgres password=\(environment.password)")
        } catch {
            _ = try? await admin.exec("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
            throw error
        }
        _ = try? await admin.exec("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }

    @Test("15.1-15.7 async table and schema clones, progress, jobs(), cancel, clear_jobs")
    func guideTest15() async throws {
        try await withGuideTarget(runsJobs: true) { (target: GuideTarget) async throws in
            // 15.1
            try await target.rows("DROP TABLE IF EXISTS test_schema.customers CASCADE;")
            let first = try await target.call("""
                SELECT pgclone.table_async(
                \(target.source),
                'test_schema', 'customers', true
                );
                """)
            #expect(Int(first) != nil, "a job id: \(first)")
            #expect(try await Self.waitForEnd(target, first) == "completed")
            // 15.2
            let progress = try JSONReader.parse(try await target.call("SELECT pgclone.progress(\(first));"))
            #expect(progress["status"]?.string == "completed")
            #expect(progress["rows_copied"]?.int == 10)
            #expect(progress["progress_bar"]?.string == "[████████████████████] 100.0%")
            #expect(progress["elapsed_time"]?.string?.hasPrefix("00:00:") == true, "\(progress.text)")
            #expect(try await target.rows("SELECT status, rows_copied, progress_bar FROM pgclone.jobs_view WHERE job_id = \(first);")
                    == ["completed|10|[████████████████████] 100.0%"])
            #expect(try await target.rows("SELECT count(*) FROM test_schema.customers;") == ["10"])
            // 15.3
            try await target.rows("DROP SCHEMA IF EXISTS test_schema CASCADE;")
            let schemaJob = try await target.call("""
                SELECT pgclone.schema_async(
                \(target.source),
                'test_schema', true
                );
                """)
            #expect(try await target.rows("SELECT job_id, schema_name FROM pgclone.jobs_view WHERE job_id = \(schemaJob);") == ["\(schemaJob)|test_schema"])
            #expect(try await Self.waitForEnd(target, schemaJob) == "completed")
            #expect(try await target.rows("SELECT tables_total, tables_completed, rows_copied FROM pgclone.jobs_view WHERE job_id = \(schemaJob);") == ["5|5|43"])
            // 15.4
            let all = try JSONReader.parse(try await target.call("SELECT pgclone.jobs();"))
            let ids = all.array.compactMap { $0["job_id"]?.int }
            #expect(ids.contains(Int(first)!) && ids.contains(Int(schemaJob)!))
            // 15.5
            let replace = try await target.call("""
                SELECT pgclone.table_async(
                \(target.source),
                'test_schema', 'customers', true,
                'customers',
                '{"conflict": "replace"}'
                );
                """)
            #expect(try await Self.waitForEnd(target, replace) == "completed")
            #expect(try JSONReader.parse(try await target.call("SELECT pgclone.progress(\(replace));"))["notes"]?.string?.hasPrefix("OK: cloned test_schema.customers") == true)
            // 15.7 (15.6, cancel, is below, on a job big enough to be caught running)
            let cleared = try await target.call("SELECT pgclone.clear_jobs();")
            #expect((Int(cleared) ?? 0) >= 3, "\(cleared)")
            #expect(try await target.rows("SELECT count(*) FROM pgclone.jobs_view WHERE job_id IN (\(first), \(schemaJob), \(replace));") == ["0"])
            // (Interrupted jobs stay: they can be resumed.)
            #expect(try await target.rows("SELECT count(*) FROM pgclone.jobs_view WHERE status NOT IN ('pending', 'running', 'interrupted');") == ["0"])
        }
    }

    @Test("15.6 cancel in the middle of a COPY: cancelled within a second, done tables kept, the table in flight rolled back")
    func cancelMidCopy() async throws {
        try await Self.withBigSource { source in
            try await withGuideTarget(runsJobs: true) { (target: GuideTarget) async throws in
                let id = try await target.call("SELECT pgclone.schema_async(\(guideSQLLiteral(source)), 'big', true, '{\"conflict\": \"replace\"}');")
                try await waitFor("the large table's copy", seconds: 30) {
                    try await target.rows("SELECT table_name FROM pgclone.jobs_view WHERE job_id = \(id) AND status = 'running';") == ["big.b_large"]
                }
                let started = ContinuousClock.now
                #expect(try await target.call("SELECT pgclone.cancel(\(id));") == "OK: job \(id) cancelled")
                #expect(ContinuousClock.now - started < .seconds(1))
                #expect(try await target.rows("SELECT status FROM pgclone.jobs_view WHERE job_id = \(id);") == ["cancelled"])
                #expect(try await target.rows("SELECT count(*) FROM big.a_small;") == ["100"])
                #expect(try await target.rows("SELECT to_regclass('big.b_large') IS NULL;") == ["t"])
                _ = try await target.call("SELECT pgclone.clear_jobs();")
            }
        }
    }

    /// A run whose claim another proxy took (it took this one for dead and resumed the job)
    /// writes nothing more to the job's row: not its progress, not its end (round 44f H4: the
    /// stale run wrote "failed" over the new run's row).
    @Test func aRunThatLostItsClaimLeavesTheJobsRowAlone() async throws {
        try await Self.withBigSource { source in
            try await withGuideTarget(runsJobs: true) { (target: GuideTarget) async throws in
                let id = try await target.call("SELECT pgclone.table_async(\(guideSQLLiteral(source)), 'big', 'b_large');")
                try await waitFor("the copy", seconds: 30) {
                    try await target.rows("SELECT status FROM pgclone.jobs_view WHERE job_id = \(id);") == ["running"]
                }
                let state = target.environment.directTarget(database: TargetRoles.cliStateDatabase)
                try await target.rows("UPDATE pgclone.jobs SET claimed_by = 'another proxy', current_phase = 'theirs' WHERE job_id = \(id);", on: state)
                // The run goes on to its end (the table is made) and records nothing of it.
                try await waitFor("the run to end", seconds: 90) {
                    try await target.rows("SELECT obj_description(to_regclass('big.b_large'), 'pg_class') IS NULL AND to_regclass('big.b_large') IS NOT NULL;") == ["t"]
                }
                try await Task.sleep(for: .seconds(2))
                #expect(try await target.rows("SELECT status, claimed_by, current_phase FROM pgclone.jobs WHERE job_id = \(id);", on: state)
                        == ["running|another proxy|theirs"])
                try await target.rows("UPDATE pgclone.jobs SET status = 'cancelled', claimed_by = NULL WHERE job_id = \(id);", on: state)
            }
        }
    }

    /// A resumed job's counters go on from what its first run committed (round 44f L1: after
    /// resume, rows_copied counted the resumed run only).
    @Test func aResumedJobCountsEveryRowItCopied() async throws {
        try await Self.withBigSource { source in
            try await withGuideTarget(runsJobs: true) { (target: GuideTarget) async throws in
                let id = try await target.call("SELECT pgclone.schema_async(\(guideSQLLiteral(source)), 'big');")
                try await waitFor("the large table's copy", seconds: 30) {
                    try await target.rows("SELECT table_name FROM pgclone.jobs_view WHERE job_id = \(id) AND status = 'running';") == ["big.b_large"]
                }
                #expect(try await target.call("SELECT pgclone.cancel(\(id));") == "OK: job \(id) cancelled")
                #expect(try await target.rows("SELECT rows_copied FROM pgclone.jobs_view WHERE job_id = \(id);") == ["100"])
                // As a run killed mid-table leaves it: rows_copied also counts parts of the table
                // in flight, which the resumed run copies again (round 44f: counted twice).
                let environment = try TestEnvironment.require()
                let state = try await PQConnection.connect(environment.directTarget(database: TargetRoles.cliStateDatabase))
                try await state.exec("UPDATE pgclone.jobs SET rows_copied = rows_copied + 777, bytes_copied = bytes_copied + 7777 WHERE job_id = \(id)")
                _ = try await target.call("SELECT pgclone.resume(\(id), \(guideSQLLiteral(source)));")
                #expect(try await Self.waitForEnd(target, id, seconds: 120) == "completed")
                #expect(try await target.rows("SELECT rows_copied, tables_completed FROM pgclone.jobs_view WHERE job_id = \(id);") == ["1500100|2"])
            }
        }
    }

    @Test("16.1-16.2 parallel schema clones: a parent job and its workers; verify; without triggers")
    func guideTest16() async throws {
        try await withGuideTarget(runsJobs: true) { (target: GuideTarget) async throws in
            try await target.rows("DROP SCHEMA IF EXISTS test_schema CASCADE;")
            let parent = try await target.call("""
                SELECT pgclone.schema_async(
                \(target.source),
                'test_schema', true,
                '{"parallel": 4}'
                );
                """)
            #expect(try await Self.waitForEnd(target, parent) == "completed")
            let family = try await target.rows("""
                SELECT job_id, status, op_type, table_name, progress_bar
                FROM pgclone.jobs_view WHERE job_id = \(parent) OR job_id IN (SELECT job_id FROM pgclone.jobs_view) ORDER BY job_id;
                """)
            let workers = try await target.rows("SELECT count(*) FROM pgclone.jobs_view WHERE op_type = 'worker' AND job_id > \(parent) AND job_id <= \(parent) + 4;")
            #expect(workers == ["4"], "\(family)")
            // A worker row is acted on through its parent (round 35: "does not exist").
            let worker = (Int(parent) ?? 0) + 1
            _ = try await target.expectError("SELECT pgclone.cancel(\(worker));", sqlState: "55000", message: "job \(worker) is a worker of job \(parent); cancel job \(parent)")
            #expect(try await target.rows("SELECT match FROM pgclone.verify(\(target.source), 'test_schema');") == Array(repeating: "✓", count: 5))
            // 16.2
            try await target.rows("DROP SCHEMA IF EXISTS test_schema CASCADE;")
            let combined = try await target.call("""
                SELECT pgclone.schema_async(
                \(target.source),
                'test_schema', true,
                '{"parallel": 4, "conflict": "replace", "triggers": false}'
                );
                """)
            #expect(try await Self.waitForEnd(target, combined) == "completed")
            #expect(try await target.rows("""
                SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'test_schema' AND NOT t.tgisinternal;
                """) == ["0"])
            _ = try await target.call("SELECT pgclone.clear_jobs();")
        }
    }

    @Test("17 progress_detail() and jobs_view: every column, filters")
    func guideTest17() async throws {
        try await withGuideTarget(runsJobs: true) { (target: GuideTarget) async throws in
            let id = try await target.call("""
                SELECT pgclone.schema_async(
                \(target.source),
                'test_schema', true,
                '{"conflict": "replace"}'
                );
                """)
            _ = try await Self.waitForEnd(target, id)
            let columns = try await Shell.run(["psql", "-X", "-d", target.conninfo, "-c", "SELECT * FROM pgclone.progress_detail() LIMIT 0;"])
            for column in ["job_id", "status", "op_type", "schema_name", "table_name", "current_phase", "tables_total", "tables_completed", "rows_copied",
                           "bytes_copied", "elapsed_ms", "start_time", "end_time", "pct_complete", "progress_bar", "elapsed_time"] {
                #expect(columns.stdout.contains(column), "\(column) in \(columns.stdout)")
            }
            #expect(try await target.rows("""
                SELECT job_id, status, schema_name, table_name,
                pct_complete, progress_bar
                FROM pgclone.jobs_view WHERE job_id = \(id);
                """).first?.hasPrefix("\(id)|completed|test_schema|") == true)
            #expect(try await target.rows("SELECT job_id, status, elapsed_time FROM pgclone.jobs_view WHERE status = 'running' AND job_id = \(id);") == [])
            #expect(try await target.rows("SELECT job_id, error_message FROM pgclone.jobs_view WHERE status = 'failed' AND job_id = \(id);") == [])
            // pgclone's own state tables are plain tables, not admin calls (only jobs_view is).
            let stateDatabase = target.environment.throughProxy(target.proxy.port, database: TargetRoles.cliStateDatabase)
            #expect(try await target.rows("SELECT count(*) > 0 FROM pgclone.jobs WHERE job_id = \(id);", on: stateDatabase) == ["t"])
            // A job that fails says why.
            let failing = try await target.call("SELECT pgclone.table_async(\(target.source), 'test_schema', 'nope', true);")
            #expect(try await Self.waitForEnd(target, failing) == "failed")
            #expect(try await target.rows("SELECT error_message FROM pgclone.jobs_view WHERE status = 'failed' AND job_id = \(failing);")
                    == ["relation \"test_schema.nope\" does not exist on source"])
            // With what the synchronous call says after its message: the DETAIL and HINT (round 35).
            let conflicting = try await target.call("SELECT pgclone.schema_async(\(target.source), 'test_schema', true);")
            #expect(try await Self.waitForEnd(target, conflicting) == "failed")
            #expect(try await target.rows("""
                SELECT error_message LIKE 'relation "test_schema.%" already exists on target' || chr(10) || '%' || chr(10) || 'HINT: Use the "conflict" option%'
                FROM pgclone.jobs_view WHERE job_id = \(conflicting);
                """) == ["t"])
            _ = try await target.call("SELECT pgclone.clear_jobs();")
        }
    }

    /// A proxy killed (SIGKILL) in the middle of a job: the job becomes interrupted, the tables
    /// it finished are intact and nothing is half-copied; resume (with the conninfo again: the
    /// password was never stored) finishes it from the first table not done.
    @Test func aKilledProxysJobIsInterruptedAndResumes() async throws {
        let environment = try TestEnvironment.require()
        try await Self.withBigSource { source in
            try await withGuideTarget(runsJobs: true) { (target: GuideTarget) async throws in
                let (killed, port, _) = try await ConnectionChurnTests.launchProxy(environment, arguments: ["--log-level", "warning"])
                defer { if killed.isRunning { killed.terminate() } }
                let viaKilled = environment.throughProxy(port, database: target.database)
                let id = try await target.rows("SELECT pgclone.schema_async(\(guideSQLLiteral(source)), 'big', true);", on: viaKilled).first ?? ""
                try await waitFor("the large table's copy", seconds: 30) {
                    try await target.rows("SELECT table_name FROM pgclone.jobs_view WHERE job_id = \(id) AND status = 'running';") == ["big.b_large"]
                }
                kill(killed.processIdentifier, SIGKILL)
                killed.waitUntilExit()
                // The in-process proxy of this test notices the missing heartbeat.
                try await waitFor("the job to be interrupted", seconds: 30) {
                    try await target.rows("SELECT status FROM pgclone.jobs_view WHERE job_id = \(id);") == ["interrupted"]
                }
                #expect(try await target.rows("SELECT count(*) FROM big.a_small;") == ["100"])
                #expect(try await target.rows("SELECT to_regclass('big.b_large') IS NULL;") == ["t"])
                try await target.expectError("SELECT pgclone.resume(\(id));", sqlState: "22023", message: "job \(id) needs its source password again: pgclone does not store passwords")
                #expect(try await target.call("SELECT pgclone.resume(\(id), \(guideSQLLiteral(source)));") == "OK: job \(id) resumed (1 table already done)")
                #expect(try await Self.waitForEnd(target, id) == "completed")
                #expect(try await target.rows("SELECT count(*) FROM big.b_large;") == ["1500000"])
                #expect(try await target.rows("SELECT count(*) FROM big.a_small;") == ["100"])
                // The result says the source was read at more than one moment (round 35: the note
                // went when the resumed run completed).
                let progress = try JSONReader.parse(try await target.call("SELECT pgclone.progress(\(id));"))["notes"]?.string ?? ""
                #expect(progress.hasPrefix("OK: cloned schema big") && progress.contains("; resumed at ") && progress.hasSuffix(" under a new snapshot of the source"), "\(progress)")
                // The resumed run met big.a_small again (kept as done): it is listed once.
                let stateDatabase = target.environment.throughProxy(target.proxy.port, database: TargetRoles.cliStateDatabase)
                #expect(try await target.rows("SELECT completed_tables::text FROM pgclone.jobs WHERE job_id = \(id);", on: stateDatabase)
                        == ["{big.a_small,big.b_large}"])
                _ = try await target.call("SELECT pgclone.clear_jobs();")
            }
        }
    }

    /// SIGTERM: a synchronous call in progress is waited for (grace 30 s) and answers; a job
    /// still running when a short grace period ends is stopped cleanly and becomes interrupted,
    /// with nothing half-copied.
    @Test func shutdownWaitsForCallsAndInterruptsJobsAfterTheGracePeriod() async throws {
        let environment = try TestEnvironment.require()
        try await Self.withBigSource { source in
            try await withGuideTarget(runsJobs: true) { (target: GuideTarget) async throws in
                // A synchronous clone outlives SIGTERM: its session is busy, not idle.
                let (patient, patientPort, _) = try await ConnectionChurnTests.launchProxy(environment, arguments: ["--log-level", "warning", "--shutdown-grace", "30"])
                defer { if patient.isRunning { patient.terminate() } }
                let viaPatient = try await PQConnection.connect(environment.throughProxy(patientPort, database: target.database))
                async let answer = viaPatient.exec("SELECT pgclone.table(\(guideSQLLiteral(source)), 'big', 'b_large', true, 'b_sync');")
                try await waitFor("the synchronous copy", seconds: 30) {
                    try await target.rows("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY%b_sync%' AND state = 'active';") == ["1"]
                }
                kill(patient.processIdentifier, SIGTERM)
                #expect(try await answer.string(0, 0) == "OK: cloned big.b_large to big.b_sync (1500000 rows)")
                try await waitFor("the proxy to exit") { !patient.isRunning }
                #expect(patient.terminationStatus == 0)
                #expect(try await target.rows("SELECT count(*) FROM big.b_sync;") == ["1500000"])

                // A job longer than the grace period: stopped, interrupted, the table in flight rolled back.
                let (hasty, hastyPort, log) = try await ConnectionChurnTests.launchProxy(environment, arguments: ["--log-level", "notice", "--shutdown-grace", "1"])
                defer { if hasty.isRunning { hasty.terminate() } }
                let viaHasty = environment.throughProxy(hastyPort, database: target.database)
                let id = try await target.rows("SELECT pgclone.schema_async(\(guideSQLLiteral(source)), 'big', true, '{\"conflict\": \"skip\"}');", on: viaHasty).first ?? ""
                try await waitFor("the large table's copy", seconds: 30) {
                    try await target.rows("SELECT table_name FROM pgclone.jobs_view WHERE job_id = \(id) AND status = 'running';") == ["big.b_large"]
                }
                let stopped = ContinuousClock.now
                kill(hasty.processIdentifier, SIGTERM)
                try await waitFor("the proxy to exit", seconds: 20) { !hasty.isRunning }
                #expect(ContinuousClock.now - stopped < .seconds(10))
                #expect(try await target.rows("SELECT status FROM pgclone.jobs_view WHERE job_id = \(id);") == ["interrupted"])
                #expect(try await target.rows("SELECT to_regclass('big.b_large') IS NULL;") == ["t"])
                #expect(try String(contentsOf: log, encoding: .utf8).contains("stopping running jobs; they stay resumable"))
                _ = try await target.call("SELECT pgclone.clear_jobs();")
            }
        }
    }

    /// Two proxies fronting one target share the jobs table: each job is claimed by one of them
    /// only, both run jobs, both show every job's progress, and no table is copied twice.
    @Test func twoProxiesShareTheJobs() async throws {
        let environment = try TestEnvironment.require()
        try await Self.withBigSource { sourceWithPassword in
            // A job whose source needs no password from the call can run on any proxy.
            let passfile = URL(fileURLWithPath: environment.directory).appendingPathComponent("pgpass-\(guideRandomSuffix())")
            try "127.0.0.1:\(environment.sourcePort):*:postgres:\(environment.password)\n".write(to: passfile, atomically: true, encoding: .utf8)
            chmod(passfile.path, 0o600)
            defer { try? FileManager.default.removeItem(at: passfile) }
            let source = sourceWithPassword.replacingOccurrences(of: "password=\(environment.password)", with: "passfile=\(passfile.path)")
            try await withGuideTarget { (target: GuideTarget) async throws in
                let (first, firstPort, firstLog) = try await ConnectionChurnTests.launchProxy(environment, arguments: ["--log-level", "info"])
                defer { if first.isRunning { first.terminate() } }
                let (second, secondPort, secondLog) = try await ConnectionChurnTests.launchProxy(environment, arguments: ["--log-level", "info"])
                defer { if second.isRunning { second.terminate() } }
                let viaFirst = environment.throughProxy(firstPort, database: target.database)
                let viaSecond = environment.throughProxy(secondPort, database: target.database)
                var ids: [String] = []
                for index in 1...4 {
                    ids += try await target.rows("SELECT pgclone.table_async(\(guideSQLLiteral(source)), 'big', 'b_large', true, 'copy_\(index)');", on: viaFirst)
                }
                #expect(ids.count == 4)
                let list = ids.joined(separator: ", ")
                try await waitFor("the four jobs to end", seconds: 120) {
                    try await target.rows("SELECT count(*) FROM pgclone.jobs_view WHERE job_id IN (\(list)) AND status NOT IN ('pending', 'running');", on: viaSecond) == ["4"]
                }
                let statuses = "SELECT job_id, status, rows_copied FROM pgclone.jobs_view WHERE job_id IN (\(list)) ORDER BY job_id;"
                let seenBySecond = try await target.rows(statuses, on: viaSecond)
                #expect(seenBySecond == ids.map { "\($0)|completed|1500000" })
                #expect(try await target.rows(statuses, on: viaFirst) == seenBySecond)
                for index in 1...4 {
                    #expect(try await target.rows("SELECT count(*) FROM big.copy_\(index);") == ["1500000"])
                }
                // Who ran what: each job started exactly once, and both proxies took some.
                let logs = [try String(contentsOf: firstLog, encoding: .utf8), try String(contentsOf: secondLog, encoding: .utf8)]
                var byProxy = [0, 0]
                for id in ids {
                    let starts = logs.map { log in log.components(separatedBy: "\n").filter { $0.contains("job started") && $0.contains("job_id=\(id) ") }.count }
                    #expect(starts.reduce(0, +) == 1, "job \(id) started \(starts) times")
                    for (proxy, count) in starts.enumerated() { byProxy[proxy] += count }
                }
                #expect(byProxy[0] >= 1 && byProxy[1] >= 1, "jobs per proxy: \(byProxy)")
                _ = try await target.rows("SELECT pgclone.clear_jobs();", on: viaFirst)
            }
        }
    }

    /// The job store keeps its state-database connection between uses: polling jobs_view (and
    /// the runner's own ticks every 200 ms) goes over the same backend instead of a new backend
    /// (fork and authentication on the target) for each call.
    @Test func theJobStoreReusesItsStateConnection() async throws {
        let environment = try TestEnvironment.require()
        let stateDatabase = "jobs_state_\(guideRandomSuffix())"
        let admin = try await PQConnection.connect(environment.directTarget())
        try await admin.exec("CREATE DATABASE \(stateDatabase)")
        let proxy = try await RunningProxy.start(environment, runsJobs: true) { $0.stateDatabase = stateDatabase }
        do {
            let viaProxy = environment.throughProxy(proxy.port, database: "postgres")
            let backends = "SELECT pid FROM pg_catalog.pg_stat_activity WHERE datname = \(SQL.literal(stateDatabase)) AND application_name = 'pgclone jobs' ORDER BY pid"
            var before: [String] = []
            try await waitFor("the runner's state connection", seconds: 10) {
                let found = try await admin.query(backends)
                before = found.rows.indices.compactMap { found.string($0, 0) }
                return !before.isEmpty
            }
            try await Task.sleep(for: .milliseconds(500))
            let settled = try await admin.query(backends)
            #expect(settled.rows.indices.compactMap { settled.string($0, 0) } == before, "the runner's ticks changed connections")
            for _ in 1...15 {
                let polled = try await Shell.psql(viaProxy, "SELECT count(*) FROM pgclone.jobs_view;")
                #expect(polled.status == 0, "\(polled.stderr)")
                try await Task.sleep(for: .milliseconds(100))
            }
            let found = try await admin.query(backends)
            let after = found.rows.indices.compactMap { found.string($0, 0) }
            #expect(after.count <= 4, "state connections: \(after)")
            #expect(!Set(before).isDisjoint(with: after), "no state connection lived through the polls: \(before) then \(after)")
        } catch {
            try? await proxy.stop()
            _ = try? await admin.exec("DROP DATABASE IF EXISTS \(stateDatabase) WITH (FORCE)")
            throw error
        }
        try await proxy.stop()
        // Stopped: the kept connections are closed (the database can be dropped without FORCE).
        try await admin.exec("DROP DATABASE \(stateDatabase)")
    }

    /// A member of --admin-roles sees and acts on the jobs its own role started, not on others'
    /// (their errors and notes can quote source values; resuming one with a new conninfo would
    /// point it elsewhere); a superuser sees them all (attack round 20).
    @Test func adminsSeeAndTouchOnlyTheirOwnJobs() async throws {
        let environment = try TestEnvironment.require()
        let suffix = guideRandomSuffix()
        let group = "job_admins_\(suffix)", member = "job_admin_\(suffix)", stateDatabase = "jobs_state_\(suffix)"
        let admin = try await PQConnection.connect(environment.directTarget())
        try await admin.exec("CREATE DATABASE \(stateDatabase)")
        try await admin.exec("CREATE ROLE \(group); CREATE ROLE \(member) LOGIN PASSWORD 'pw' IN ROLE \(group)")
        let proxy = try await RunningProxy.start(environment, runsJobs: true) {
            $0.stateDatabase = stateDatabase
            $0.adminRoles = [group]
        }
        do {
            let asPostgres = environment.throughProxy(proxy.port, database: "postgres")
            let asMember = "host=127.0.0.1 port=\(proxy.port) dbname=postgres user=\(member) password=pw"
            let source = guideSQLLiteral(guideSourceConnInfo(environment))
            func run(_ conninfo: String, _ sql: String) async throws -> Shell.Output { try await Shell.psql(conninfo, sql, extra: ["-v", "VERBOSITY=verbose"]) }
            func job(_ conninfo: String) async throws -> String {
                let made = try await run(conninfo, "SELECT pgclone.table_async(\(source), 'test_schema', 'nope', true);")
                #expect(made.status == 0, "\(made.stderr)")
                let id = guideLines(made.stdout).first ?? ""
                try await waitFor("job \(id) to fail", seconds: 30) {
                    guideLines(try await run(conninfo, "SELECT status FROM pgclone.jobs_view WHERE job_id = \(id);").stdout) == ["failed"]
                }
                return id
            }
            let theirs = try await job(asPostgres)
            let mine = try await job(asMember)
            #expect(guideLines(try await run(asMember, "SELECT job_id FROM pgclone.jobs_view ORDER BY job_id;").stdout) == [mine])
            #expect(guideLines(try await run(asMember, "SELECT count(*) FROM pgclone.progress_detail() WHERE job_id = \(theirs);").stdout) == ["0"])
            #expect(!(try await run(asMember, "SELECT pgclone.jobs();").stdout.contains("\"job_id\": \(theirs)")))
            // The console's SHOW JOBS follows the same rule.
            let memberConsole = "host=127.0.0.1 port=\(proxy.port) dbname=pgclone user=\(member) password=pw"
            #expect(guideLines(try await Shell.psql(memberConsole, "SHOW JOBS;").stdout).compactMap { $0.split(separator: "|").first.map(String.init) } == [mine])
            let superConsole = environment.throughProxy(proxy.port, database: "pgclone")
            #expect(guideLines(try await Shell.psql(superConsole, "SHOW JOBS;").stdout).compactMap { $0.split(separator: "|").first.map(String.init) }.sorted() == [theirs, mine].sorted())
            for call in ["pgclone.progress(\(theirs))", "pgclone.cancel(\(theirs))", "pgclone.resume(\(theirs), \(source))"] {
                let refused = try await run(asMember, "SELECT \(call);")
                #expect(refused.stderr.contains("ERROR:  P0002: job \(theirs) does not exist"), "\(call): \(refused.stderr)")
            }
            #expect(guideLines(try await run(asMember, "SELECT pgclone.clear_jobs();").stdout) == ["1"])
            #expect(guideLines(try await run(asPostgres, "SELECT job_id, status FROM pgclone.jobs_view ORDER BY job_id;").stdout) == ["\(theirs)|failed"])
            #expect(guideLines(try await run(asPostgres, "SELECT pgclone.clear_jobs();").stdout) == ["1"])
        } catch {
            try? await proxy.stop()
            _ = try? await admin.exec("DROP DATABASE IF EXISTS \(stateDatabase) WITH (FORCE)")
            _ = try? await admin.exec("DROP ROLE IF EXISTS \(member); DROP ROLE IF EXISTS \(group)")
            throw error
        }
        try await proxy.stop()
        _ = try? await admin.exec("DROP DATABASE IF EXISTS \(stateDatabase) WITH (FORCE)")
        _ = try? await admin.exec("DROP ROLE \(member); DROP ROLE \(group)")
    }

    /// resume(job_id, conninfo) points the job at the conninfo given, also while this proxy
    /// still holds the first one's password (round 29: the new conninfo was ignored).
    @Test func resumeTakesTheConninfoItIsGiven() async throws {
        let sql = "CREATE SCHEMA test_schema; CREATE TABLE test_schema.only_here (id int); INSERT INTO test_schema.only_here VALUES (1), (2), (3);"
        try await CloneFidelityTests.withSourceDatabase(sql) { _, otherSource, _ in
            try await withGuideTarget(runsJobs: true) { (target: GuideTarget) async throws in
                let id = try await target.call("SELECT pgclone.table_async(\(target.source), 'test_schema', 'only_here', true);")
                #expect(try await Self.waitForEnd(target, id) == "failed")
                #expect(try await target.call("SELECT pgclone.resume(\(id), \(guideSQLLiteral(otherSource)));") == "OK: job \(id) resumed (0 tables already done)")
                #expect(try await Self.waitForEnd(target, id) == "completed")
                #expect(try await target.rows("SELECT count(*) FROM test_schema.only_here;") == ["3"])
            }
        }
    }

    /// The command line: `--async` queues a job through the proxy, `pgclone jobs` lists it,
    /// `pgclone jobs --watch` follows it to the end.
    @Test func commandLineQueuesAndWatchesJobs() async throws {
        let environment = try TestEnvironment.require()
        try await withGuideTarget(runsJobs: true) { (target: GuideTarget) async throws in
            let source = guideSourceConnInfo(environment)
            let queued = try await Shell.run([CommandLineTests.binary, "schema", "test_schema", "--async", "--parallel", "2",
                                              "--source", source, "--target", target.conninfo])
            #expect(queued.status == 0, "\(queued.stderr)")
            let id = queued.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(Int(id) != nil, "\(queued.stdout)")
            #expect(queued.stderr.contains("NOTICE: job \(id) queued"))
            let watched = try await Shell.run([CommandLineTests.binary, "jobs", "--watch", "--interval", "0.2", "--target", target.conninfo], timeout: 120)
            #expect(watched.status == 0, "\(watched.stderr)")
            let last = watched.stdout.components(separatedBy: "\u{1B}[H\u{1B}[2J").last ?? ""
            #expect(last.contains("#\(id) schema test_schema [##############################] 100.0% completed"), "\(last)")
            let listed = try await Shell.run([CommandLineTests.binary, "jobs", "--target", target.conninfo])
            #expect(listed.status == 0)
            let lines = listed.stdout.components(separatedBy: "\n")
            #expect(lines.first?.hasPrefix("job_id  status") == true, "\(listed.stdout)")
            #expect(lines.contains { $0.hasPrefix("\(id) ") && $0.contains(" completed ") && $0.contains(" 5/5 ") && $0.contains("100.0%") }, "\(listed.stdout)")
            #expect(try await target.rows("SELECT count(*) FROM test_schema.customers;") == ["10"])
            // COPY bytes are counted with the rows.
            #expect(try await target.rows("SELECT rows_copied, bytes_copied > 1000 FROM pgclone.jobs_view WHERE job_id = \(id);") == ["43|t"])

            // Straight to the server, there are no jobs to queue.
            let direct = try await Shell.run([CommandLineTests.binary, "table", "test_schema", "customers", "--async",
                                              "--source", source, "--target", environment.directTarget(database: target.database)])
            #expect(direct.status == 1)
            #expect(direct.stderr.hasPrefix("pgclone: --async needs --target to be a connection through a pgclone proxy (the jobs run there): "), "\(direct.stderr)")
            _ = try await target.call("SELECT pgclone.clear_jobs();")
        }
    }
}
