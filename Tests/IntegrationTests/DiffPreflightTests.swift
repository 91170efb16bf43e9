import Foundation
import JSON
import Testing

/// pgclone.diff and pgclone.preflight through the proxy, and their command-line forms.
@Suite struct DiffPreflightTests {
    /// The names listed under `category` / `key` of diff's JSON.
    static func names(_ json: JSONNode, _ category: String, _ key: String) -> [String] {
        json[category]?[key]?.array.compactMap { $0.string ?? $0["name"]?.string } ?? []
    }

    @Test func diffAfterAClone() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            _ = try await target.call("SELECT pgclone.schema(\(target.source), 'test_schema', true);")
            let clean = try JSONReader.parse(try await target.call("SELECT pgclone.diff(\(target.source), 'test_schema');"))
            for category in ["tables", "indexes", "constraints", "triggers", "views", "materialized_views", "sequences", "functions", "types"] {
                for key in ["only_in_source", "only_in_target", "modified"] {
                    #expect(Self.names(clean, category, key) == [], "\(category) \(key): \(clean.text)")
                }
            }
            // Drift on either side.
            try await target.rows("""
                ALTER TABLE test_schema.customers ADD COLUMN note text;
                ALTER TABLE test_schema.orders ALTER COLUMN status SET DEFAULT 'new';
                CREATE INDEX customers_note ON test_schema.customers (note);
                DROP TRIGGER trg_orders_log_change ON test_schema.orders;
                SELECT setval('test_schema.invoice_seq', 5000);
                CREATE OR REPLACE FUNCTION test_schema.update_timestamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
                """)
            let drift = try JSONReader.parse(try await target.call("SELECT pgclone.diff(\(target.source), 'test_schema');"))
            #expect(Self.names(drift, "tables", "modified") == ["test_schema.customers", "test_schema.orders"], "\(drift.text)")
            let customers = drift["tables"]?["modified"]?.array.first { $0["name"]?.string == "test_schema.customers" }
            #expect(customers?["changes"]?.array.compactMap(\.string) == ["column note only in target (text)"])
            #expect(Self.names(drift, "indexes", "only_in_target") == ["test_schema.customers_note"])
            #expect(Self.names(drift, "triggers", "only_in_source") == ["test_schema.orders.trg_orders_log_change"])
            #expect(Self.names(drift, "sequences", "modified") == ["test_schema.invoice_seq"])
            #expect(Self.names(drift, "functions", "modified") == ["test_schema.update_timestamp()"])
            // A schema on neither side is an error, not "no differences" (round 37).
            try await target.expectError("SELECT pgclone.diff(\(target.source), 'nope');", sqlState: "3F000", message: "schema \"nope\" does not exist on source or target")
            // The command line: a listing, exit status 1.
            let cli = try await Shell.run([CommandLineTests.binary, "diff", "test_schema", "--source", guideSourceConnInfo(target.environment),
                                           "--target", target.environment.directTarget(database: target.database)])
            #expect(cli.status == 1, "\(cli.stderr)")
            #expect(cli.stdout.contains("  + test_schema.customers_note  (only in target)"), "\(cli.stdout)")
            #expect(cli.stdout.contains("  - test_schema.orders.trg_orders_log_change  (only in source)"), "\(cli.stdout)")
        }
    }

    @Test func preflightBeforeAClone() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            let fresh = try await target.rows("SELECT \"check\", status FROM pgclone.preflight(\(target.source), 'test_schema');")
            // (The guide's roles exist on the target cluster once its test 12 has run: then the last check is ok.)
            #expect(fresh.dropLast() == ["source connection|ok", "target connection|ok", "server versions|ok", "encodings|ok", "source privileges|ok",
                                         "target privileges|ok", "name conflicts|ok", "size|ok", "extensions|ok", "collations|ok",
                                         "objects not cloned|ok", "other schemas|ok"], "\(fresh)")
            #expect(fresh.last == "roles|warn" || fresh.last == "roles|ok", "\(fresh)")
            try await target.cloneCustomers()
            #expect(try await target.rows("SELECT status, detail FROM pgclone.preflight(\(target.source), 'test_schema') WHERE \"check\" = 'name conflicts';")
                    == ["fail|already on the target (conflict \"error\"): test_schema.customers"])
            #expect(try await target.rows("SELECT status FROM pgclone.preflight(\(target.source), 'test_schema', '{\"conflict\": \"replace\"}') WHERE \"check\" = 'name conflicts';")
                    == ["warn"])
            let missing = try await target.rows("SELECT \"check\", status, detail FROM pgclone.preflight(\(target.source), 'nope');")
            #expect(missing.last == "schema|fail|schema \"nope\" does not exist on source", "\(missing)")
            #expect(missing.dropLast().allSatisfy { $0.contains("|ok|") }, "\(missing)")
            // Masks are checked as the clone itself checks them, before anything is made.
            let masks = "SELECT status, detail FROM pgclone.preflight(\(target.source), 'test_schema', %@) WHERE \"check\" = 'masks';"
            #expect(try await target.rows(masks.replacingOccurrences(of: "%@", with: "'{\"conflict\": \"replace\", \"mask\": {\"ssn\": \"null\", \"employees\": {\"email\": \"email\"}}}'"))
                    == ["ok|every mask finds a column to mask in the clone's tables"])
            let typo = try await target.rows(masks.replacingOccurrences(of: "%@", with: "'{\"mask\": {\"snn\": \"null\"}}'"))
            #expect(typo.count == 1 && typo[0].hasPrefix("fail|") && typo[0].contains("snn"), "\(typo)")
            let columns = try await target.rows(masks.replacingOccurrences(of: "%@", with: "'{\"columns\": [\"id\"]}'"))
            #expect(columns == ["fail|option \"columns\" is for table clones"], "\(columns)")
            #expect(try await target.rows(masks.replacingOccurrences(of: "%@", with: "'{}'")) == [])
            let unreachable = guideSQLLiteral("host=127.0.0.1 port=1 dbname=db1 user=postgres password=x connect_timeout=2")
            let down = try await target.rows("SELECT \"check\", status FROM pgclone.preflight(\(unreachable), 'test_schema');")
            #expect(down == ["source connection|fail"])
            let cli = try await Shell.run([CommandLineTests.binary, "preflight", "test_schema", "--source", guideSourceConnInfo(target.environment),
                                           "--target", target.environment.directTarget(database: target.database)])
            #expect(cli.status == 1)
            #expect(cli.stdout.contains("fail  name conflicts: already on the target (conflict \"error\"): test_schema.customers"), "\(cli.stdout)")
        }
    }
}
