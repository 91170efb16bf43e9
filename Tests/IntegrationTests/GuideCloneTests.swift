import Foundation
import Proxy
import Testing

/// Guide tests 1-8 and 18 (../shared/seed/pgclone-manual-testing-guide.txt), typed into psql
/// connected to the proxy, with the guide's expectations made exact from
/// test/fixtures/seed.sql (the data loaded into the source db1).
///
/// Tests run in parallel: each one works in its own fresh target database (created and
/// dropped over a direct superuser connection) behind its own proxy, and replays the guide
/// steps a sub-step depends on. The source is the shared fixture; nothing here writes to it.
@Suite("Guide tests 1-8 and 18: cloning through the proxy")
struct GuideCloneTests {
    // MARK: Test 1: version, and who may call the admin channel

    @Test("1 pgclone.version() answers through the proxy")
    func version() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            #expect(try await target.call("SELECT pgclone.version();") == "pgclone 3.6.0")
            #expect(try await target.call("SELECT * FROM pgclone.version();") == "pgclone 3.6.0")
            // Only calls are intercepted: the name inside a string literal or a comment is plain SQL.
            #expect(try await target.rows("SELECT 'pgclone.version()' /* pgclone.version() */;") == ["pgclone.version()"])
        }
    }

    @Test("1 a role that is neither superuser nor admin is refused with 42501 and nothing runs")
    func nonAdminRoleIsRefused() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            let role = "guide_nonadmin_\(guideRandomSuffix())"
            try await target.direct("CREATE ROLE \(role) LOGIN PASSWORD 'x'", database: "postgres")
            let asRole = target.environment.throughProxy(target.proxy.port, user: role, password: "x", database: target.database)
            do {
                // The role can log in through the proxy; only the admin calls are refused.
                #expect(try await target.rows("SELECT current_user;", on: asRole) == [role])
                try await target.expectError("SELECT pgclone.version();", sqlState: "42501", on: asRole)
                try await target.expectError("""
                    SELECT pgclone.table(\(target.source), 'test_schema', 'customers', true);
                    """, sqlState: "42501", on: asRole)
                #expect(try await target.rows("SELECT to_regnamespace('test_schema') IS NULL;") == ["t"])
                #expect(try await target.call("SELECT pgclone.version();") == "pgclone 3.6.0")
            } catch {
                _ = try? await Shell.psql(target.environment.directTarget(database: "postgres"), "DROP ROLE IF EXISTS \(role);")
                throw error
            }
            try await target.direct("DROP ROLE IF EXISTS \(role)", database: "postgres")
        }
    }

    // MARK: Test 2: synchronous table cloning

    @Test("2.1 clone table with data")
    func cloneTableWithData() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.cloneCustomers()
            #expect(try await target.rows("SELECT COUNT(*) FROM test_schema.customers;") == ["10"])
            try await target.expectSameRowsAsSource("SELECT * FROM test_schema.customers ORDER BY id;")
            try await target.expectSameRowsAsSource(guideColumnsQuery("test_schema.customers"))
        }
    }

    @Test("2.2 clone structure only (no data)")
    func cloneStructureOnly() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.cloneCustomers()
            #expect(try await target.call("""
                SELECT pgclone.table(
                \(target.source),
                'test_schema', 'orders', false
                );
                """) == "OK: cloned test_schema.orders (structure only)")
            #expect(try await target.rows("SELECT COUNT(*) FROM test_schema.orders;") == ["0"])
            try await target.expectSameRowsAsSource(guideColumnsQuery("test_schema.orders"))
        }
    }

    @Test("2.3 clone with a different target name")
    func cloneWithDifferentTargetName() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            #expect(try await target.call("""
                SELECT pgclone.table(
                \(target.source),
                'test_schema', 'customers', true,
                'customers_backup'
                );
                """) == "OK: cloned test_schema.customers to test_schema.customers_backup (10 rows)")
            #expect(try await target.rows("SELECT COUNT(*) FROM test_schema.customers_backup;") == ["10"])
            #expect(try await target.rows("SELECT to_regclass('test_schema.customers') IS NULL;") == ["t"])
            try await target.expectSameRowsAsSource(
                target: "SELECT * FROM test_schema.customers_backup ORDER BY id;",
                source: "SELECT * FROM test_schema.customers ORDER BY id;")
        }
    }

    @Test("2.4 selective column cloning")
    func selectiveColumns() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            #expect(try await target.call("""
                SELECT pgclone.table(
                \(target.source),
                'test_schema', 'customers', true,
                'customers_lite',
                '{"columns": ["id", "name", "email"]}'
                );
                """) == "OK: cloned test_schema.customers to test_schema.customers_lite (10 rows)")
            #expect(try await target.rows("""
                SELECT column_name FROM information_schema.columns
                WHERE table_schema = 'test_schema' AND table_name = 'customers_lite'
                ORDER BY ordinal_position;
                """) == ["id", "name", "email"])
            try await target.expectSameRowsAsSource(
                target: "SELECT * FROM test_schema.customers_lite ORDER BY id;",
                source: "SELECT id, name, email FROM test_schema.customers ORDER BY id;")
        }
    }

    @Test("2.5 clone with a WHERE filter")
    func whereFilter() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            #expect(try await target.call("""
                SELECT pgclone.table(
                \(target.source),
                'test_schema', 'customers', true,
                'active_customers_copy',
                '{"where": "status = ''active''"}'
                );
                """) == "OK: cloned test_schema.customers to test_schema.active_customers_copy (7 rows)")
            #expect(try await target.rows("SELECT COUNT(*) FROM test_schema.active_customers_copy;") == ["7"])
            #expect(try await target.rows("SELECT DISTINCT status FROM test_schema.active_customers_copy;") == ["active"])
            #expect(try await target.rows("SELECT id FROM test_schema.active_customers_copy ORDER BY id;")
                    == ["1", "2", "3", "5", "6", "8", "10"])
            try await target.expectSameRowsAsSource(
                target: "SELECT * FROM test_schema.active_customers_copy ORDER BY id;",
                source: "SELECT * FROM test_schema.customers WHERE status = 'active' ORDER BY id;")
        }
    }

    @Test("2.6 columns and WHERE combined")
    func columnsAndWhere() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            #expect(try await target.call("""
                SELECT pgclone.table(
                \(target.source),
                'test_schema', 'customers', true,
                'high_scorers',
                '{"columns": ["id", "name", "score"], "where": "score >= 80"}'
                );
                """) == "OK: cloned test_schema.customers to test_schema.high_scorers (4 rows)")
            #expect(try await target.rows("SELECT * FROM test_schema.high_scorers ORDER BY score DESC;") == [
                "6|Aiko Tanaka|95",
                "1|John Smith|92",
                "2|Maria Garcia|85",
                "8|Olga Petrova|81",
            ])
        }
    }

    // MARK: Test 3: indexes, constraints and triggers control

    @Test("3.1 clone without indexes")
    func withoutIndexes() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.cloneCustomers()
            try await target.rows("DROP TABLE IF EXISTS test_schema.customers CASCADE;")
            #expect(try await target.call("""
                SELECT pgclone.table(
                \(target.source),
                'test_schema', 'customers', true,
                'customers',
                '{"indexes": false}'
                );
                """) == "OK: cloned test_schema.customers (10 rows)")
            #expect(try await target.rows("""
                SELECT indexname FROM pg_indexes
                WHERE schemaname = 'test_schema' AND tablename = 'customers';
                """) == ["customers_pkey"])
            #expect(try await target.rows("SELECT COUNT(*) FROM test_schema.customers;") == ["10"])
        }
    }

    @Test("3.2 clone without constraints")
    func withoutConstraints() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.cloneCustomers()
            try await target.rows("""
                DROP TABLE IF EXISTS test_schema.order_items CASCADE;
                DROP TABLE IF EXISTS test_schema.orders CASCADE;
                """)
            #expect(try await target.call("""
                SELECT pgclone.table(
                \(target.source),
                'test_schema', 'orders', true,
                'orders',
                '{"constraints": false}'
                );
                """) == "OK: cloned test_schema.orders (8 rows)")
            // contype 'n' (NOT NULL, PostgreSQL 18+) is a column property, not one of the guide's constraints.
            #expect(try await target.rows("""
                SELECT conname, contype FROM pg_constraint
                WHERE conrelid = 'test_schema.orders'::regclass AND contype <> 'n';
                """) == ["orders_pkey|p"])
            #expect(try await target.rows("SELECT COUNT(*) FROM test_schema.orders;") == ["8"])
        }
    }

    @Test("3.3 clone without triggers")
    func withoutTriggers() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.cloneCustomers()
            try await target.rows("DROP TABLE IF EXISTS test_schema.orders CASCADE;")
            #expect(try await target.call("""
                SELECT pgclone.table(
                \(target.source),
                'test_schema', 'orders', true,
                'orders',
                '{"triggers": false}'
                );
                """) == "OK: cloned test_schema.orders (8 rows)")
            #expect(try await target.rows("""
                SELECT tgname FROM pg_trigger
                WHERE tgrelid = 'test_schema.orders'::regclass AND NOT tgisinternal;
                """) == [])
            #expect(try await target.rows("SELECT COUNT(*) FROM test_schema.orders;") == ["8"])
        }
    }

    @Test("3.4 pgclone.table_ex() with boolean parameters")
    func tableExWithBooleans() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.cloneCustomers()
            try await target.rows("DROP TABLE IF EXISTS test_schema.orders CASCADE;")
            #expect(try await target.call("""
                SELECT pgclone.table_ex(
                \(target.source),
                'test_schema', 'orders', true, 'orders',
                false, -- skip indexes
                true, -- include constraints
                false -- skip triggers
                );
                """) == "OK: cloned test_schema.orders (8 rows)")
            // "Constraints present (PK + FK)": the fixture's orders also has a CHECK constraint.
            #expect(try await target.rows("""
                SELECT conname FROM pg_constraint
                WHERE conrelid = 'test_schema.orders'::regclass AND contype <> 'n' ORDER BY conname;
                """) == ["orders_amount_check", "orders_customer_id_fkey", "orders_pkey"])
            #expect(try await target.rows("""
                SELECT indexname FROM pg_indexes WHERE schemaname = 'test_schema' AND tablename = 'orders';
                """) == ["orders_pkey"])
            #expect(try await target.rows("""
                SELECT tgname FROM pg_trigger WHERE tgrelid = 'test_schema.orders'::regclass AND NOT tgisinternal;
                """) == [])
            #expect(try await target.rows("SELECT COUNT(*) FROM test_schema.orders;") == ["8"])
        }
    }

    // MARK: Test 4: conflict resolution
    //
    // Before each call the target's customers loses ids 6..10, so that skipping, replacing
    // and renaming can be told apart from the row counts.

    @Test("4.1 conflict: error is the default and leaves the existing table alone")
    func conflictErrorByDefault() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.cloneCustomers()
            try await target.rows("DELETE FROM test_schema.customers WHERE id > 5;")
            try await target.expectError("""
                SELECT pgclone.table(
                \(target.source),
                'test_schema', 'customers', true
                );
                """, sqlState: "42P07", message: #"relation "test_schema.customers" already exists on target"#)
            #expect(try await target.rows("SELECT COUNT(*) FROM test_schema.customers;") == ["5"])
        }
    }

    @Test("4.2 conflict: skip")
    func conflictSkip() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.cloneCustomers()
            try await target.rows("DELETE FROM test_schema.customers WHERE id > 5;")
            #expect(try await target.call("""
                SELECT pgclone.table(
                \(target.source),
                'test_schema', 'customers', true,
                'customers',
                '{"conflict": "skip"}'
                );
                """) == "OK: skipped test_schema.customers (already exists)")
            #expect(try await target.rows("SELECT COUNT(*) FROM test_schema.customers;") == ["5"])
        }
    }

    @Test("4.3 conflict: replace")
    func conflictReplace() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.cloneCustomers()
            try await target.rows("DELETE FROM test_schema.customers WHERE id > 5;")
            #expect(try await target.call("""
                SELECT pgclone.table(
                \(target.source),
                'test_schema', 'customers', true,
                'customers',
                '{"conflict": "replace"}'
                );
                """) == "OK: cloned test_schema.customers (10 rows, replaced existing table)")
            #expect(try await target.rows("SELECT COUNT(*) FROM test_schema.customers;") == ["10"])
            try await target.expectSameRowsAsSource("SELECT * FROM test_schema.customers ORDER BY id;")
            #expect(try await target.rows("""
                SELECT indexname FROM pg_indexes
                WHERE schemaname = 'test_schema' AND tablename = 'customers' ORDER BY indexname;
                """) == ["customers_pkey", "idx_customers_name_lower", "idx_customers_status"])
        }
    }

    @Test("4.4 conflict: rename (the existing table becomes customers_old)")
    func conflictRename() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.cloneCustomers()
            try await target.rows("DELETE FROM test_schema.customers WHERE id > 5;")
            #expect(try await target.call("""
                SELECT pgclone.table(
                \(target.source),
                'test_schema', 'customers', true,
                'customers',
                '{"conflict": "rename"}'
                );
                """) == "OK: cloned test_schema.customers (10 rows, existing table renamed to test_schema.customers_old)")
            #expect(try await target.rows("""
                SELECT tablename FROM pg_tables
                WHERE schemaname = 'test_schema' AND tablename LIKE 'customers%'
                ORDER BY tablename;
                """) == ["customers", "customers_old"])
            #expect(try await target.rows("SELECT COUNT(*) FROM test_schema.customers;") == ["10"])
            #expect(try await target.rows("SELECT COUNT(*) FROM test_schema.customers_old;") == ["5"])
            try await target.expectSameRowsAsSource("SELECT * FROM test_schema.customers ORDER BY id;")
            // The new table gets the original index and constraint names; the old one keeps its
            // three indexes and its primary key under other names.
            #expect(try await target.rows("""
                SELECT indexname FROM pg_indexes
                WHERE schemaname = 'test_schema' AND tablename = 'customers' ORDER BY indexname;
                """) == ["customers_pkey", "idx_customers_name_lower", "idx_customers_status"])
            #expect(try await target.rows("""
                SELECT count(*) FROM pg_indexes
                WHERE schemaname = 'test_schema' AND tablename = 'customers_old'
                  AND indexname NOT IN ('customers_pkey', 'idx_customers_name_lower', 'idx_customers_status');
                """) == ["3"])
            #expect(try await target.rows("""
                SELECT conname FROM pg_constraint WHERE conrelid = 'test_schema.customers'::regclass AND contype = 'p';
                """) == ["customers_pkey"])
            #expect(try await target.rows("""
                SELECT count(*) FROM pg_constraint
                WHERE conrelid = 'test_schema.customers_old'::regclass AND contype = 'p' AND conname <> 'customers_pkey';
                """) == ["1"])
        }
    }

    // MARK: Test 5: schema cloning

    @Test("5.1 full schema clone with data")
    func fullSchemaClone() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.rows("DROP SCHEMA IF EXISTS test_schema CASCADE;")
            let message = try await target.call("""
                SELECT pgclone.schema(
                \(target.source),
                'test_schema', true
                );
                """)
            #expect(message.hasPrefix("OK: cloned schema test_schema ("), "\(message)")
            #expect(try await target.rows("SELECT tablename FROM pg_tables WHERE schemaname = 'test_schema' ORDER BY tablename;")
                    == ["customers", "employees", "order_items", "order_log", "orders"])
            #expect(try await target.rows("""
                SELECT 'customers' AS tbl, COUNT(*) FROM test_schema.customers
                UNION ALL SELECT 'orders', COUNT(*) FROM test_schema.orders
                UNION ALL SELECT 'order_items', COUNT(*) FROM test_schema.order_items
                UNION ALL SELECT 'employees', COUNT(*) FROM test_schema.employees;
                """) == ["customers|10", "orders|8", "order_items|11", "employees|5"])
            #expect(try await target.rows("SELECT viewname FROM pg_views WHERE schemaname = 'test_schema';") == ["active_customers"])
            #expect(try await target.rows("SELECT matviewname FROM pg_matviews WHERE schemaname = 'test_schema';") == ["order_summary"])
            #expect(try await target.rows("""
                SELECT routine_name FROM information_schema.routines
                WHERE routine_schema = 'test_schema' ORDER BY routine_name;
                """) == ["get_customer_orders", "log_order_change", "update_timestamp"])
            #expect(try await target.rows("SELECT sequencename FROM pg_sequences WHERE schemaname = 'test_schema' ORDER BY sequencename;")
                    == ["customers_id_seq", "employees_id_seq", "invoice_seq", "order_items_id_seq", "order_log_id_seq", "orders_id_seq"])
            #expect(try await target.rows("""
                SELECT tgname FROM pg_trigger t
                JOIN pg_class c ON t.tgrelid = c.oid
                JOIN pg_namespace n ON c.relnamespace = n.oid
                WHERE n.nspname = 'test_schema' AND NOT t.tgisinternal ORDER BY tgname;
                """) == ["trg_orders_log_change", "trg_orders_update_timestamp"])
            #expect(try await target.rows("SELECT indexname FROM pg_indexes WHERE schemaname = 'test_schema' ORDER BY indexname;")
                    == guideTestSchemaIndexes)

            // "With correct data": every table byte for byte, the view and the populated
            // materialized view as on the source, sequences at their positions, functions working.
            try await target.expectSameData(guideTestSchemaTables)
            try await target.expectSameRowsAsSource("SELECT * FROM test_schema.active_customers ORDER BY id;")
            try await target.expectSameRowsAsSource("SELECT * FROM test_schema.order_summary ORDER BY customer_id;")
            #expect(try await target.rows("SELECT nextval('test_schema.invoice_seq'), nextval('test_schema.customers_id_seq');") == ["1003|11"])
            #expect(try await target.rows("SELECT * FROM test_schema.get_customer_orders(1);")
                    == ["1|2024-02-01|120.50|delivered", "2|2024-03-15|35.00|delivered"])
            // Comments (pg_dump keeps them): table, column, function, trigger.
            try await target.expectSameRowsAsSource(guideCommentsQuery(["test_schema"]))
        }
    }

    @Test("5.2 schema clone structure only")
    func schemaStructureOnly() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.rows("DROP SCHEMA IF EXISTS test_schema CASCADE;")
            let message = try await target.call("""
                SELECT pgclone.schema(
                \(target.source),
                'test_schema', false
                );
                """)
            #expect(message.hasPrefix("OK: cloned schema test_schema ("), "\(message)")
            #expect(try await target.rows("""
                SELECT 'customers' AS tbl, COUNT(*) FROM test_schema.customers
                UNION ALL SELECT 'orders', COUNT(*) FROM test_schema.orders;
                """) == ["customers|0", "orders|0"])
            #expect(try await target.rows("SELECT tablename FROM pg_tables WHERE schemaname = 'test_schema' ORDER BY tablename;")
                    == ["customers", "employees", "order_items", "order_log", "orders"])
            #expect(try await target.rows("""
                SELECT sum(n_rows) FROM (
                  SELECT count(*) AS n_rows FROM test_schema.employees
                  UNION ALL SELECT count(*) FROM test_schema.order_items
                  UNION ALL SELECT count(*) FROM test_schema.order_log) counts;
                """) == ["0"])
        }
    }

    @Test("5.3 schema clone with JSON options (no triggers, no indexes)")
    func schemaWithJSONOptions() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.rows("DROP SCHEMA IF EXISTS test_schema CASCADE;")
            let message = try await target.call("""
                SELECT pgclone.schema(
                \(target.source),
                'test_schema', true,
                '{"triggers": false, "indexes": false}'
                );
                """)
            #expect(message.hasPrefix("OK: cloned schema test_schema ("), "\(message)")
            #expect(try await target.rows("""
                SELECT COUNT(*) FROM pg_trigger t
                JOIN pg_class c ON t.tgrelid = c.oid
                JOIN pg_namespace n ON c.relnamespace = n.oid
                WHERE n.nspname = 'test_schema' AND NOT t.tgisinternal;
                """) == ["0"])
            #expect(try await target.rows("SELECT indexname FROM pg_indexes WHERE schemaname = 'test_schema' ORDER BY indexname;")
                    == ["customers_pkey", "employees_pkey", "order_items_pkey", "order_log_pkey", "orders_pkey"])
            try await target.expectSameData(guideTestSchemaTables)
        }
    }

    @Test("5.4 pgclone.schema_ex() with boolean parameters")
    func schemaExWithBooleans() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.rows("DROP SCHEMA IF EXISTS test_schema CASCADE;")
            let message = try await target.call("""
                SELECT pgclone.schema_ex(
                \(target.source),
                'test_schema', true,
                true, -- include indexes
                false, -- skip constraints
                true -- include triggers
                );
                """)
            #expect(message.hasPrefix("OK: cloned schema test_schema ("), "\(message)")
            #expect(try await target.rows("SELECT indexname FROM pg_indexes WHERE schemaname = 'test_schema' ORDER BY indexname;")
                    == guideTestSchemaIndexes)
            #expect(try await target.rows("""
                SELECT tgname FROM pg_trigger t
                JOIN pg_class c ON t.tgrelid = c.oid
                JOIN pg_namespace n ON c.relnamespace = n.oid
                WHERE n.nspname = 'test_schema' AND NOT t.tgisinternal ORDER BY tgname;
                """) == ["trg_orders_log_change", "trg_orders_update_timestamp"])
            #expect(try await target.rows("""
                SELECT conname, contype FROM pg_constraint c
                JOIN pg_namespace n ON n.oid = c.connamespace
                WHERE n.nspname = 'test_schema' AND contype <> 'n' ORDER BY conname;
                """) == ["customers_pkey|p", "employees_pkey|p", "order_items_pkey|p", "order_log_pkey|p", "orders_pkey|p"])
            try await target.expectSameData(guideTestSchemaTables)
        }
    }

    // MARK: Test 6: function cloning

    @Test("6 function cloning into an empty schema")
    func functionCloning() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.rows("""
                DROP SCHEMA IF EXISTS test_schema CASCADE;
                CREATE SCHEMA test_schema;
                """)
            let message = try await target.call("""
                SELECT pgclone.functions(
                \(target.source),
                'test_schema'
                );
                """)
            #expect(message.hasPrefix("OK: cloned 3 functions from test_schema"), "\(message)")
            #expect(try await target.rows("""
                SELECT routine_name, routine_type FROM information_schema.routines
                WHERE routine_schema = 'test_schema' ORDER BY routine_name;
                """) == ["get_customer_orders|FUNCTION", "log_order_change|FUNCTION", "update_timestamp|FUNCTION"])
            // Functions only: no table came along.
            #expect(try await target.rows("""
                SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'test_schema' AND c.relkind IN ('r', 'p', 'v', 'm');
                """) == ["0"])
        }
    }

    // MARK: Test 7: database cloning

    @Test("7.1 clone the whole source database into the current database")
    func databaseIntoCurrent() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.rows("""
                DROP SCHEMA IF EXISTS test_schema CASCADE;
                DROP TABLE IF EXISTS public.simple_test CASCADE;
                """)
            let message = try await target.call("""
                SELECT pgclone.database(
                \(target.source),
                true
                );
                """)
            #expect(message.hasPrefix("OK: cloned database ("), "\(message)")
            #expect(try await target.rows(guideTableCountsQuery) == guideTableCounts)
            try await target.expectSameData(guideAllTables)
            #expect(try await target.rows("""
                SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'test_schema' AND NOT t.tgisinternal;
                """) == ["2"])
        }
    }

    @Test("7.2 clone the database with options (no triggers)")
    func databaseWithOptions() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.rows("""
                DROP SCHEMA IF EXISTS test_schema CASCADE;
                DROP TABLE IF EXISTS public.simple_test CASCADE;
                """)
            let message = try await target.call("""
                SELECT pgclone.database(
                \(target.source),
                true,
                '{"triggers": false}'
                );
                """)
            #expect(message.hasPrefix("OK: cloned database ("), "\(message)")
            #expect(try await target.rows(guideTableCountsQuery) == guideTableCounts)
            try await target.expectSameData(guideAllTables)
            #expect(try await target.rows("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal;") == ["0"])
        }
    }

    @Test("7.3 pgclone.database_create() into a new database, called from postgres")
    func databaseCreate() async throws {
        let environment = try TestEnvironment.require()
        await guideGate.enter()
        let newDatabase = "guide_clone_\(guideRandomSuffix())"
        let proxy: RunningProxy
        do {
            proxy = try await RunningProxy.start(environment)
        } catch {
            await guideGate.leave()
            throw error
        }
        let fromPostgres = GuideTarget(environment: environment, proxy: proxy, database: "postgres")
        var failure: (any Error)?
        do {
            let message = try await fromPostgres.call("""
                SELECT pgclone.database_create(
                \(fromPostgres.source),
                '\(newDatabase)',
                true
                );
                """)
            #expect(message.hasPrefix("OK: created database \(newDatabase) and cloned ("), "\(message)")
            // The guide's `\c db1_clone`: a new psql session through the proxy.
            let clone = GuideTarget(environment: environment, proxy: proxy, database: newDatabase)
            #expect(try await clone.rows(guideTableCountsQuery) == guideTableCounts)
            try await clone.expectSameData(guideAllTables)
        } catch {
            failure = error
        }
        try? await proxy.stop()
        _ = try? await Shell.psql(environment.directTarget(database: "postgres"), "DROP DATABASE IF EXISTS \(newDatabase) WITH (FORCE);")
        await guideGate.leave()
        if let failure { throw failure }
    }

    // MARK: Test 8: masking during clone
    //
    // employees in the fixture, by id: 1 Alice Johnson, 2 Bob Williams, 3 Carol Martinez,
    // 4 David Kim, 5 Eve Thompson (NULL phone); notes are NULL for ids 2 and 4.

    @Test("8.1 email masking")
    func emailMasking() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.cloneEmployees(into: "emp_email_masked", options: #"{"mask": {"email": "email"}}"#)
            #expect(try await target.rows("SELECT id, full_name, email FROM test_schema.emp_email_masked ORDER BY id;") == [
                "1|Alice Johnson|a***@example.com",
                "2|Bob Williams|b***@example.com",
                "3|Carol Martinez|c***@example.org",
                "4|David Kim|d***@example.net",
                "5|Eve Thompson|e***@example.com",
            ])
            try await target.expectUnmaskedEmployeeColumns(in: "emp_email_masked", except: ["email"])
        }
    }

    @Test("8.2 name masking")
    func nameMasking() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.cloneEmployees(into: "emp_name_masked", options: #"{"mask": {"full_name": "name"}}"#)
            #expect(try await target.rows("SELECT id, full_name FROM test_schema.emp_name_masked ORDER BY id;")
                    == ["1|XXXX", "2|XXXX", "3|XXXX", "4|XXXX", "5|XXXX"])
            try await target.expectUnmaskedEmployeeColumns(in: "emp_name_masked", except: ["full_name"])
        }
    }

    @Test("8.3 phone masking keeps the last four digits and NULL stays NULL")
    func phoneMasking() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.cloneEmployees(into: "emp_phone_masked", options: #"{"mask": {"phone": "phone"}}"#)
            #expect(try await target.rows("SELECT id, phone FROM test_schema.emp_phone_masked ORDER BY id;")
                    == ["1|***-4567", "2|***-5678", "3|***-6789", "4|***-0958", "5|"])
            #expect(try await target.rows("SELECT id FROM test_schema.emp_phone_masked WHERE phone IS NULL;") == ["5"])
            try await target.expectUnmaskedEmployeeColumns(in: "emp_phone_masked", except: ["phone"])
        }
    }

    @Test("8.4 hash masking is the MD5 of the value, deterministic")
    func hashMasking() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.cloneEmployees(into: "emp_hash_masked", options: #"{"mask": {"email": "hash"}}"#)
            try await target.expectSameRowsAsSource(
                target: "SELECT id, email FROM test_schema.emp_hash_masked ORDER BY id;",
                source: "SELECT id, md5(email) FROM test_schema.employees ORDER BY id;")
            #expect(try await target.rows("SELECT count(*) FROM test_schema.emp_hash_masked WHERE email ~ '^[0-9a-f]{32}$';") == ["5"])
            // Same input, same hash: a second clone gives the same values.
            try await target.cloneEmployees(into: "emp_hash_masked_again", options: #"{"mask": {"email": "hash"}}"#)
            #expect(try await target.rows("""
                SELECT count(*) FROM test_schema.emp_hash_masked a
                JOIN test_schema.emp_hash_masked_again b USING (id) WHERE a.email = b.email;
                """) == ["5"])
            try await target.expectUnmaskedEmployeeColumns(in: "emp_hash_masked", except: ["email"])
        }
    }

    @Test("8.5 null masking")
    func nullMasking() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.cloneEmployees(into: "emp_null_masked", options: #"{"mask": {"ssn": "null"}}"#)
            #expect(try await target.rows("SELECT id, ssn FROM test_schema.emp_null_masked ORDER BY id;")
                    == ["1|", "2|", "3|", "4|", "5|"])
            #expect(try await target.rows("SELECT count(*) FROM test_schema.emp_null_masked WHERE ssn IS NULL;") == ["5"])
            try await target.expectUnmaskedEmployeeColumns(in: "emp_null_masked", except: ["ssn"])
        }
    }

    @Test("8.6 partial masking (prefix 2, suffix 3)")
    func partialMasking() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.cloneEmployees(
                into: "emp_partial_masked",
                options: #"{"mask": {"full_name": {"type": "partial", "prefix": 2, "suffix": 3}}}"#)
            #expect(try await target.rows("SELECT id, full_name FROM test_schema.emp_partial_masked ORDER BY id;") == [
                "1|Al***son",
                "2|Bo***ams",
                "3|Ca***nez",
                "4|Da***Kim",
                "5|Ev***son",
            ])
            try await target.expectUnmaskedEmployeeColumns(in: "emp_partial_masked", except: ["full_name"])
        }
    }

    @Test("8.7 random integer masking stays in [min, max] and keeps the column's type")
    func randomIntMasking() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.cloneEmployees(
                into: "emp_rand_masked",
                options: #"{"mask": {"salary": {"type": "random_int", "min": 30000, "max": 150000}}}"#)
            #expect(try await target.rows("""
                SELECT count(*) FILTER (WHERE salary BETWEEN 30000 AND 150000), count(*)
                FROM test_schema.emp_rand_masked;
                """) == ["5|5"])
            #expect(try await target.rows("""
                SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                WHERE attrelid = 'test_schema.emp_rand_masked'::regclass AND attname = 'salary';
                """) == ["integer"])
            // Random, not the originals (all five equal by chance: about 1 in 10^25).
            let masked = try await target.rows("SELECT id, salary FROM test_schema.emp_rand_masked ORDER BY id;")
            let original = try await target.sourceRows("SELECT id, salary FROM test_schema.employees ORDER BY id;")
            #expect(masked.count == 5)
            #expect(masked != original)
            try await target.expectUnmaskedEmployeeColumns(in: "emp_rand_masked", except: ["salary"])
        }
    }

    @Test("8.8 constant masking, including rows whose value was NULL")
    func constantMasking() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.cloneEmployees(
                into: "emp_const_masked",
                options: #"{"mask": {"notes": {"type": "constant", "value": "REDACTED"}}}"#)
            #expect(try await target.rows("SELECT id, notes FROM test_schema.emp_const_masked ORDER BY id;")
                    == ["1|REDACTED", "2|REDACTED", "3|REDACTED", "4|REDACTED", "5|REDACTED"])
            try await target.expectUnmaskedEmployeeColumns(in: "emp_const_masked", except: ["notes"])
        }
    }

    @Test("8.9 multiple masks combined; id and created_at pass through unchanged")
    func combinedMasks() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.cloneEmployees(
                into: "emp_full_masked",
                options: #"{"mask": {"email": "email", "full_name": "name", "phone": "phone", "ssn": "null", "salary": {"type": "random_int", "min": 40000, "max": 200000}, "notes": {"type": "constant", "value": "REDACTED"}}}"#)
            #expect(try await target.rows(guideColumnNamesQuery("test_schema.emp_full_masked"))
                    == ["id", "full_name", "email", "phone", "ssn", "salary", "notes", "created_at"])
            #expect(try await target.rows("SELECT id, full_name, email, phone, ssn, notes FROM test_schema.emp_full_masked ORDER BY id;") == [
                "1|XXXX|a***@example.com|***-4567||REDACTED",
                "2|XXXX|b***@example.com|***-5678||REDACTED",
                "3|XXXX|c***@example.org|***-6789||REDACTED",
                "4|XXXX|d***@example.net|***-0958||REDACTED",
                "5|XXXX|e***@example.com|||REDACTED",
            ])
            #expect(try await target.rows("""
                SELECT count(*) FILTER (WHERE salary BETWEEN 40000 AND 200000), count(*)
                FROM test_schema.emp_full_masked;
                """) == ["5|5"])
            try await target.expectUnmaskedEmployeeColumns(
                in: "emp_full_masked", except: ["full_name", "email", "phone", "ssn", "salary", "notes"])
        }
    }

    @Test("8 NULL stays NULL under email, name, hash and partial masking")
    func maskingKeepsNull() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            // notes is the fixture's nullable text column: NULL for ids 2 and 4.
            let strategies: [(table: String, mask: String)] = [
                ("emp_notes_email", #""email""#),
                ("emp_notes_name", #""name""#),
                ("emp_notes_hash", #""hash""#),
                ("emp_notes_partial", #"{"type": "partial", "prefix": 2, "suffix": 3}"#),
            ]
            for strategy in strategies {
                try await target.cloneEmployees(into: strategy.table, options: #"{"mask": {"notes": "# + strategy.mask + "}}")
                #expect(try await target.rows("SELECT id FROM test_schema.\(strategy.table) WHERE notes IS NULL ORDER BY id;") == ["2", "4"],
                        "\(strategy.table)")
            }
            #expect(try await target.rows("SELECT id, notes FROM test_schema.emp_notes_name ORDER BY id;")
                    == ["1|XXXX", "2|", "3|XXXX", "4|", "5|XXXX"])
            #expect(try await target.rows("SELECT id, notes FROM test_schema.emp_notes_partial ORDER BY id;")
                    == ["1|Te***end", "2|", "3|On***ave", "4|", "5|Co***025"])
            try await target.expectSameRowsAsSource(
                target: "SELECT id, notes FROM test_schema.emp_notes_hash ORDER BY id;",
                source: "SELECT id, md5(notes) FROM test_schema.employees ORDER BY id;")
            // The email strategy on values that are not addresses: still masked, never the original.
            let masked = try await target.rows("SELECT notes FROM test_schema.emp_notes_email WHERE notes IS NOT NULL ORDER BY id;")
            let original = try await target.sourceRows("SELECT notes FROM test_schema.employees WHERE notes IS NOT NULL ORDER BY id;")
            #expect(masked.count == 3)
            for (maskedValue, originalValue) in zip(masked, original) {
                #expect(maskedValue != originalValue)
            }
        }
    }

    // MARK: Test 18: edge cases and error handling
    //
    // Each failing call runs alone; afterwards nothing it would have created exists.

    @Test("18.1 unreachable source: 08001, nothing created, no password in the error")
    func unreachableSource() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            let output = try await target.expectError("""
                SELECT pgclone.table(
                'host=127.0.0.1 port=1 dbname=nonexistent user=postgres password=wrong connect_timeout=2',
                'public', 'test', true
                );
                """, sqlState: "08001", message: "could not connect to source:", prefix: true)
            #expect(!output.stderr.contains("password=wrong"), "\(output.stderr)")
            #expect(try await target.rows("SELECT to_regclass('public.test') IS NULL;") == ["t"])
        }
    }

    @Test("18.2 table missing on the source: 42P01")
    func missingTable() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.expectError("""
                SELECT pgclone.table(
                \(target.source),
                'test_schema', 'this_table_does_not_exist', true
                );
                """, sqlState: "42P01", message: #"relation "test_schema.this_table_does_not_exist" does not exist on source"#)
            #expect(try await target.rows("SELECT to_regclass('test_schema.this_table_does_not_exist') IS NULL;") == ["t"])
            // A failed call leaves the target as it was: not even the schema was created.
            #expect(try await target.rows("SELECT to_regnamespace('test_schema') IS NULL;") == ["t"])
        }
    }

    @Test("18.3 schema missing on the source: 3F000")
    func missingSchema() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.expectError("""
                SELECT pgclone.schema(
                \(target.source),
                'nonexistent_schema', true
                );
                """, sqlState: "3F000", message: #"schema "nonexistent_schema" does not exist on source"#)
            #expect(try await target.rows("SELECT to_regnamespace('nonexistent_schema') IS NULL;") == ["t"])
        }
    }

    @Test("18.4 SQL injection in the WHERE filter is rejected: 42601, nothing runs")
    func whereInjection() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.cloneCustomers()
            try await target.expectError("""
                SELECT pgclone.table(
                \(target.source),
                'test_schema', 'customers', true,
                'injection_test',
                '{"where": "1=1; DROP TABLE test_schema.customers; --"}'
                );
                """, sqlState: "42601", message: #"invalid "where" filter:"#, prefix: true)
            #expect(try await target.rows("SELECT to_regclass('test_schema.injection_test') IS NULL;") == ["t"])
            #expect(try await target.rows("SELECT COUNT(*) FROM test_schema.customers;") == ["10"])
            #expect(try await target.sourceRows("SELECT COUNT(*) FROM test_schema.customers;") == ["10"])

            // Closing the parenthesis of COPY (SELECT ... WHERE ...) to reach TO PROGRAM
            // (the source server runs on this machine, so the file would appear here).
            let marker = "/tmp/pgclone-guide-injection-\(guideRandomSuffix())"
            let filter = "1=1) TO PROGRAM 'touch \(marker)' --"
            try await target.expectError("""
                SELECT pgclone.table(
                \(target.source),
                'test_schema', 'customers', true,
                'injection_test',
                \(guideSQLLiteral(#"{"where": ""# + filter + #""}"#))
                );
                """, sqlState: "42601", message: #"invalid "where" filter:"#, prefix: true)
            #expect(!FileManager.default.fileExists(atPath: marker))
            #expect(try await target.rows("SELECT to_regclass('test_schema.injection_test') IS NULL;") == ["t"])
            #expect(try await target.sourceRows("SELECT COUNT(*) FROM test_schema.customers;") == ["10"])
            // Parentheses that balance only inside the clone's own: each range of a split copy,
            // ANDed to the filter, was ORed away (round 37: every row copied twice). Clauses that
            // parse only outside them are refused too.
            for filter in ["score > 5) OR (false", "true ORDER BY 1", "id > 0) AND (true"] {
                let refused = try await target.expectError("""
                    SELECT pgclone.table(\(target.source), 'test_schema', 'customers', true, 'injection_test',
                    \(guideSQLLiteral(#"{"where": ""# + filter + #"", "parallel": 2, "split_larger_than": "1"}"#)));
                    """, sqlState: "42601", message: #"invalid "where" filter:"#, prefix: true)
                #expect(filter.contains("ORDER") || refused.stderr.contains("on its own"), "\(filter): \(refused.stderr)")
            }
            #expect(try await target.rows("SELECT to_regclass('test_schema.injection_test') IS NULL;") == ["t"])
            // A filter that stands on its own, with parentheses of its own, still works.
            #expect(try await target.call("""
                SELECT pgclone.table(\(target.source), 'test_schema', 'customers', true, 'filtered', '{"where": "(score > 5) OR (id = 1)"}');
                """).hasPrefix("OK: cloned test_schema.customers to test_schema.filtered"))
        }
    }

    @Test("18.5 unknown mask strategy: 22023, nothing created")
    func unknownMaskStrategy() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.expectError("""
                SELECT pgclone.table(
                \(target.source),
                'test_schema', 'employees', true,
                'emp_bad_mask',
                '{"mask": {"email": "nonexistent_strategy"}}'
                );
                """, sqlState: "22023", message: #"unknown mask strategy "nonexistent_strategy" for column "email""#)
            #expect(try await target.rows("SELECT to_regclass('test_schema.emp_bad_mask') IS NULL;") == ["t"])
        }
    }

    @Test("18.6 invalid JSON options: 22P02, nothing created")
    func invalidJSONOptions() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            try await target.expectError("""
                SELECT pgclone.table(
                \(target.source),
                'test_schema', 'customers', true,
                'json_test',
                '{"invalid json'
                );
                """, sqlState: "22P02", message: "invalid JSON in options:", prefix: true)
            #expect(try await target.rows("SELECT to_regclass('test_schema.json_test') IS NULL;") == ["t"])
        }
    }

    // MARK: Fixture hard cases

    @Test("hard_cases and \"Mixed Case\" schemas round-trip byte for byte")
    func hardCasesRoundTrip() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            let hardCases = try await target.call("SELECT pgclone.schema(\(target.source), 'hard_cases', true);")
            #expect(hardCases.hasPrefix("OK: cloned schema hard_cases ("), "\(hardCases)")
            let mixedCase = try await target.call("SELECT pgclone.schema(\(target.source), 'Mixed Case', true);")
            #expect(mixedCase.hasPrefix("OK: cloned schema "), "\(mixedCase)")
            #expect(mixedCase.contains("Mixed Case"), "\(mixedCase)")

            try await target.expectSameData(guideHardCasesTables + guideMixedCaseTables)
            try await target.expectSameData([#"hard_cases.mood_stats"#, #""Mixed Case"."Line View""#])
            // Comments on the schema, tables, columns, types, domains, sequences, indexes and constraints.
            try await target.expectSameRowsAsSource(guideCommentsQuery(["hard_cases", "Mixed Case"]))
            #expect(try await target.rows("SELECT count(*) FROM (\(guideCommentsQuery(["hard_cases"]).dropLast())) c;") == ["8"])
            // Storage parameters, per-column statistics targets and storage, row-level security and its policies.
            try await target.expectSameRowsAsSource("""
                SELECT c.relname, c.reloptions::text, c.relrowsecurity, c.relforcerowsecurity
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'hard_cases' AND c.relkind IN ('r', 'p') ORDER BY 1;
                SELECT c.relname, a.attname, a.attstattarget, a.attstorage
                FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'hard_cases' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1, 2;
                SELECT p.polname, p.polpermissive, p.polcmd, p.polroles::regrole[]::text, pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
                FROM pg_policy p WHERE p.polrelid = 'hard_cases.tenant_notes'::regclass ORDER BY 1;
                """)
            #expect(try await target.rows("SELECT count(*) FROM pg_policy WHERE polrelid = 'hard_cases.tenant_notes'::regclass;") == ["2"])
            // Column definitions (types with typmods, domains, NOT NULL, identity, generated,
            // defaults), indexes and constraints as on the source.
            try await target.expectSameRowsAsSource("""
                SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                       a.attidentity, a.attgenerated, coalesce(pg_get_expr(d.adbin, d.adrelid), '')
                FROM pg_attribute a
                JOIN pg_class c ON c.oid = a.attrelid
                JOIN pg_namespace n ON n.oid = c.relnamespace
                LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                WHERE n.nspname IN ('hard_cases', 'Mixed Case') AND c.relkind IN ('r', 'p')
                  AND a.attnum > 0 AND NOT a.attisdropped
                ORDER BY n.nspname COLLATE "C", c.relname COLLATE "C", a.attnum;
                """)
            try await target.expectSameRowsAsSource("""
                SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes
                WHERE schemaname IN ('hard_cases', 'Mixed Case')
                ORDER BY schemaname COLLATE "C", indexname COLLATE "C";
                """)
            try await target.expectSameRowsAsSource("""
                SELECT n.nspname, c.conrelid::regclass, c.contypid::regtype, c.conname, pg_get_constraintdef(c.oid)
                FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
                WHERE n.nspname IN ('hard_cases', 'Mixed Case') AND c.contype <> 'n'
                ORDER BY n.nspname COLLATE "C", c.conname COLLATE "C";
                """)
            #expect(try await target.rows("SELECT enumlabel FROM pg_enum WHERE enumtypid = 'hard_cases.mood'::regtype ORDER BY enumsortorder;")
                    == ["sad", "ok", "happy", "very happy"])
            // Identity and sequence positions came along (the source has a gap: id 6 and ticket 1025 were used).
            #expect(try await target.rows("INSERT INTO hard_cases.everything (label) VALUES ('guide insert') RETURNING id, ticket, total;")
                    == ["7|1030|"])
            #expect(try await target.rows("""
                INSERT INTO hard_cases.bookings (room, during)
                VALUES ('C', '[2020-01-01 00:00+00, 2020-01-02 00:00+00)') RETURNING id;
                """) == ["4"])
            #expect(try await target.rows(#"INSERT INTO "Mixed Case"."Order Heads" ("Customer") VALUES ('new') RETURNING "Head Id";"#)
                    == ["4"])
        }
    }

    // MARK: Extended query protocol

    @Test("extended protocol: clone calls with bound parameters through psycopg")
    func extendedProtocolThroughPsycopg() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
                .appendingPathComponent("python/guide_extended.py").path
            let output = try await Shell.run(["python3", script], environment: [
                "PGHOST": "127.0.0.1", "PGPORT": "\(target.proxy.port)", "PGUSER": "postgres",
                "PGPASSWORD": target.environment.password, "PGDATABASE": target.database, "PGSSLMODE": "disable",
                "GUIDE_SOURCE": guideSourceConnInfo(target.environment),
            ], timeout: 180)
            #expect(output.status == 0, "\(output.stdout)\n\(output.stderr)")
            #expect(output.stdout.components(separatedBy: "\n") == [
                "version: pgclone 3.6.0 (25)",
                "table: OK: cloned test_schema.customers (10 rows) (25)",
                "skip: OK: skipped test_schema.customers (already exists)",
                "backup: OK: cloned test_schema.customers to test_schema.customers_backup (10 rows)",
                "counts: 10 10",
                #"error: 42P01 relation "test_schema.this_table_does_not_exist" does not exist on source"#,
                "after error: 1",
                "",
            ], "\(output.stdout)\n\(output.stderr)")
        }
    }
}

// MARK: - Fixture facts

/// Tables of test_schema in the fixture (order_log is written by the orders trigger).
let guideTestSchemaTables = [
    "test_schema.customers", "test_schema.orders", "test_schema.order_items", "test_schema.order_log", "test_schema.employees",
]
private let guideHardCasesTables = [
    "hard_cases.everything", #"hard_cases."select""#, "hard_cases.events", "hard_cases.events_2023",
    "hard_cases.events_2024", "hard_cases.events_default", "hard_cases.bookings", "hard_cases.no_pk",
    "hard_cases.blobs", "hard_cases.tenant_notes",
]
private let guideMixedCaseTables = [#""Mixed Case"."Order Heads""#, #""Mixed Case"."Order Lines""#]
private let guideAllTables = guideTestSchemaTables + ["public.simple_test"] + guideHardCasesTables + guideMixedCaseTables

/// Every index of test_schema, including the materialized view's unique index.
private let guideTestSchemaIndexes = [
    "customers_pkey", "employees_pkey", "idx_customers_name_lower", "idx_customers_status",
    "idx_order_summary_customer", "idx_orders_customer_id", "order_items_pkey", "order_log_pkey", "orders_pkey",
]

/// Guide 7's per-schema table count, with ORDER BY (the guide's 7.3 query has none).
private let guideTableCountsQuery = """
    SELECT schemaname, COUNT(*) AS table_count
    FROM pg_tables
    WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
    GROUP BY schemaname ORDER BY schemaname;
    """
/// pg_tables lists partitioned tables and their partitions: hard_cases has events and three partitions.
private let guideTableCounts = ["Mixed Case|2", "hard_cases|10", "public|1", "test_schema|5"]

/// Every comment on an object of `schemas` (or on the schemas themselves), by the object's description.
private func guideCommentsQuery(_ schemas: [String]) -> String {
    let list = schemas.map(guideSQLLiteral).joined(separator: ", ")
    return """
        SELECT pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description
        FROM pg_description d, LATERAL pg_identify_object(d.classoid, d.objoid, d.objsubid) o
        WHERE o.schema IN (\(list)) OR (o.type = 'schema' AND o.identity IN (\(schemas.map { "quote_ident(\(guideSQLLiteral($0)))" }.joined(separator: ", "))))
        ORDER BY 1;
        """
}

private func guideColumnsQuery(_ table: String) -> String {
    """
    SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute
    WHERE attrelid = '\(table)'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;
    """
}

private func guideColumnNamesQuery(_ table: String) -> String {
    "SELECT attname FROM pg_attribute WHERE attrelid = '\(table)'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;"
}

// MARK: - Harness

/// The source as the guide's first argument: `host=... dbname=db1 user=postgres password=...`.
/// Loopback only: the guide's 172.17.x addresses are never used.
func guideSourceConnInfo(_ environment: TestEnvironment) -> String {
    "host=127.0.0.1 port=\(environment.sourcePort) dbname=db1 user=postgres password=\(environment.password)"
}

func guideSQLLiteral(_ value: String) -> String {
    "'" + value.replacingOccurrences(of: "'", with: "''") + "'"
}

func guideRandomSuffix() -> String {
    String(UInt64.random(in: 0...UInt64.max), radix: 36)
}

/// Session settings that make a row's text form the same on both servers.
let guideStableOutput = """
    SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres';
    SET extra_float_digits = 1; SET bytea_output = 'hex';

    """

/// Bounds how many guide tests clone at once (each has a proxy, psql sessions and
/// source/target connections; the machine has two cores).
actor GuideGate {
    private var available: Int
    private var waiting: [CheckedContinuation<Void, Never>] = []

    init(_ capacity: Int) { available = capacity }

    func enter() async {
        if available > 0 {
            available -= 1
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    func leave() {
        if waiting.isEmpty {
            available += 1
        } else {
            waiting.removeFirst().resume()
        }
    }
}

let guideGate = GuideGate(3)

/// Creates a fresh target database, starts a proxy, runs `body`, then stops the proxy
/// and drops the database (also when `body` fails).
///
/// Callers spell the closure type out (`{ (target: GuideTarget) async throws in`): a `try`
/// that only appears inside `#expect(...)` does not make an inferred closure throwing.
func withGuideTarget(runsJobs: Bool = false, _ body: (GuideTarget) async throws -> Void) async throws {
    let environment = try TestEnvironment.require()
    await guideGate.enter()
    let database = "guide_\(guideRandomSuffix())"
    let admin = environment.directTarget(database: "postgres")
    var failure: (any Error)?
    var proxy: RunningProxy?
    do {
        let created = try await Shell.psql(admin, "CREATE DATABASE \(database);")
        try #require(created.status == 0, "CREATE DATABASE \(database): \(created.stderr)")
        // Proxies running jobs keep them in the state database of the binaries tests launch (a
        // proxy killed by a job test would otherwise look after other tests' policies meanwhile).
        if runsJobs { try await TargetRoles.ensure() }
        let running = try await RunningProxy.start(environment, runsJobs: runsJobs) { configuration in
            if runsJobs { configuration.stateDatabase = TargetRoles.cliStateDatabase }
        }
        proxy = running
        try await body(GuideTarget(environment: environment, proxy: running, database: database))
    } catch {
        failure = error
    }
    try? await proxy?.stop()
    let dropped = try? await Shell.psql(admin, "DROP DATABASE IF EXISTS \(database) WITH (FORCE);")
    await guideGate.leave()
    if let failure { throw failure }
    #expect(dropped?.status == 0, "DROP DATABASE \(database): \(dropped?.stderr ?? "psql did not run")")
}

/// One target database reached through the proxy, as the guide's psql session on Server 2.
struct GuideTarget: Sendable {
    let environment: TestEnvironment
    let proxy: RunningProxy
    let database: String

    /// psql through the proxy to this test's database, as superuser postgres.
    var conninfo: String { environment.throughProxy(proxy.port, database: database) }

    /// The guide's source connection string as an SQL literal.
    var source: String { guideSQLLiteral(guideSourceConnInfo(environment)) }

    var sourceConnInfo: String { guideSourceConnInfo(environment) + " connect_timeout=10" }

    /// Runs SQL (through the proxy unless `on` says otherwise), requires success and returns
    /// the output rows: one per line, columns separated by `|`, NULL as nothing.
    @discardableResult
    func rows(_ sql: String, on conninfo: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) async throws -> [String] {
        let output = try await Shell.psql(conninfo ?? self.conninfo, sql)
        try #require(output.status == 0, "psql failed (\(output.status)): \(output.stderr)\nSQL: \(sql)", sourceLocation: sourceLocation)
        return guideLines(output.stdout)
    }

    /// An admin call returning one text value.
    func call(_ sql: String, sourceLocation: SourceLocation = #_sourceLocation) async throws -> String {
        let lines = try await rows(sql, sourceLocation: sourceLocation)
        try #require(lines.count == 1, "expected one row, got \(lines)\nSQL: \(sql)", sourceLocation: sourceLocation)
        return lines[0]
    }

    /// Direct superuser connection to the target (not through the proxy).
    func direct(_ sql: String, database: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        try await rows(sql, on: environment.directTarget(database: database), sourceLocation: sourceLocation)
    }

    /// Rows of a query run directly on the source db1.
    func sourceRows(_ sql: String, sourceLocation: SourceLocation = #_sourceLocation) async throws -> [String] {
        try await rows(sql, on: sourceConnInfo, sourceLocation: sourceLocation)
    }

    /// Runs `sql` alone with ON_ERROR_STOP and verbose errors; expects it to fail with
    /// `ERROR:  <sqlState>: <message>` (the whole message, or its beginning with `prefix`;
    /// any message when `message` is nil).
    @discardableResult
    func expectError(_ sql: String, sqlState: String, message: String? = nil, prefix: Bool = false, on conninfo: String? = nil,
                     sourceLocation: SourceLocation = #_sourceLocation) async throws -> Shell.Output {
        let output = try await Shell.psql(conninfo ?? self.conninfo, "\\set VERBOSITY verbose\n" + sql)
        #expect(output.status != 0, "expected an error, got: \(output.stdout)\nSQL: \(sql)", sourceLocation: sourceLocation)
        let reported = guideReportedError(output.stderr)
        let expected = "\(sqlState): \(message ?? "")"
        if let message, !prefix {
            #expect(reported == "\(sqlState): \(message)", "stderr: \(output.stderr)", sourceLocation: sourceLocation)
        } else {
            #expect(reported?.hasPrefix(expected) == true, "expected ERROR:  \(expected)…, stderr: \(output.stderr)", sourceLocation: sourceLocation)
        }
        return output
    }

    /// Same rows from the source's db1 and from the target through the proxy.
    func expectSameRowsAsSource(target targetSQL: String, source sourceSQL: String,
                                sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let expected = try await sourceRows(guideStableOutput + sourceSQL, sourceLocation: sourceLocation)
        let actual = try await rows(guideStableOutput + targetSQL, sourceLocation: sourceLocation)
        #expect(!expected.isEmpty, "no rows on the source for \(sourceSQL)", sourceLocation: sourceLocation)
        #expect(actual == expected, "target rows differ from the source\nSQL: \(targetSQL)", sourceLocation: sourceLocation)
    }

    func expectSameRowsAsSource(_ sql: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        try await expectSameRowsAsSource(target: sql, source: sql, sourceLocation: sourceLocation)
    }

    /// Row count and md5 of the ordered whole-row text of each relation, source vs target.
    func expectSameData(_ relations: [String], sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let sql = relations.map { relation in
            "SELECT \(guideSQLLiteral(relation)), count(*), md5(string_agg(t::text, '|' ORDER BY t::text COLLATE \"C\")) FROM \(relation) t;"
        }.joined(separator: "\n")
        try await expectSameRowsAsSource(sql, sourceLocation: sourceLocation)
    }

    /// Guide 2.1: clones test_schema.customers with its data.
    func cloneCustomers(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let message = try await call("""
            SELECT pgclone.table(
            \(source),
            'test_schema', 'customers', true
            );
            """, sourceLocation: sourceLocation)
        #expect(message == "OK: cloned test_schema.customers (10 rows)", sourceLocation: sourceLocation)
    }

    /// Guide 8.x: clones test_schema.employees (5 rows) under another name with options.
    func cloneEmployees(into name: String, options: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let message = try await call("""
            SELECT pgclone.table(
            \(source),
            'test_schema', 'employees', true,
            '\(name)',
            \(guideSQLLiteral(options))
            );
            """, sourceLocation: sourceLocation)
        #expect(message == "OK: cloned test_schema.employees to test_schema.\(name) (5 rows)", sourceLocation: sourceLocation)
    }

    /// The columns a mask did not name (always including id and created_at) equal the source's.
    func expectUnmaskedEmployeeColumns(in table: String, except masked: Set<String>,
                                       sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let columns = ["id", "full_name", "email", "phone", "ssn", "salary", "notes", "created_at"].filter { !masked.contains($0) }
        let list = columns.joined(separator: ", ")
        try await expectSameRowsAsSource(
            target: "SELECT \(list) FROM test_schema.\(table) ORDER BY id;",
            source: "SELECT \(list) FROM test_schema.employees ORDER BY id;",
            sourceLocation: sourceLocation)
    }
}

func guideLines(_ stdout: String) -> [String] {
    var lines = stdout.components(separatedBy: "\n")
    if lines.last == "" { lines.removeLast() }
    return lines
}

/// The text after `ERROR:  ` on the first error line psql printed (`psql:<stdin>:N: ERROR:  ...`).
func guideReportedError(_ stderr: String) -> String? {
    for line in stderr.components(separatedBy: "\n") {
        if let range = line.range(of: "ERROR:  ") {
            return String(line[range.upperBound...])
        }
    }
    return nil
}
