import PQ

/// Clones roles from a source server as `pg_dumpall --roles-only` carries them (attributes,
/// password verifiers as stored, memberships, role settings, comments), then the privileges
/// those roles hold on the objects that exist on the target.
///
/// Existing roles are brought in line (a second identical run changes nothing); `pg_*` roles,
/// the bootstrap superuser and the calling role are never touched. Password verifiers (SCRAM or
/// md5) are copied as they are stored, never re-hashed, and never appear in a message.
struct RoleCloner {
    struct Summary: Sendable, Equatable {
        var created = 0
        var updated = 0
        var grants = 0
        var notes: [String] = []
    }

    /// One role as the catalog describes it.
    struct Role: Sendable, Equatable {
        var name: String
        var superuser = false
        var inherit = true
        var createRole = false
        var createDB = false
        var login = false
        var replication = false
        var bypassRLS = false
        var connectionLimit = -1
        /// `infinity`, or a UTC timestamp in one fixed format (compared as text).
        var validUntil: String?
        /// The stored verifier; nil when there is none or it could not be read.
        var password: String?
        var comment: String?

        /// The attribute clauses of CREATE/ALTER ROLE, without the password.
        var attributeClauses: [String] {
            [superuser ? "SUPERUSER" : "NOSUPERUSER", inherit ? "INHERIT" : "NOINHERIT", createRole ? "CREATEROLE" : "NOCREATEROLE",
             createDB ? "CREATEDB" : "NOCREATEDB", login ? "LOGIN" : "NOLOGIN", replication ? "REPLICATION" : "NOREPLICATION",
             bypassRLS ? "BYPASSRLS" : "NOBYPASSRLS", "CONNECTION LIMIT \(connectionLimit)"]
                // No VALID UNTIL is stored as NULL, which CREATE ROLE leaves alone and ALTER ROLE
                // cannot set again ('infinity' means the same).
                + (validUntil.map { ["VALID UNTIL \(SQL.literal($0))"] } ?? [])
        }

        /// The clauses that bring `current` in line with this role.
        func alterClauses(from current: Role) -> [String] {
            var clauses = attributeClauses
            if validUntil == nil && current.validUntil != nil && current.validUntil != "infinity" {
                clauses.append("VALID UNTIL 'infinity'")
            }
            return clauses
        }

        /// Whether everything but the password and comment is the same.
        func sameAttributes(as other: Role) -> Bool {
            var mine = self, theirs = other
            mine.password = nil; theirs.password = nil
            mine.comment = nil; theirs.comment = nil
            if mine.validUntil == "infinity" { mine.validUntil = nil }
            if theirs.validUntil == "infinity" { theirs.validUntil = nil }
            return mine == theirs
        }
    }

    /// Catalog columns of a role; `readsVerifiers` chooses pg_authid (passwords) over pg_roles.
    static func rolesQuery(readsVerifiers: Bool) -> String {
        """
        SELECT r.rolname::pg_catalog.text, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin, r.rolreplication,
               r.rolbypassrls, r.rolconnlimit::pg_catalog.text,
               CASE WHEN r.rolvaliduntil IS NULL THEN NULL WHEN r.rolvaliduntil OPERATOR(pg_catalog.=) 'infinity' THEN 'infinity'
                    WHEN r.rolvaliduntil OPERATOR(pg_catalog.=) '-infinity' THEN '-infinity'
                    ELSE pg_catalog.to_char(r.rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') OPERATOR(pg_catalog.||) '+00' END,
               \(readsVerifiers ? "r.rolpassword" : "NULL::pg_catalog.text"),
               pg_catalog.shobj_description(r.oid, 'pg_authid'), r.oid OPERATOR(pg_catalog.=) 10
        FROM pg_catalog.\(readsVerifiers ? "pg_authid" : "pg_roles") r
        WHERE r.rolname::pg_catalog.text OPERATOR(pg_catalog.!~) '^pg_'
        ORDER BY r.oid
        """
    }

