import Foundation
import PQ
import Proxy
import Testing

/// Guide test 12 (clone roles) and what clone_roles promises beyond it. Roles are cluster-wide
/// on the target, so these tests run alone (scripts/test runs them after the others) and start
/// by removing the guide's roles from every target database.
@Suite("Guide test 12: roles", .serialized)
struct GuideRolesTests {
    static let guideRoles = ["test_reader", "test_writer", "test_admin"]

    /// Drops `roles` from the target cluster, with whatever they hold in any database.
    static func dropEverywhere(_ roles: [String], environment: TestEnvironment) async throws {
        let admin = try await PQConnection.connect(environment.directTarget(database: "postgres"))
        let existing = try await admin.query("SELECT rolname::text FROM pg_roles WHERE rolname = ANY ($1::text[])", [SQL.textArray(roles)]).strings.compactMap { $0 }
        guard !existing.isEmpty else { return }
        for database in try await admin.exec("SELECT datname FROM pg_database WHERE datallowconn").strings.compactMap({ $0 }) {
            let connection = try await PQConnection.connect(environment.directTarget(database: database))
            // (One role at a time: roles sharing a default ACL entry fail together.)
            for role in existing { _ = try await connection.exec("DROP OWNED BY \(SQL.identifier(role))") }
        }
        for role in existing { _ = try await admin.exec("DROP ROLE \(SQL.identifier(role))") }
    }

