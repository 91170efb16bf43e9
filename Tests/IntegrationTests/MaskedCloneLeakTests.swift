import Foundation
import PQ
import Proxy
import Testing

/// Ways a masked column's real value reached the target through a clone or survived
/// mask_in_place (attack round 22), each refused or closed now.
@Suite struct MaskedCloneLeakTests {
    /// A mask on a generated column was dropped with its data, and the target computed the
    /// real value again from the unmasked columns.
    @Test func aMaskOnAGeneratedColumnIsRefused() async throws {
        try await withSourceDatabase("gen_src") { sourceInfo, source in
            try await source.exec("""
                CREATE TABLE public.people (first text, last text, full_name text GENERATED ALWAYS AS (first || ' ' || last) STORED);
                INSERT INTO public.people VALUES ('REALFIRST', 'REALLAST');
                """)
            try await withGuideTarget { (target: GuideTarget) async throws in
                let output = try await Shell.psql(target.conninfo, """
                    \\set VERBOSITY verbose
                    SELECT pgclone.table(\(guideSQLLiteral(sourceInfo)), 'public', 'people', true, NULL, '{"mask": {"full_name": "null"}}');
                    """)
                #expect(output.stderr.contains("ERROR:  428C9: cannot mask generated column \"full_name\" of public.people: the target computes it from \"first\", \"last\""), "\(output.stderr)")
                #expect(output.stderr.contains("HINT:  Mask the columns it is generated from."), "\(output.stderr)")
                #expect(try await target.rows("SELECT pg_catalog.to_regclass('public.people') IS NULL;") == ["t"])
            }
        }
    }

    /// A mask on a partition key column left the real values in the partitions' bounds.
    @Test func aMaskOnAPartitionKeyIsRefused() async throws {
        try await withSourceDatabase("part_src") { sourceInfo, source in
            try await source.exec("""
                CREATE TABLE public.orders (tenant text, amount int) PARTITION BY LIST (tenant);
                CREATE TABLE public.orders_acme PARTITION OF public.orders FOR VALUES IN ('REAL-TENANT-ACME');
                INSERT INTO public.orders VALUES ('REAL-TENANT-ACME', 1);
                CREATE TABLE public.visits (region text, day int) PARTITION BY RANGE (day, lower(region));
                CREATE TABLE public.visits_all PARTITION OF public.visits FOR VALUES FROM (MINVALUE, MINVALUE) TO (MAXVALUE, MAXVALUE);
                CREATE TABLE public.sales (year int, region text) PARTITION BY RANGE (year);
                CREATE TABLE public.sales_2026 PARTITION OF public.sales FOR VALUES FROM (2026) TO (2027) PARTITION BY LIST (region);
                CREATE TABLE public.sales_2026_north PARTITION OF public.sales_2026 FOR VALUES IN ('REAL-REGION-NORTH');
                """)
            try await withGuideTarget { (target: GuideTarget) async throws in
                let output = try await Shell.psql(target.conninfo, """
                    \\set VERBOSITY verbose
                    SELECT pgclone.table(\(guideSQLLiteral(sourceInfo)), 'public', 'orders', true, NULL, '{"mask": {"tenant": "null"}}');
                    """)
                #expect(output.stderr.contains("ERROR:  0A000: cannot mask column \"tenant\" of public.orders: it is in the partition key (LIST (tenant)), and the partitions' bounds hold its real values"), "\(output.stderr)")
                #expect(try await target.rows("SELECT pg_catalog.to_regclass('public.orders') IS NULL;") == ["t"])
                // A column the key uses inside an expression counts too.
                let inExpression = try await Shell.psql(target.conninfo, """
                    \\set VERBOSITY verbose
                    SELECT pgclone.table(\(guideSQLLiteral(sourceInfo)), 'public', 'visits', true, NULL, '{"mask": {"region": "null"}}');
                    """)
                #expect(inExpression.stderr.contains("ERROR:  0A000: cannot mask column \"region\" of public.visits: it is in the partition key (RANGE (day, lower(region))), and the partitions' bounds hold its real values"), "\(inExpression.stderr)")
                // And a key of a sub-partitioned partition: its partitions' bounds hold values too.
                let subpartitioned = try await Shell.psql(target.conninfo, """
                    \\set VERBOSITY verbose
                    SELECT pgclone.table(\(guideSQLLiteral(sourceInfo)), 'public', 'sales', true, NULL, '{"mask": {"region": "null"}}');
                    """)
                #expect(subpartitioned.stderr.contains("ERROR:  0A000: cannot mask column \"region\" of public.sales: it is in the partition key of partition public.sales_2026 (LIST (region)), and the partitions' bounds hold its real values"), "\(subpartitioned.stderr)")
                #expect(try await target.rows("SELECT pg_catalog.to_regclass('public.sales') IS NULL;") == ["t"])
            }
        }
    }