    static func roles(in result: PQResult) -> (roles: [Role], bootstrap: String?) {
        var roles: [Role] = []
        var bootstrap: String?
        for row in result.rows.indices {
            let name = result.string(row, 0) ?? ""
            if result.string(row, 12) == "t" { bootstrap = name }
            roles.append(Role(
                name: name, superuser: result.string(row, 1) == "t", inherit: result.string(row, 2) == "t",
                createRole: result.string(row, 3) == "t", createDB: result.string(row, 4) == "t", login: result.string(row, 5) == "t",
                replication: result.string(row, 6) == "t", bypassRLS: result.string(row, 7) == "t",
                connectionLimit: Int(result.string(row, 8) ?? "-1") ?? -1, validUntil: result.string(row, 9),
                password: result.string(row, 10), comment: result.string(row, 11)))
        }
        return (roles, bootstrap)
    }

    /// Parses the role list argument: `a, "Mixed Case", b` (double quotes keep commas and spaces).
    static func parseNames(_ list: String) -> [String] {
        var names: [String] = []
        var current = ""
        var quoted = false
        var wasQuoted = false
        var characters = Array(list)[...]
        while let character = characters.popFirst() {
            switch character {
            case "\"" where quoted && characters.first == "\"":
                current.append("\"")
                characters.removeFirst()
            case "\"":
                quoted.toggle()
                wasQuoted = true
            case "," where !quoted:
                let name = wasQuoted ? current : current.trimmingSpaces()
                if !name.isEmpty { names.append(name) }
                current = ""
                wasQuoted = false
            default:
                // Spaces around a name (before its opening quote too) are not part of it.
                if !quoted && (wasQuoted || current.isEmpty) && character == " " { continue }
                current.append(character)
            }
        }
        let name = wasQuoted ? current : current.trimmingSpaces()
        if !name.isEmpty { names.append(name) }
        return names
    }

    let source: PQConnection
    let target: PQConnection
    /// The role the call runs as on the target (never touched).
    let caller: String

