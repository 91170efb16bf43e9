import Foundation
import Masking
import PQ
import Proxy
import Testing

/// Guide tests 9, 10, 11 and 14 through the proxy, each in a fresh target database.
@Suite struct GuideMaskingTests {
    private func source(_ environment: TestEnvironment) -> String {
        "host=127.0.0.1 port=\(environment.sourcePort) dbname=db1 user=postgres password=\(environment.password)"
    }

    private func withTarget(_ body: (TestEnvironment, String) async throws -> Void) async throws {
        let environment = try TestEnvironment.require()
        let database = "gmask_\(UInt32.random(in: 0...UInt32.max))"
        let admin = try await PQConnection.connect(environment.directTarget())
        try await admin.exec("CREATE DATABASE \(database)")
        // Roles are cluster-wide: created once for all tests (guide 11.1 creates data_admin).
        try await TargetRoles.ensure()
        let proxy = try await RunningProxy.start(environment)
        do {
            try await body(environment, environment.throughProxy(proxy.port, database: database))
        } catch {
            try? await proxy.stop()
            _ = try? await admin.exec("DROP DATABASE \(database) WITH (FORCE)")
            throw error
        }
        try await proxy.stop()
        try await admin.exec("DROP DATABASE \(database) WITH (FORCE)")
    }

    @Test func test9DiscoverSensitiveGivesUsableMaskOptions() async throws {
        try await withTarget { environment, conninfo in
            let output = try await Shell.psql(conninfo, "SELECT pgclone.discover_sensitive('\(source(environment))', 'test_schema');")
            #expect(output.stdout == #"{"customers": {"email": "email", "name": "name"}, "employees": {"email": "email", "full_name": "name", "phone": "phone", "salary": {"max": 200000, "min": 30000, "type": "random_int"}, "ssn": "null"}}"# + "\n", "\(output.stderr)")
            // The employees object works as-is as a mask option.
            let employees = #"{"email": "email", "full_name": "name", "phone": "phone", "salary": {"max": 200000, "min": 30000, "type": "random_int"}, "ssn": "null"}"#
            let clone = try await Shell.psql(conninfo, """
                SELECT pgclone.table('\(source(environment))', 'test_schema', 'employees', true, 'emp_discovered', '{"mask": \(employees)}');
                SELECT count(*) FILTER (WHERE full_name = 'XXXX' AND ssn IS NULL AND salary BETWEEN 30000 AND 200000) FROM test_schema.emp_discovered;
                """)
            #expect(clone.stdout == "OK: cloned test_schema.employees to test_schema.emp_discovered (5 rows)\n5\n", "\(clone.stderr)")
        }
    }

    /// Each strategy's expression on awkward values, evaluated by the server itself.
    @Test func strategiesOnEdgeValues() async throws {
        let environment = try TestEnvironment.require()
        let connection = try await PQConnection.connect(environment.directTarget())
        let values = "(VALUES (1, 'alice@example.com'), (2, 'no-at-sign'), (3, ''), (4, '@example.com'), (5, 'a@b@c.org'), (6, NULL), (7, 'ü@ß.de')) v(n, e)"
        func masked(_ strategy: MaskStrategy, type: String = "text") async throws -> [String] {
            let result = try await connection.exec("SELECT coalesce(\(strategy.expression(for: "e", type: type)), '<null>') FROM \(values) ORDER BY n")
            return (0..<result.rows.count).map { result.string($0, 0) ?? "?" }
        }
        #expect(try await masked(.email) == ["a***@example.com", "***", "***", "***", "a***@c.org", "<null>", "ü***@ß.de"])
        #expect(try await masked(.email, type: "character varying(5)") == ["a***@", "***", "***", "***", "a***@", "<null>", "ü***@"])
        #expect(try await masked(.phone) == ["***-.com", "***-sign", "***-", "***-.com", "***-.org", "<null>", "***-ß.de"])
        #expect(try await masked(.name) == ["XXXX", "XXXX", "XXXX", "XXXX", "XXXX", "<null>", "XXXX"])
        #expect(try await masked(.partial(prefix: 1, suffix: 1)) == ["a***m", "n***n", "", "@***m", "a***g", "<null>", "ü***e"])
    }