    /// A masked database clone copied every large object whole (the oid column was masked, the
    /// object it pointed to was not).
    @Test func aMaskedDatabaseCloneLeavesLargeObjectsOut() async throws {
        try await withSourceDatabase("lo_src") { sourceInfo, source in
            try await source.exec("""
                CREATE TABLE public.docs (id int, doc oid);
                INSERT INTO public.docs VALUES (1, lo_from_bytea(0, 'REAL-SECRET-DOCUMENT'));
                """)
            try await withGuideTarget { (target: GuideTarget) async throws in
                let database = "lo_dst_\(guideRandomSuffix())"
                let output = try await Shell.psql(target.conninfo, "SELECT pgclone.database_create(\(guideSQLLiteral(sourceInfo)), '\(database)', true, '{\"mask\": {\"doc\": \"null\"}}');")
                #expect(output.status == 0, "\(output.stderr)")
                #expect(output.stderr.contains("large objects not copied: the clone masks columns, and large objects hold data it cannot mask"), "\(output.stderr)")
                let clone = target.environment.directTarget(database: database)
                #expect(guideLines(try await Shell.psql(clone, "SELECT count(*) FROM pg_largeobject_metadata; SELECT doc IS NULL FROM public.docs;").stdout) == ["0", "t"])
                _ = try await Shell.psql(target.environment.directTarget(database: "postgres"), "DROP DATABASE \(database) WITH (FORCE);")
            }
        }
    }