    func run(only requested: [String]?) async throws -> Summary {
        var summary = Summary()
        var updatedRoles: Set<String> = []
        // Source: verifiers need pg_authid (superusers); managed services hide it.
        var sourceRoles: [Role]
        var sourceBootstrap: String?
        var sourceHasVerifiers = true
        do {
            try await source.exec("SAVEPOINT pgclone_roles")
            (sourceRoles, sourceBootstrap) = Self.roles(in: try await source.exec(Self.rolesQuery(readsVerifiers: true)))
            try await source.exec("RELEASE SAVEPOINT pgclone_roles")
        } catch let error as PQError where error.sqlState == "42501" {
            try await source.exec("ROLLBACK TO SAVEPOINT pgclone_roles")
            (sourceRoles, sourceBootstrap) = Self.roles(in: try await source.exec(Self.rolesQuery(readsVerifiers: false)))
            sourceHasVerifiers = false
            summary.notes.append("the source does not let pgclone read password verifiers (pg_authid): roles were cloned without passwords")
        }
        if let requested {
            for name in requested where !sourceRoles.contains(where: { $0.name == name }) {
                throw CloneError("42704", "role \"\(name)\" does not exist on source")
            }
            sourceRoles = sourceRoles.filter { requested.contains($0.name) }
        }

        // Target: who may do what, and what is there.
        let me = try await target.exec("""
            SELECT r.rolsuper, r.rolcreaterole FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER
            """)
        let isSuperuser = me.string(0, 0) == "t"
        guard isSuperuser || me.string(0, 1) == "t" else {
            throw CloneError("42501", "permission denied to clone roles", detail: "Only superusers and roles with CREATEROLE on the target may call pgclone.clone_roles.")
        }
        let (targetRoles, targetBootstrap) = Self.roles(in: try await target.exec(Self.rolesQuery(readsVerifiers: isSuperuser)))
        let existing = Dictionary(targetRoles.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var skipped: [String] = []
        sourceRoles.removeAll { role in
            let untouchable = role.name == caller || role.name == targetBootstrap || role.name == sourceBootstrap
            if untouchable { skipped.append(role.name) }
            return untouchable
        }
        if let requested {
            for name in skipped where requested.contains(name) {
                summary.notes.append("role \"\(name)\" was not changed: pgclone never alters the bootstrap superuser or the calling role")
            }
        }
        if !isSuperuser, let role = sourceRoles.first(where: { $0.superuser || $0.replication || $0.bypassRLS }) {
            throw CloneError("42501", "permission denied to clone role \"\(role.name)\"",
                             detail: "Only a superuser may create or alter roles with SUPERUSER, REPLICATION or BYPASSRLS.")
        }

        try await target.exec("BEGIN")
        do {
            for role in sourceRoles {
                if let current = existing[role.name] {
                    var clauses: [String] = []
                    var changed = false
                    if !role.sameAttributes(as: current) {
                        clauses += role.alterClauses(from: current)
                        changed = true
                    }
                    if sourceHasVerifiers {
                        if isSuperuser {
                            if role.password != current.password {
                                clauses.append("PASSWORD \(SQL.literal(role.password))")
                                changed = true
                            }
                        } else if let password = role.password {
                            // Without pg_authid the target's verifier cannot be compared: it is set.
                            clauses.append("PASSWORD \(SQL.literal(password))")
                        }
                    }
                    if !clauses.isEmpty {
                        try await target.execute("ALTER ROLE \(SQL.identifier(role.name)) WITH \(clauses.joined(separator: " "))")
                    }
                    if role.comment != current.comment {
                        try await target.execute("COMMENT ON ROLE \(SQL.identifier(role.name)) IS \(SQL.literal(role.comment))")
                        changed = true
                    }
                    if changed { updatedRoles.insert(role.name) }
                } else {
                    let clauses = role.attributeClauses + (role.password.map { ["PASSWORD \(SQL.literal($0))"] } ?? [])
                    try await target.execute("CREATE ROLE \(SQL.identifier(role.name)) WITH \(clauses.joined(separator: " "))")
                    if let comment = role.comment {
                        try await target.execute("COMMENT ON ROLE \(SQL.identifier(role.name)) IS \(SQL.literal(comment))")
                    }
                    summary.created += 1
                }
            }
            let names = Set(sourceRoles.map(\.name))
            // A role whose attributes and settings both changed is one role updated (round 26).
            updatedRoles.formUnion(try await syncSettings(of: sourceRoles.map(\.name), newlyCreated: names.subtracting(existing.keys), notes: &summary.notes))
            summary.updated = updatedRoles.count
            summary.grants += try await syncMemberships(of: names, callerIsSuperuser: isSuperuser, notes: &summary.notes)
            summary.grants += try await ObjectGrants(source: source, target: target).apply(to: sourceRoles.map(\.name), notes: &summary.notes)
            // The default privileges these roles set for what they will create (their grants to
            // other roles and their revocations included: round 33).
            summary.grants += try await DefaultPrivileges(source: source, target: target).sync(owners: sourceRoles.map(\.name), notes: &summary.notes)
            try await target.exec("COMMIT")
        } catch {
            _ = try? await target.exec("ROLLBACK")
            throw error
        }
        return summary
    }

    // MARK: - Memberships

    /// GRANT role TO member [WITH ADMIN OPTION] [GRANTED BY grantor] for every membership of the
    /// source in which a cloned role takes part and both roles exist on the target (the grantor
    /// as on the source, as pg_dumpall writes it, where the target has that role and the caller
    /// may name it); grants whose grantor needs its own ADMIN OPTION go after the grant that
    /// gives it. Returns how many were applied.
    private func syncMemberships(of names: Set<String>, callerIsSuperuser: Bool, notes: inout [String]) async throws -> Int {
        let rows = try await source.query("""
            SELECT g.rolname::pg_catalog.text, m.rolname::pg_catalog.text, COALESCE(gr.rolname::pg_catalog.text, ''), am.admin_option
            FROM pg_catalog.pg_auth_members am
            JOIN pg_catalog.pg_roles g ON g.oid OPERATOR(pg_catalog.=) am.roleid
            JOIN pg_catalog.pg_roles m ON m.oid OPERATOR(pg_catalog.=) am.member
            LEFT JOIN pg_catalog.pg_roles gr ON gr.oid OPERATOR(pg_catalog.=) am.grantor
            WHERE g.rolname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])
               OR m.rolname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])
            ORDER BY 1, 2
            """, [SQL.textArray(names.sorted())])
        struct Membership: Equatable { var role: String; var member: String; var grantor: String; var admin: Bool }
        var pending = rows.rows.indices.map { row in
            Membership(role: rows.string(row, 0) ?? "", member: rows.string(row, 1) ?? "", grantor: rows.string(row, 2) ?? "", admin: rows.string(row, 3) == "t")
        }
        let present = try await target.exec("""
            SELECT g.rolname::pg_catalog.text, m.rolname::pg_catalog.text, am.admin_option FROM pg_catalog.pg_auth_members am
            JOIN pg_catalog.pg_roles g ON g.oid OPERATOR(pg_catalog.=) am.roleid JOIN pg_catalog.pg_roles m ON m.oid OPERATOR(pg_catalog.=) am.member
            """)
        var held: [String: Bool] = [:]
        for row in present.rows.indices { held[(present.string(row, 0) ?? "") + "\u{0}" + (present.string(row, 1) ?? "")] = present.string(row, 2) == "t" }
        let targetRoles = Set(try await target.exec("SELECT rolname::pg_catalog.text FROM pg_catalog.pg_roles").strings.compactMap { $0 })
        var applied = 0
        var missing: Set<String> = []
        var grantorsNotNamed: Set<String> = []
        while !pending.isEmpty {
            // A grant by a grantor that is itself waiting for ADMIN OPTION on the role goes later.
            let waiting = Set(pending.filter(\.admin).map { $0.role + "\u{0}" + $0.member })
            let ready = pending.filter { !waiting.contains($0.role + "\u{0}" + $0.grantor) }
            let batch = ready.isEmpty ? pending : ready
            for membership in batch {
                guard targetRoles.contains(membership.role), targetRoles.contains(membership.member) else {
                    missing.insert(targetRoles.contains(membership.role) ? membership.member : membership.role)
                    continue
                }
                let key = membership.role + "\u{0}" + membership.member
                if let admin = held[key], admin || !membership.admin { continue }
                // Only a superuser may record another role as the grantor (PostgreSQL 15).
                let grantor = membership.grantor
                let namesGrantor = !grantor.isEmpty && grantor != caller && targetRoles.contains(grantor) && callerIsSuperuser
                if !grantor.isEmpty, grantor != caller, !namesGrantor { grantorsNotNamed.insert(grantor) }
                let sql = "GRANT \(SQL.identifier(membership.role)) TO \(SQL.identifier(membership.member))"
                    + (membership.admin ? " WITH ADMIN OPTION" : "") + (namesGrantor ? " GRANTED BY \(SQL.identifier(grantor))" : "")
                do {
                    try await target.execute(sql)
                } catch let error as PQError where error.sqlState == "0LP01" {
                    // The target already has the reverse membership (directly or through other roles).
                    throw CloneError("0LP01", "cannot grant role \"\(membership.role)\" to \"\(membership.member)\": on the target, \"\(membership.role)\" is already a member of \"\(membership.member)\", and the grant would make a membership cycle",
                                     detail: "The source has \"\(membership.member)\" as a member of \"\(membership.role)\". Nothing was changed on the target.",
                                     hint: "Revoke one of the two memberships on the target (REVOKE \(SQL.identifier(membership.member)) FROM \(SQL.identifier(membership.role)) or the chain that leads to it), then clone the roles again.")
                }
                held[key] = membership.admin
                applied += 1
            }
            pending.removeAll { batch.contains($0) }
        }
        if !missing.isEmpty {
            notes.append("memberships involving roles that do not exist on the target were skipped: \(missing.sorted().joined(separator: ", "))")
        }
        if !grantorsNotNamed.isEmpty {
            let why = callerIsSuperuser ? "the target has no such role" : "only a superuser may name another grantor"
            notes.append("memberships granted on the source by \(grantorsNotNamed.sorted().map { "\"\($0)\"" }.joined(separator: ", ")) are recorded as granted by \"\(caller)\" (\(why))")
        }
        return applied
    }

    // MARK: - Settings

    /// GUC settings whose values are lists of names (they are written unquoted, element by element).
    static let listSettings: Set<String> = ["search_path", "temp_tablespaces", "session_preload_libraries", "local_preload_libraries"]

    /// `ALTER ROLE ... [IN DATABASE ...] SET name TO value` for one stored `name=value`; nil when
    /// the name is not a plain setting name (a hostile source cannot inject SQL through it).
    static func setStatement(role: String, database: String?, setting: String) -> String? {
        guard let clause = setClause(setting) else { return nil }
        let scope = database.map { " IN DATABASE \(SQL.identifier($0))" } ?? ""
        return "ALTER ROLE \(SQL.identifier(role))\(scope) SET \(clause)"
    }

    /// `name TO value` for one stored `name=value` (of pg_db_role_setting), nil when the name is
    /// not a plain setting name.
    static func setClause(_ setting: String) -> String? {
        guard let equals = setting.firstIndex(of: "=") else { return nil }
        let name = String(setting[..<equals])
        let value = String(setting[setting.index(after: equals)...])
        guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == ".") }) else { return nil }
        let rendered: String
        if listSettings.contains(name.lowercased()) {
            let names = parseNames(value)
            if names.allSatisfy(\.isEmpty) {
                // SET search_path = '' is stored as search_path="" (round 26: it was dropped).
                rendered = "''"
            } else {
                rendered = names.map(SQL.identifier).joined(separator: ", ")
            }
        } else {
            rendered = SQL.literal(value)
        }
        return "\(name) TO \(rendered)"
    }

    /// Role-level settings (also per database, for databases that exist on the target). Returns
    /// how many roles that already existed had a setting changed.
    private func syncSettings(of names: [String], newlyCreated: Set<String>, notes: inout [String]) async throws -> Set<String> {
        let query = """
            SELECT r.rolname::pg_catalog.text, d.datname::pg_catalog.text, pg_catalog.unnest(s.setconfig)
            FROM pg_catalog.pg_db_role_setting s JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) s.setrole
            LEFT JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.setdatabase
            WHERE r.rolname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]) AND (s.setdatabase OPERATOR(pg_catalog.=) 0 OR d.oid IS NOT NULL)
            ORDER BY 1, 2 NULLS FIRST, 3
            """
        let wanted = try await source.query(query, [SQL.textArray(names)])
        let current = try await target.query(query, [SQL.textArray(names)])
        func key(_ result: PQResult, _ row: Int) -> String {
            (result.string(row, 0) ?? "") + "\u{0}" + (result.string(row, 1) ?? "") + "\u{0}" + (result.string(row, 2) ?? "")
        }
        let have = Set(current.rows.indices.map { key(current, $0) })
        let databases = Set(try await target.exec("SELECT datname::pg_catalog.text FROM pg_catalog.pg_database").strings.compactMap { $0 })
        var changedRoles: Set<String> = []
        var skippedDatabases: Set<String> = []
        for row in wanted.rows.indices where !have.contains(key(wanted, row)) {
            let role = wanted.string(row, 0) ?? ""
            let database = wanted.string(row, 1)
            if let database, !databases.contains(database) {
                skippedDatabases.insert(database)
                continue
            }
            guard let statement = Self.setStatement(role: role, database: database, setting: wanted.string(row, 2) ?? "") else {
                notes.append("a setting of role \"\(role)\" was skipped: it does not read as name=value")
                continue
            }
            try await target.execute(statement)
            changedRoles.insert(role)
        }
        // Settings the target has for these roles that the source does not (the same role, the
        // same database or none, the same name) are reset: the role is brought in line.
        func scopedName(_ result: PQResult, _ row: Int) -> String {
            let setting = result.string(row, 2) ?? ""
            return (result.string(row, 0) ?? "") + "\u{0}" + (result.string(row, 1) ?? "") + "\u{0}" + String(setting.prefix { $0 != "=" })
        }
        // Only where the source can say: everywhere, or in a database it has too.
        let wantedNames = Set(wanted.rows.indices.map { scopedName(wanted, $0) })
        let sourceDatabases = Set(try await source.exec("SELECT datname::pg_catalog.text FROM pg_catalog.pg_database").strings.compactMap { $0 })
        for row in current.rows.indices where !wantedNames.contains(scopedName(current, row))
            && current.string(row, 1).map(sourceDatabases.contains) ?? true {
            let role = current.string(row, 0) ?? ""
            let setting = current.string(row, 2) ?? ""
            let name = String(setting.prefix { $0 != "=" })
            guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == ".") }) else { continue }
            let scope = current.string(row, 1).map { " IN DATABASE \(SQL.identifier($0))" } ?? ""
            try await target.execute("ALTER ROLE \(SQL.identifier(role))\(scope) RESET \(name)")
            changedRoles.insert(role)
        }
        if !skippedDatabases.isEmpty {
            notes.append("role settings for databases that do not exist on the target were skipped: \(skippedDatabases.sorted().joined(separator: ", "))")
        }
        return changedRoles.subtracting(newlyCreated)
    }
}

extension String {
    func trimmingSpaces() -> String {
        var characters = Substring(self)
        while characters.first?.isWhitespace == true { characters.removeFirst() }
        while characters.last?.isWhitespace == true { characters.removeLast() }
        return String(characters)
    }
}