    @Test func additionalStrategiesRunOnTheServer() async throws {
        try await withTarget { environment, conninfo in
            let mask = #"{"mask": {"phone": "card_last4", "created_at": {"type": "truncate_date", "to": "year"}, "notes": {"type": "regex_replace", "pattern": "[aeiou]", "replacement": "*"}}}"#
            let output = try await Shell.psql(conninfo, """
                SELECT pgclone.table('\(source(environment))', 'test_schema', 'employees', true, 'emp_more', '\(mask)');
                SET TimeZone = 'UTC';
                SELECT phone, created_at, notes FROM test_schema.emp_more WHERE id = 1;
                """)
            #expect(output.stdout == """
                OK: cloned test_schema.employees to test_schema.emp_more (5 rows)
                XXXX-XXXX-XXXX-4567|2023-01-01 00:00:00+00|T**m l**d, b*ck*nd

                """, "\(output.stderr)")
        }
    }

    @Test func keyedStrategiesAreDeterministicAcrossTables() async throws {
        try await withTarget { environment, conninfo in
            let mask = #"{"mask": {"email": "pseudonym", "full_name": "fake_name", "salary": {"type": "noise", "percent": 10}}}"#
            let output = try await Shell.psql(conninfo, """
                SELECT pgclone.table('\(source(environment))', 'test_schema', 'employees', true, 'emp_a', '\(mask)') IS NOT NULL;
                SELECT pgclone.table('\(source(environment))', 'test_schema', 'employees', true, 'emp_b', '\(mask)') IS NOT NULL;
                SELECT count(*) FROM test_schema.emp_a a JOIN test_schema.emp_b b ON a.email = b.email AND a.full_name = b.full_name AND a.salary = b.salary;
                SELECT bool_and(length(email) = 64 AND email ~ '^[0-9a-f]+$' AND email <> 'alice@example.com') FROM test_schema.emp_a;
                SELECT bool_and(full_name ~ '^[A-Z][a-z]+ [A-Z][a-z]+$' AND full_name NOT IN ('Alice Johnson', 'Bob Williams')) FROM test_schema.emp_a;
                SELECT salary BETWEEN 85500 AND 104500 FROM test_schema.emp_a WHERE id = 1;
                """)
            #expect(output.stdout == "t\nt\n5\nt\nt\nt\n", "\(output.stderr)")
        }
    }

    @Test func test10MaskInPlace() async throws {
        try await withTarget { environment, conninfo in
            let output = try await Shell.psql(conninfo, """
                SELECT pgclone.table('\(source(environment))', 'test_schema', 'employees', true, 'emp_for_static_mask');
                SELECT full_name, email, ssn FROM test_schema.emp_for_static_mask WHERE id = 1;
                SELECT pgclone.mask_in_place('test_schema', 'emp_for_static_mask', '{"email": "email", "full_name": "name", "ssn": "null"}');
                SELECT full_name, email, ssn IS NULL FROM test_schema.emp_for_static_mask ORDER BY id;
                """)
            #expect(output.stdout == """
                OK: cloned test_schema.employees to test_schema.emp_for_static_mask (5 rows)
                Alice Johnson|alice@example.com|123-45-6789
                OK: masked 5 rows in test_schema.emp_for_static_mask (3 columns)
                XXXX|a***@example.com|t
                XXXX|b***@example.com|t
                XXXX|c***@example.org|t
                XXXX|d***@example.net|t
                XXXX|e***@example.com|t

                """, "\(output.stderr)")
            let bad = try await Shell.run(["psql", "-X", "-v", "VERBOSITY=verbose", "-d", conninfo, "-c",
                                           "SELECT pgclone.mask_in_place('test_schema', 'emp_for_static_mask', '{\"nope\": \"email\"}')"])
            #expect(bad.stderr.contains("ERROR:  42703: column \"nope\" of relation \"test_schema.emp_for_static_mask\" does not exist"), "\(bad.stderr)")
        }
    }

    @Test func test11DynamicMaskingPolicyViewAndRoles() async throws {
        try await withTarget { environment, conninfo in
            let output = try await Shell.psql(conninfo, """
                SELECT pgclone.table('\(source(environment))', 'test_schema', 'employees', true);
                SELECT pgclone.create_masking_policy('test_schema', 'employees', '{"email": "email", "full_name": "name", "ssn": "null", "salary": {"type": "random_int", "min": 40000, "max": 200000}}', 'data_admin');
                SELECT full_name, email, ssn IS NULL, salary BETWEEN 40000 AND 200000 FROM test_schema.employees_masked WHERE id = 1;
                SELECT full_name, email, ssn, salary FROM test_schema.employees WHERE id = 1;
                SET ROLE data_admin;
                SELECT full_name, email, ssn FROM test_schema.employees WHERE id = 1;
                RESET ROLE;
                SELECT pgclone.drop_masking_policy('test_schema', 'employees');
                SELECT count(*) FROM pg_views WHERE schemaname = 'test_schema' AND viewname = 'employees_masked';
                """)
            #expect(output.stdout == """
                OK: cloned test_schema.employees (5 rows)
                OK: masking policy on test_schema.employees for 4 columns; view test_schema.employees_masked created; role data_admin sees real values
                XXXX|a***@example.com|t|t
                Alice Johnson|alice@example.com|123-45-6789|95000
                Alice Johnson|alice@example.com|123-45-6789
                OK: dropped masking policy on test_schema.employees; view test_schema.employees_masked dropped; previous grants restored
                0

                """, "\(output.stderr)")
        }
    }

    @Test func test11PolicyMasksTheBaseTableForOtherRolesThroughTheProxy() async throws {
        try await withTarget { environment, conninfo in
            let role = "reader_\(UInt32.random(in: 0...UInt32.max))"
            let setup = try await Shell.psql(conninfo, """
                CREATE ROLE \(role) LOGIN PASSWORD 'pw';
                SELECT pgclone.table('\(source(environment))', 'test_schema', 'employees', true) IS NOT NULL;
                GRANT USAGE ON SCHEMA test_schema TO \(role);
                GRANT SELECT ON test_schema.employees TO \(role);
                SELECT pgclone.create_masking_policy('test_schema', 'employees', '{"email": "email", "ssn": "null"}', 'data_admin') IS NOT NULL;
                """)
            #expect(setup.status == 0, "\(setup.stderr)")
            let asReader = conninfo.replacingOccurrences(of: "user=postgres password=\(environment.password)", with: "user=\(role) password=pw")
            let masked = try await Shell.psql(asReader, "SELECT email, ssn IS NULL FROM test_schema.employees WHERE id = 2;")
            #expect(masked.stdout == "b***@example.com|t\n", "\(masked.stderr)")
            let restored = try await Shell.psql(conninfo, """
                SELECT pgclone.drop_masking_policy('test_schema', 'employees') IS NOT NULL;
                SELECT has_table_privilege('\(role)', 'test_schema.employees', 'SELECT');
                DROP OWNED BY \(role); DROP ROLE \(role);
                """)
            #expect(restored.stdout == "t\nt\n", "grants that existed before the policy come back: \(restored.stderr)")
        }
    }

    @Test func test14MaskingReportBeforeAndAfterAPolicy() async throws {
        try await withTarget { environment, conninfo in
            let query = "SELECT table_name, column_name, sensitivity, mask_status FROM pgclone.masking_report('test_schema') WHERE table_name = 'employees' ORDER BY column_name;"
            let output = try await Shell.psql(conninfo, """
                SELECT pgclone.table('\(source(environment))', 'test_schema', 'employees', true) IS NOT NULL;
                \(query)
                SELECT pgclone.create_masking_policy('test_schema', 'employees', '{"email": "email", "full_name": "name", "ssn": "null"}', 'data_admin') IS NOT NULL;
                \(query)
                SELECT pgclone.drop_masking_policy('test_schema', 'employees') IS NOT NULL;
                """)
            #expect(output.stdout == """
                t
                employees|email|Email|UNMASKED
                employees|full_name|PII - Name|UNMASKED
                employees|phone|Phone|UNMASKED
                employees|salary|Financial|UNMASKED
                employees|ssn|National ID|UNMASKED
                t
                employees|email|Email|MASKED (view)
                employees|full_name|PII - Name|MASKED (view)
                employees|phone|Phone|UNMASKED
                employees|salary|Financial|UNMASKED
                employees|ssn|National ID|MASKED (view)
                t

                """, "\(output.stderr)")
        }
    }
}