    /// regex_replace matched under COLLATE "C", where \w is ASCII only: other scripts went through.
    @Test func regexClassesMatchEveryScript() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            let output = try await Shell.psql(target.conninfo, """
                CREATE TABLE public.names (n text);
                INSERT INTO public.names VALUES ('Иван Петров'), ('山田太郎'), ('Zoë');
                SELECT pgclone.mask_in_place('public', 'names', '{"n": {"type": "regex_replace", "pattern": "\\\\w", "replacement": "*"}}');
                SELECT n FROM public.names ORDER BY n;
                """)
            #expect(guideLines(output.stdout) == ["OK: masked 3 rows in public.names (1 column)", "***", "****", "**** ******"], "\(output.stdout) \(output.stderr)")
        }
    }

    /// mask_in_place left the old values in pg_stats (readable by any role that may read the
    /// column); it refuses triggers and rules an UPDATE sets off (an audit trigger stored the
    /// old rows, one keeping a column kept them all) and rows row-level security hides.
    @Test func maskInPlaceLeavesNoRealValueBehind() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            let setup = try await Shell.psql(target.conninfo, """
                CREATE TABLE public.cards (id int, card text);
                ALTER TABLE public.cards SET (autovacuum_enabled = false);
                INSERT INTO public.cards SELECT g, 'REAL-CARD-' || (g % 3) FROM generate_series(1, 300) g;
                ANALYZE public.cards;
                SELECT pgclone.mask_in_place('public', 'cards', '{"card": "null"}');
                SELECT count(*) FROM pg_stats WHERE tablename = 'cards' AND attname = 'card' AND most_common_vals::text LIKE '%REAL-CARD%';
                SELECT null_frac FROM pg_stats WHERE tablename = 'cards' AND attname = 'card';
                """)
            #expect(guideLines(setup.stdout) == ["OK: masked 300 rows in public.cards (1 column)", "0", "1"], "\(setup.stdout) \(setup.stderr)")
            let refused = try await Shell.psql(target.conninfo, """
                \\set VERBOSITY verbose
                CREATE TABLE public.audited (id int, ssn text);
                INSERT INTO public.audited VALUES (1, 'REAL-SSN-1');
                CREATE TABLE public.audit_log (old text);
                CREATE FUNCTION public.keep_old() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN INSERT INTO public.audit_log VALUES (OLD.ssn); RETURN NEW; END$$;
                CREATE TRIGGER keep_old AFTER UPDATE ON public.audited FOR EACH ROW EXECUTE FUNCTION public.keep_old();
                CREATE RULE copy_old AS ON UPDATE TO public.audited DO ALSO INSERT INTO public.audit_log VALUES (OLD.ssn);
                SELECT pgclone.mask_in_place('public', 'audited', '{"ssn": "null"}');
                """)
            let masked = try await Shell.psql(target.conninfo, """
                ALTER TABLE public.audited DISABLE TRIGGER keep_old;
                ALTER TABLE public.audited DISABLE RULE copy_old;
                SELECT pgclone.mask_in_place('public', 'audited', '{"ssn": "null"}');
                SELECT count(*) FROM public.audit_log;
                SELECT ssn IS NULL FROM public.audited;
                """)
            #expect(refused.stderr.contains("ERROR:  55000: cannot mask public.audited in place: rule copy_old on public.audited, trigger keep_old on public.audited would run for every masked row and see its real values"), "\(refused.stderr)")
            #expect(guideLines(masked.stdout) == ["OK: masked 1 row in public.audited (1 column)", "0", "t"], "\(masked.stdout) \(masked.stderr)")
        }
    }

    /// Materialized views over a table kept its real rows after mask_in_place (attack round
    /// 22): they are refreshed in the same transaction, innermost first; one the caller cannot
    /// refresh stops the masking with nothing changed.
    @Test func maskInPlaceRefreshesMaterializedViewsOverTheTable() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            let output = try await Shell.psql(target.conninfo, """
                CREATE TABLE public.people (id int, email text);
                INSERT INTO public.people VALUES (1, 'REAL-1@example.com'), (2, 'REAL-2@example.com');
                CREATE VIEW public.people_v AS SELECT id, email FROM public.people;
                CREATE MATERIALIZED VIEW public.emails_direct AS SELECT email FROM public.people;
                CREATE MATERIALIZED VIEW public.emails_via_view AS SELECT email FROM public.people_v;
                CREATE MATERIALIZED VIEW public.emails_again AS SELECT email FROM public.emails_direct;
                CREATE MATERIALIZED VIEW public.emails_later AS SELECT email FROM public.people WITH NO DATA;
                SELECT pgclone.mask_in_place('public', 'people', '{"email": "null"}');
                SELECT count(*) FROM public.emails_direct WHERE email IS NOT NULL;
                SELECT count(*) FROM public.emails_via_view WHERE email IS NOT NULL;
                SELECT count(*) FROM public.emails_again WHERE email IS NOT NULL;
                SELECT relispopulated FROM pg_class WHERE oid = 'public.emails_later'::regclass;
                """)
            #expect(guideLines(output.stdout) == [
                "OK: masked 2 rows in public.people (1 column); refreshed materialized views public.emails_direct, public.emails_again, public.emails_via_view",
                "0", "0", "0", "f",
            ], "\(output.stdout) \(output.stderr)")
            // A materialized view that cannot be refreshed from the masked rows (here: its unique
            // index) stops the masking with nothing changed.
            let refused = try await Shell.psql(target.conninfo, """
                \\set VERBOSITY verbose
                CREATE TABLE public.cards (id int, card text);
                INSERT INTO public.cards VALUES (1, 'REAL-CARD-1'), (2, 'REAL-CARD-2');
                CREATE MATERIALIZED VIEW public.cards_mv AS SELECT card FROM public.cards;
                CREATE UNIQUE INDEX ON public.cards_mv (card);
                SELECT pgclone.mask_in_place('public', 'cards', '{"card": {"type": "constant", "value": "X"}}');
                """)
            #expect(refused.stderr.contains("ERROR:  23505: cannot mask public.cards in place: materialized view public.cards_mv holds its rows and could not be refreshed from the masked ones: could not create unique index"), "\(refused.stderr)")
            #expect(guideLines(try await Shell.psql(target.conninfo, "SELECT card FROM public.cards ORDER BY 1; SELECT card FROM public.cards_mv ORDER BY 1;").stdout)
                    == ["REAL-CARD-1", "REAL-CARD-2", "REAL-CARD-1", "REAL-CARD-2"])
        }
    }

    /// Foreign keys ON UPDATE CASCADE carry the masking into the tables that reference the
    /// column (and on from them): their triggers are refused as the table's own, their
    /// materialized views refreshed and their statistics gathered again (round 33: an audit
    /// trigger there stored every real value, a materialized view and pg_stats kept them).
    @Test func maskInPlaceFollowsForeignKeysThatCascade() async throws {
        try await withGuideTarget { (target: GuideTarget) async throws in
            let setup = try await Shell.psql(target.conninfo, """
                CREATE TABLE public.users (id int PRIMARY KEY, email text UNIQUE);
                INSERT INTO public.users SELECT g, 'REAL-' || g || '@corp.example' FROM generate_series(1, 30) g;
                CREATE TABLE public.orders (id int PRIMARY KEY, user_email text UNIQUE REFERENCES public.users (email) ON UPDATE CASCADE);
                INSERT INTO public.orders SELECT g, 'REAL-' || g || '@corp.example' FROM generate_series(1, 30) g;
                CREATE TABLE public.shipments (id int, order_email text REFERENCES public.orders (user_email) ON UPDATE SET NULL);
                INSERT INTO public.shipments SELECT g, 'REAL-' || g || '@corp.example' FROM generate_series(1, 30) g;
                CREATE TABLE public.audit (old text);
                CREATE FUNCTION public.audit_orders() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO public.audit VALUES (OLD.user_email); RETURN NEW; END $$;
                CREATE TRIGGER orders_audit AFTER UPDATE ON public.orders FOR EACH ROW EXECUTE FUNCTION public.audit_orders();
                CREATE MATERIALIZED VIEW public.shipments_mv AS SELECT order_email FROM public.shipments;
                ANALYZE public.orders; ANALYZE public.shipments;
                """)
            #expect(setup.status == 0, "\(setup.stderr)")
            let refused = try await Shell.psql(target.conninfo, "\\set VERBOSITY verbose\nSELECT pgclone.mask_in_place('public', 'users', '{\"email\": \"hash\"}');")
            #expect(refused.stderr.contains("ERROR:  55000: cannot mask public.users in place: trigger orders_audit on public.orders would run for every masked row"), "\(refused.stderr)")
            #expect(try await target.rows("SELECT count(*) FROM public.users WHERE email LIKE 'REAL-%'; SELECT count(*) FROM public.audit;") == ["30", "0"])
            let masked = try await target.rows("""
                ALTER TABLE public.orders DISABLE TRIGGER orders_audit;
                SELECT pgclone.mask_in_place('public', 'users', '{"email": "hash"}');
                SELECT count(*) FROM public.orders WHERE user_email LIKE 'REAL-%';
                SELECT count(*) FROM public.shipments WHERE order_email IS NOT NULL;
                SELECT count(*) FROM public.shipments_mv WHERE order_email IS NOT NULL;
                SELECT count(*) FROM pg_stats WHERE schemaname = 'public' AND tablename IN ('orders', 'shipments', 'shipments_mv')
                  AND (histogram_bounds::text LIKE '%REAL-%' OR most_common_vals::text LIKE '%REAL-%');
                SELECT count(*) FROM public.audit;
                """)
            #expect(masked == ["OK: masked 30 rows in public.users (1 column); foreign keys ON UPDATE carried the masked values into public.orders, public.shipments; refreshed materialized view public.shipments_mv",
                               "0", "0", "0", "0", "0"], "\(masked)")
        }
    }

    @Test func maskInPlaceRefusesRowsHiddenByRowLevelSecurity() async throws {
        let environment = try TestEnvironment.require()
        let suffix = UInt32.random(in: 0...UInt32.max)
        let group = "rls_admins_\(suffix)", member = "rls_admin_\(suffix)", schema = "rls_\(suffix)"
        let admin = try await PQConnection.connect(environment.directTarget())
        try await admin.exec("""
            CREATE ROLE \(group); CREATE ROLE \(member) LOGIN PASSWORD 'pw' IN ROLE \(group);
            CREATE SCHEMA \(schema) AUTHORIZATION \(member);
            SET ROLE \(member);
            CREATE TABLE \(schema).t (id int, owner text, ssn text);
            INSERT INTO \(schema).t VALUES (1, 'me', 'REAL-1'), (2, 'other', 'REAL-2');
            ALTER TABLE \(schema).t ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
            CREATE POLICY mine ON \(schema).t USING (owner = 'me');
            RESET ROLE;
            """)
        let proxy = try await RunningProxy.start(environment) { $0.adminRoles = [group] }
        let output = try await Shell.psql(environment.throughProxy(proxy.port, user: member, password: "pw"),
                                          "\\set VERBOSITY verbose\nSELECT pgclone.mask_in_place('\(schema)', 't', '{\"ssn\": \"null\"}');")
        try? await proxy.stop()
        #expect(output.stderr.contains("ERROR:  42501: row-level security hides rows of \(schema).t from role \"\(member)\": masking in place would leave them as they are"), "\(output.stderr)")
        #expect(try await admin.exec("SELECT count(*) FROM \(schema).t WHERE ssn LIKE 'REAL-%'").string(0, 0) == "2")
        _ = try? await admin.exec("DROP SCHEMA \(schema) CASCADE; DROP ROLE \(member); DROP ROLE \(group)")
    }
}
