import Foundation
#if canImport(Glibc)
import Glibc
#endif
import PQ
import Testing

/// Clones meeting trouble: objects that a replace would drop, a terminated target backend,
/// a cancelled database_create. Each failure says what happened, on which side, and what is
/// already on the target; nothing half-made stays behind.
@Suite(.serialized)
struct CloneFaultTests {
    /// `conflict: replace` keeps what depends on the table (foreign keys of other tables, views
    /// and views on those, with owner, grants and comment), refuses to drop what it cannot put
    /// back (a materialized view) unless "cascade" allows it.
    @Test func replaceKeepsViewsAndForeignKeysAndRefusesToDropTheRest() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.cloneCustomers()
            try await target.rows("""
                CREATE VIEW test_schema.active_names WITH (security_barrier) AS SELECT id, name FROM test_schema.customers WHERE status = 'active';
                CREATE VIEW test_schema.active_count AS SELECT count(*) AS n FROM test_schema.active_names;
                COMMENT ON VIEW test_schema.active_names IS 'kept by replace';
                GRANT SELECT ON test_schema.active_names TO PUBLIC;
                COMMENT ON COLUMN test_schema.active_names.name IS 'column comment kept';
                ALTER VIEW test_schema.active_names ALTER COLUMN name SET DEFAULT 'unnamed';
                GRANT UPDATE (name) ON test_schema.active_names TO PUBLIC;
                CREATE RULE no_delete AS ON DELETE TO test_schema.active_names DO INSTEAD NOTHING;
                CREATE FUNCTION test_schema.names_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
                CREATE TRIGGER names_insert INSTEAD OF INSERT ON test_schema.active_names FOR EACH ROW EXECUTE FUNCTION test_schema.names_insert();
                CREATE TABLE test_schema.visits (id int PRIMARY KEY, customer_id int REFERENCES test_schema.customers (id));
                INSERT INTO test_schema.visits VALUES (1, 3);
                CREATE MATERIALIZED VIEW test_schema.customer_totals AS SELECT status, count(*) FROM test_schema.customers GROUP BY status;
                """)
            let output = try await target.expectError("""
                SELECT pgclone.table(\(target.source), 'test_schema', 'customers', true, 'customers', '{"conflict": "replace"}');
                """, sqlState: "2BP01", message: "cannot replace table test_schema.customers because other objects on the target depend on it")
            #expect(output.stderr.contains("DETAIL:  materialized view test_schema.customer_totals depends on table test_schema.customers\n"), "\(output.stderr)")
            #expect(output.stderr.contains("HINT:  Drop or move them first, or add \"cascade\": true to the options to drop them with it."))
            #expect(try await target.rows("SELECT count(*) FROM test_schema.customer_totals;").count == 1)