    @Test("12.1-12.4 clone all roles, then named ones, their privileges, and an update")
    func guideTest12() async throws {
        let environment = try TestEnvironment.require()
        try await Self.dropEverywhere(Self.guideRoles, environment: environment)
        try await withGuideTarget { (target: GuideTarget) async throws in
            // Where the guide runs this, test_schema has been cloned (tests 5 to 7).
            _ = try await target.call("SELECT pgclone.schema(\(target.source), 'test_schema', true);")

            // 12.1
            let all = try await target.call("SELECT pgclone.clone_roles(\n\(target.source)\n);")
            let grants = try await target.sourceRows("""
                SELECT count(*) FROM information_schema.table_privileges WHERE grantee IN ('test_reader', 'test_writer', 'test_admin')
                """)
            #expect(all.hasPrefix("OK: 3 roles created, 0 roles updated, "), "\(all)")
            #expect(all.hasSuffix(" grants applied"), "\(all)")
            #expect(try await target.rows("""
                SELECT rolname, rolcanlogin, rolcreatedb FROM pg_roles
                WHERE rolname IN ('test_reader', 'test_writer', 'test_admin')
                ORDER BY rolname;
                """) == ["test_admin|t|t", "test_reader|t|f", "test_writer|t|f"])
            #expect(!grants.isEmpty)
            // A second identical run changes nothing.
            #expect(try await target.call("SELECT pgclone.clone_roles(\(target.source));") == "OK: 0 roles created, 0 roles updated, 0 grants applied")
            // A role changed on the target (an attribute and settings, one of them only there) is
            // one role updated, and brought in line: the target-only setting is reset.
            try await target.rows("ALTER ROLE test_admin NOCREATEDB; ALTER ROLE test_admin SET work_mem = '9MB'; ALTER ROLE test_admin SET search_path = '';")
            #expect(try await target.call("SELECT pgclone.clone_roles(\(target.source), 'test_admin');") == "OK: 0 roles created, 1 roles updated, 0 grants applied")
            #expect(try await target.rows("""
                SELECT rolcreatedb, (SELECT count(*) FROM pg_db_role_setting WHERE setrole = r.oid) FROM pg_roles r WHERE rolname = 'test_admin';
                """) == ["t|0"])

            // 12.2 (the guide's DROP ROLE needs the role's privileges gone first)
            try await target.rows("DROP OWNED BY test_reader, test_writer;")
            try await target.rows("DROP ROLE IF EXISTS test_reader;")
            try await target.rows("DROP ROLE IF EXISTS test_writer;")
            let named = try await target.call("""
                SELECT pgclone.clone_roles(
                \(target.source),
                'test_reader, test_writer'
                );
                """)
            #expect(named.hasPrefix("OK: 2 roles created, 0 roles updated, "), "\(named)")
            #expect(try await target.rows("SELECT rolname FROM pg_roles WHERE rolname IN ('test_reader', 'test_writer') ORDER BY rolname;")
                    == ["test_reader", "test_writer"])

            // 12.3: test_reader has SELECT on every test_schema table, as on the source.
            let privileges = """
                SELECT grantee, table_schema, table_name, privilege_type
                FROM information_schema.table_privileges
                WHERE grantee = 'test_reader' AND table_schema = 'test_schema'
                ORDER BY table_name, privilege_type;
                """
            try await target.expectSameRowsAsSource(privileges)
            for table in ["customers", "employees", "order_items", "order_log", "orders"] {
                #expect(try await target.rows(privileges).contains("test_reader|test_schema|\(table)|SELECT"))
            }

            // 12.4: an existing role is brought back in line, password included.
            try await target.rows("ALTER ROLE test_admin NOCREATEDB CONNECTION LIMIT 3 PASSWORD 'changed';")
            #expect(try await target.call("""
                SELECT pgclone.clone_roles(
                \(target.source),
                'test_admin'
                );
                """) == "OK: 0 roles created, 1 roles updated, 0 grants applied")
            #expect(try await target.rows("SELECT rolcreatedb, rolconnlimit FROM pg_roles WHERE rolname = 'test_admin';") == ["t|10"])
            let login = "host=\(environment.host) port=\(environment.targetPort) dbname=\(target.database) user=test_admin password=admin_pass"
            #expect(try await target.rows("SELECT current_user;", on: login) == ["test_admin"])
        }
    }

    /// Names with spaces and capitals, a membership chain with ADMIN OPTION, role settings and
    /// comments, SCRAM and md5 verifiers that log in after the clone, unknown names refused.
    @Test func rolesWithEverythingPgDumpallCarries() async throws {
        let environment = try TestEnvironment.require()
        let suffix = guideRandomSuffix()
        let mixed = "Role \(suffix) Mixed", lead = "lead_\(suffix)", member = "member_\(suffix)", legacy = "legacy_\(suffix)", chief = "chief_\(suffix)"
        let source = try await PQConnection.connect(guideSourceConnInfo(environment))
        let roles = [mixed, lead, member, legacy, chief]
        defer {
            Task {
                _ = try? await source.exec("DROP ROLE IF EXISTS \(roles.map(SQL.identifier).joined(separator: ", "))")
                try? await Self.dropEverywhere(roles, environment: environment)
            }
        }
        try await source.exec("""
            DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'md5_login') THEN CREATE ROLE md5_login; END IF; END $$;
            CREATE ROLE \(SQL.identifier(mixed)) LOGIN PASSWORD 'mixed-pw' VALID UNTIL '2999-01-01 00:00:00+00';
            CREATE ROLE \(chief) NOLOGIN;
            CREATE ROLE \(lead) NOLOGIN CREATEDB IN ROLE \(chief);
            CREATE ROLE \(member) LOGIN PASSWORD 'member-pw' CONNECTION LIMIT 4;
            GRANT \(lead) TO \(SQL.identifier(mixed)) WITH ADMIN OPTION;
            GRANT \(lead) TO \(member) GRANTED BY \(SQL.identifier(mixed));
            ALTER ROLE \(member) SET search_path = "$user", public;
            ALTER ROLE \(member) SET work_mem = '8MB';
            ALTER ROLE \(member) IN DATABASE db1 SET statement_timeout = '5s';
            COMMENT ON ROLE \(member) IS 'a member''s comment';
            SET password_encryption = 'md5';
            CREATE ROLE \(legacy) LOGIN PASSWORD 'legacy-pw' IN ROLE md5_login;
            RESET password_encryption;
            """)
        try await withGuideTarget { (target: GuideTarget) async throws in
            let list = guideSQLLiteral("\"\(mixed)\", \(lead), \(member), \(legacy), md5_login, \(chief)")
            let message = try await target.call("SELECT pgclone.clone_roles(\(target.source), \(list));")
            #expect(message.hasPrefix("OK: "), "\(message)")
            #expect(try await target.call("SELECT pgclone.clone_roles(\(target.source), \(list));") == "OK: 0 roles created, 0 roles updated, 0 grants applied")
            // Verifiers as stored, attributes, memberships, settings, comment.
            let roleList = guideSQLLiteral(SQL.textArray(roles))
            let attributes = """
                SELECT rolname, rolcanlogin, rolcreatedb, rolconnlimit, rolvaliduntil, rolpassword, shobj_description(oid, 'pg_authid')
                FROM pg_authid WHERE rolname = ANY (\(roleList)::text[]) ORDER BY rolname;
                """
            try await target.expectSameRowsAsSource(target: attributes, source: attributes)
            // With their grantors, as pg_dumpall writes them (GRANTED BY).
            let memberships = """
                SELECT g.rolname, m.rolname, am.admin_option, am.grantor::regrole FROM pg_auth_members am JOIN pg_roles g ON g.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
                WHERE m.rolname = ANY (\(roleList)::text[]) ORDER BY 1, 2;
                """
            try await target.expectSameRowsAsSource(memberships)
            #expect(try await target.rows("SELECT am.grantor::regrole::text FROM pg_auth_members am WHERE am.member = '\(member)'::regrole;") == [SQL.identifier(mixed)])
            // The chain: member is in lead, which is in chief.
            #expect(try await target.rows("SELECT pg_has_role('\(member)', '\(chief)', 'MEMBER');") == ["t"])
            #expect(try await target.rows("""
                SELECT d.datname, s.setconfig FROM pg_db_role_setting s LEFT JOIN pg_database d ON d.oid = s.setdatabase
                WHERE s.setrole = '\(member)'::regrole ORDER BY 1 NULLS FIRST;
                """) == ["|{\"search_path=\\\"$user\\\", public\",work_mem=8MB}"])
            #expect(try await target.rows("SELECT rolpassword LIKE 'md5%' FROM pg_authid WHERE rolname = '\(legacy)';") == ["t"])
            // Both verifiers log in.
            for (user, password) in [(member, "member-pw"), (legacy, "legacy-pw"), (mixed, "mixed-pw")] {
                let conninfo = "host=\(environment.host) port=\(environment.targetPort) dbname=\(target.database) user='\(user)' password=\(password)"
                #expect(try await target.rows("SELECT current_user;", on: conninfo) == [user])
            }
            try await target.expectError("SELECT pgclone.clone_roles(\(target.source), 'no_such_role_\(suffix)');", sqlState: "42704",
                                         message: "role \"no_such_role_\(suffix)\" does not exist on source")
            // The verifier never shows in a message.
            let verifier = try await source.query("SELECT rolpassword FROM pg_authid WHERE rolname = $1", [member]).string(0, 0) ?? "none"
            let output = try await Shell.psql(target.conninfo, "\\set VERBOSITY verbose\nSELECT pgclone.clone_roles(\(target.source), \(list));")
            #expect(!output.stdout.contains(verifier) && !output.stderr.contains(verifier))
        }
    }

    /// A membership the target already has the other way round would make a cycle: the call
    /// says which and how to undo it, and changes nothing (round 44f: the server's bare
    /// "role is a member of role").
    @Test func aMembershipCycleWithTheTargetIsRefusedAndChangesNothing() async throws {
        let environment = try TestEnvironment.require()
        let suffix = guideRandomSuffix()
        let upper = "cyc_upper_\(suffix)", lower = "cyc_lower_\(suffix)", bystander = "cyc_new_\(suffix)"
        let roles = [upper, lower, bystander]
        let source = try await PQConnection.connect(guideSourceConnInfo(environment))
        defer {
            Task {
                _ = try? await source.exec("DROP ROLE IF EXISTS \(roles.joined(separator: ", "))")
                try? await Self.dropEverywhere(roles, environment: environment)
            }
        }
        try await source.exec("CREATE ROLE \(upper); CREATE ROLE \(lower) IN ROLE \(upper); CREATE ROLE \(bystander)")
        let admin = try await PQConnection.connect(environment.directTarget(database: "postgres"))
        try await admin.exec("CREATE ROLE \(upper); CREATE ROLE \(lower); GRANT \(lower) TO \(upper)")
        try await withGuideTarget { (target: GuideTarget) async throws in
            let list = guideSQLLiteral(roles.joined(separator: ", "))
            let output = try await target.expectError("SELECT pgclone.clone_roles(\(target.source), \(list));", sqlState: "0LP01",
                message: "cannot grant role \"\(upper)\" to \"\(lower)\": on the target, \"\(upper)\" is already a member of \"\(lower)\", and the grant would make a membership cycle")
            #expect(output.stderr.contains("HINT:  Revoke one of the two memberships on the target (REVOKE \"\(lower)\" FROM \"\(upper)\""), "\(output.stderr)")
            #expect(try await admin.exec("SELECT count(*) FROM pg_roles WHERE rolname = '\(bystander)'").string(0, 0) == "0")
        }
    }

    /// The default privileges a cloned role sets for what it will create, as pg_dump makes them:
    /// revocations (EXECUTE taken from PUBLIC, the owner's own rights) and grants to other roles,
    /// global and per schema; a second run changes nothing (round 33: revocations were lost, the
    /// owner's own entries counted as grants on every run, grants to a role not cloned with it
    /// were skipped).
    @Test func defaultPrivilegesOfAClonedRoleAreTheSourcesOwn() async throws {
        let environment = try TestEnvironment.require()
        let suffix = guideRandomSuffix()
        let owner = "dp_owner_\(suffix)", reader = "dp_reader_\(suffix)"
        let source = try await PQConnection.connect(guideSourceConnInfo(environment))
        // Dropped before the next test starts (guide test 12 clones every role of the source).
        func dropRoles() async {
            // (One role at a time: DROP OWNED BY of both at once fails on the default ACL they
            // share, "could not find tuple for default ACL".)
            _ = try? await source.exec("DROP OWNED BY \(owner); DROP OWNED BY \(reader); DROP ROLE IF EXISTS \(owner), \(reader)")
            try? await Self.dropEverywhere([owner, reader], environment: environment)
        }
        do {
            try await defaultPrivilegesOfAClonedRole(source: source, owner: owner, reader: reader)
        } catch {
            await dropRoles()
            throw error
        }
        await dropRoles()
    }

    private func defaultPrivilegesOfAClonedRole(source: PQConnection, owner: String, reader: String) async throws {
        try await source.exec("""
            CREATE ROLE \(owner) NOLOGIN;
            CREATE ROLE \(reader) NOLOGIN;
            ALTER DEFAULT PRIVILEGES FOR ROLE \(owner) REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
            ALTER DEFAULT PRIVILEGES FOR ROLE \(owner) REVOKE ALL ON TABLES FROM \(owner);
            ALTER DEFAULT PRIVILEGES FOR ROLE \(owner) GRANT SELECT ON TABLES TO \(reader) WITH GRANT OPTION;
            ALTER DEFAULT PRIVILEGES FOR ROLE \(owner) IN SCHEMA public GRANT USAGE ON SEQUENCES TO \(reader);
            """)
        try await withGuideTarget { (target: GuideTarget) async throws in
            let alone = try await Shell.psql(target.conninfo, "SELECT pgclone.clone_roles(\(target.source), '\(owner)');")
            #expect(alone.stdout == "OK: 1 roles created, 0 roles updated, 2 grants applied\n", "\(alone.stdout) \(alone.stderr)")
            #expect(alone.stderr.contains("default privileges naming what the target lacks were skipped (1): role \(reader)"), "\(alone.stderr)")
            let both = try await target.call("SELECT pgclone.clone_roles(\(target.source), '\(owner), \(reader)');")
            #expect(both == "OK: 1 roles created, 0 roles updated, 2 grants applied", "\(both)")
            try await target.expectSameRowsAsSource("""
                SELECT defaclnamespace::regnamespace, defaclobjtype, defaclacl FROM pg_default_acl WHERE defaclrole = '\(owner)'::regrole ORDER BY 1::text, 2;
                """)
            #expect(try await target.call("SELECT pgclone.clone_roles(\(target.source), '\(owner), \(reader)');") == "OK: 0 roles created, 0 roles updated, 0 grants applied")
        }
    }

    /// A source that hides pg_authid (as managed services do: here a source login that is not a
    /// superuser) gives roles without passwords, and says so.
    @Test func aSourceThatHidesVerifiersGivesRolesWithoutPasswords() async throws {
        let environment = try TestEnvironment.require()
        let suffix = guideRandomSuffix()
        let reader = "catalog_reader_\(suffix)", app = "app_\(suffix)"
        let source = try await PQConnection.connect(guideSourceConnInfo(environment))
        try await source.exec("CREATE ROLE \(reader) LOGIN PASSWORD 'reader-pw'; CREATE ROLE \(app) LOGIN PASSWORD 'app-pw'")
        defer {
            Task {
                _ = try? await source.exec("DROP ROLE IF EXISTS \(reader), \(app)")
                try? await Self.dropEverywhere([app], environment: environment)
            }
        }
        try await withGuideTarget { (target: GuideTarget) async throws in
            let hidden = guideSQLLiteral("host=127.0.0.1 port=\(environment.sourcePort) dbname=db1 user=\(reader) password=reader-pw")
            let output = try await Shell.psql(target.conninfo, "SELECT pgclone.clone_roles(\(hidden), '\(app)');")
            #expect(output.stdout == "OK: 1 roles created, 0 roles updated, 0 grants applied\n", "\(output.stderr)")
            #expect(output.stderr.contains("NOTICE:  pgclone: the source does not let pgclone read password verifiers (pg_authid): roles were cloned without passwords"), "\(output.stderr)")
            #expect(try await target.rows("SELECT rolcanlogin, rolpassword IS NULL FROM pg_authid WHERE rolname = '\(app)';") == ["t|t"])
        }
    }

    /// A caller that is neither superuser nor CREATEROLE is refused; nothing changes.
    @Test func onlySuperusersOrCreateroleMayCloneRoles() async throws {
        let environment = try TestEnvironment.require()
        try await withGuideTarget { (target: GuideTarget) async throws in
            let role = "roles_admin_\(guideRandomSuffix())"
            try await target.direct("CREATE ROLE \(role) LOGIN PASSWORD 'x'", database: "postgres")
            defer { Task { _ = try? await Shell.psql(environment.directTarget(database: "postgres"), "DROP ROLE IF EXISTS \(role);") } }
            let proxy = try await RunningProxy.start(environment) { $0.adminRoles = [role] }
            defer { Task { try? await proxy.stop() } }
            let asRole = environment.throughProxy(proxy.port, user: role, password: "x", database: target.database)
            let output = try await Shell.psql(asRole, "\\set VERBOSITY verbose\nSELECT pgclone.clone_roles(\(guideSQLLiteral(guideSourceConnInfo(environment))), 'test_admin');")
            #expect(guideReportedError(output.stderr) == "42501: permission denied to clone roles", "\(output.stderr)")
        }
    }
}