            try await target.rows("DROP MATERIALIZED VIEW test_schema.customer_totals;")
            let message = try await target.call("""
                SELECT pgclone.table(\(target.source), 'test_schema', 'customers', true, 'customers', '{"conflict": "replace"}');
                """)
            #expect(message == "OK: cloned test_schema.customers (10 rows, replaced existing table)")
            #expect(try await target.rows("""
                SELECT (SELECT n FROM test_schema.active_count) = (SELECT count(*) FROM test_schema.customers WHERE status = 'active'),
                       obj_description('test_schema.active_names'::regclass, 'pg_class'),
                       has_table_privilege('public', 'test_schema.active_names', 'SELECT'),
                       (SELECT reloptions::text FROM pg_class WHERE oid = 'test_schema.active_names'::regclass),
                       (SELECT count(*) FROM pg_constraint WHERE conname = 'visits_customer_id_fkey' AND confrelid = 'test_schema.customers'::regclass);
                """) == ["t|kept by replace|t|{security_barrier=true}|1"])
            // What hangs on the view came back with it.
            let hanging = try await target.rows("""
                SELECT col_description('test_schema.active_names'::regclass, 2),
                       (SELECT pg_get_expr(adbin, adrelid) LIKE '''unnamed''::%' FROM pg_attrdef WHERE adrelid = 'test_schema.active_names'::regclass),
                       has_column_privilege('public', 'test_schema.active_names', 'name', 'UPDATE'),
                       (SELECT count(*) FROM pg_rewrite WHERE ev_class = 'test_schema.active_names'::regclass AND rulename = 'no_delete'),
                       (SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'test_schema.active_names'::regclass AND tgname = 'names_insert');
                """)
            #expect(hanging == ["column comment kept|t|t|1|O"], "\(hanging)")

            // A dependent that cannot be put back goes only when the caller says so.
            try await target.rows("CREATE MATERIALIZED VIEW test_schema.customer_totals AS SELECT status, count(*) FROM test_schema.customers GROUP BY status;")
            #expect(try await target.call("""
                SELECT pgclone.table(\(target.source), 'test_schema', 'customers', true, 'customers', '{"conflict": "replace", "cascade": true}');
                """) == "OK: cloned test_schema.customers (10 rows, replaced existing table)")
            #expect(try await target.rows("SELECT to_regclass('test_schema.customer_totals') IS NULL, to_regclass('test_schema.active_count') IS NOT NULL;") == ["t|t"])

            // A foreign key the new rows break: nothing changes, and the error says why.
            try await target.rows("INSERT INTO test_schema.visits VALUES (2, 10);")
            try await target.expectError("""
                SELECT pgclone.table(\(target.source), 'test_schema', 'customers', true, 'customers', '{"conflict": "replace", "where": "id < 5"}');
                """, sqlState: "23503", message: "cannot replace table test_schema.customers: what depends on it on the target cannot be put back: insert or update on table \"visits\" violates foreign key constraint \"visits_customer_id_fkey\"")
            #expect(try await target.rows("SELECT count(*) FROM test_schema.customers;") == ["10"])
        }
    }

    @Test func aTerminatedTargetBackendIsReportedAsTheTargetsAndTheTablesDoneAreNamed() async throws {
        try await GuideJobsTests.withBigSource { source in
            try await withGuideTarget { (target: GuideTarget) async throws in
                async let failed = Shell.psql(target.conninfo, "\\set VERBOSITY verbose\nSELECT pgclone.schema(\(guideSQLLiteral(source)), 'big', true);")
                try await waitFor("the large table's copy", seconds: 30) {
                    try await target.rows("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY %b_large%FROM STDIN%' AND datname = '\(target.database)';",
                                          on: target.environment.directTarget(database: "postgres")) == ["1"]
                }
                try await target.rows("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'COPY %b_large%FROM STDIN%' AND datname = '\(target.database)';",
                                      on: target.environment.directTarget(database: "postgres"))
                let output = try await failed
                let reported = guideReportedError(output.stderr) ?? ""
                // libpq reports the lost connection (08006), or the server's FATAL when it read it first.
                #expect(reported == "08006: cloning big.b_large: target server: server closed the connection unexpectedly"
                        || reported == "57P01: cloning big.b_large: target server: terminating connection due to administrator command", "\(output.stderr)")
                #expect(!output.stderr.contains("canceling statement due to user request"))
                #expect(output.stderr.contains("Already cloned and committed on the target (1 of 2 tables): big.a_small."), "\(output.stderr)")
                #expect(try await target.rows("SELECT to_regclass('big.b_large') IS NULL, (SELECT count(*) FROM big.a_small);") == ["t|100"])
            }
        }
    }

    @Test func aCancelledDatabaseCreateLeavesNoDatabase() async throws {
        let environment = try TestEnvironment.require()
        try await GuideJobsTests.withBigSource { source in
            try await withGuideTarget { (target: GuideTarget) async throws in
                let name = "fault_created_\(guideRandomSuffix())"
                let session = try await PQConnection.connect(target.conninfo)
                let call = Task { () -> Result<PQResult, any Error> in
                    do { return .success(try await session.exec("SELECT pgclone.database_create(\(guideSQLLiteral(source)), '\(name)', true);")) } catch { return .failure(error) }
                }
                try await waitFor("the large table's copy", seconds: 30) {
                    try await target.rows("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY %b_large%FROM STDIN%' AND datname = '\(name)';",
                                          on: environment.directTarget(database: "postgres")) == ["1"]
                }
                let comment = try await target.rows("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '\(name)';",
                                                    on: environment.directTarget(database: "postgres"))
                #expect(comment == ["pgclone: incomplete clone, interrupted while being created; drop it (DROP DATABASE \"\(name)\") and clone again"])
                try session.cancel()
                guard case .failure(let error as PQError) = await call.value else {
                    Issue.record("database_create was not cancelled")
                    return
                }
                #expect(error.sqlState == "57014")
                // What the schema clone had committed went with the database: it says so, not that.
                #expect(error.detail == "Database \(name) was dropped again: the target server is as it was.", "\(error.detail ?? "")")
                try await waitFor("the database to be dropped", seconds: 10) {
                    try await target.rows("SELECT count(*) FROM pg_database WHERE datname = '\(name)';", on: environment.directTarget(database: "postgres")) == ["0"]
                }
            }
        }
    }

    /// A client that hangs up in the middle of a synchronous clone: the call is cancelled on
    /// both servers, the table in flight rolls back, nothing keeps running.
    @Test func aClientHangingUpCancelsItsCloneCleanly() async throws {
        let environment = try TestEnvironment.require()
        try await GuideJobsTests.withBigSource { source in
            try await withGuideTarget { (target: GuideTarget) async throws in
                let direct = environment.directTarget(database: "postgres")
                let client = try ChildProcess("/usr/bin/psql", ["-X", "-d", target.conninfo, "-c", "SELECT pgclone.table(\(guideSQLLiteral(source)), 'big', 'b_large', true);"])
                defer { if client.isRunning { client.terminate() } }
                try await waitFor("the copy", seconds: 30) {
                    try await target.rows("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY %b_large%FROM STDIN%' AND datname = '\(target.database)';",
                                          on: direct) == ["1"]
                }
                // The client goes away (SIGKILL: its socket closes, no CancelRequest) while the COPY runs.
                kill(client.processIdentifier, SIGKILL)
                client.waitUntilExit()
                try await waitFor("the copy to stop on both servers", seconds: 15) {
                    let onTarget = try await target.rows("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY %b_large%' AND state = 'active' AND datname = '\(target.database)';", on: direct)
                    let onSource = try await target.rows("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY %b_large%' AND state = 'active';",
                                                         on: "host=127.0.0.1 port=\(environment.sourcePort) dbname=postgres user=postgres password=\(environment.password)")
                    return onTarget == ["0"] && onSource == ["0"]
                }
                #expect(try await target.rows("SELECT to_regclass('big.b_large') IS NULL;") == ["t"])
            }
        }
    }
}
