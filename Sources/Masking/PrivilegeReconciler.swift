import PQ

/// Keeps one database's privileges in line with the masking policies, so that the server
/// itself refuses a masked role the real values of sensitive columns, through the proxy or
/// around it.
///
/// For each policy table (and its partitions or inheritance children):
/// * every privilege entry that lets a masked role read a sensitive column (SELECT or
///   REFERENCES on the table, or on that column, granted to the role, to a role it can
///   SET ROLE to, or to PUBLIC) is replaced by the same privilege on the other columns;
/// * those grantees get SELECT on the table's mask view (`MaskView`), which the proxy's
///   rewriter reads instead of the table;
/// * roles that are not masked and lost a sensitive column that way get it back directly;
/// * TRIGGER is taken from masked roles (a trigger's function reads whole rows);
/// * INSERT, UPDATE and DELETE are left as they were.
///
/// Every change is recorded (as the difference between the privileges before and after),
/// so that dropping the policy gives back exactly what it took away and no more. Each run
/// is one transaction under an advisory lock (several proxies may front one server), and
/// repeats only what drifted: a GRANT made later is brought back in line.
public struct PrivilegeReconciler: Sendable {
    /// What the server enforces for one relation under one policy.
    public struct Relation: Sendable, Hashable {
        /// The policy's table (`schema.table`).
        public var policy: String
        public var schema: String
        public var name: String
        public var oid: UInt32
        /// Whether the server backs the policy up on this relation.
        public var enforced: Bool
        /// Why it does not.
        public var reason: String?
        /// What this run changed: "" when nothing, else a short account.
        public var changes: String = ""
    }

    /// The advisory lock every proxy takes around a run on a database.
    static let lockKey = 7_270_747

    /// Which policy sources this proxy speaks for. Several proxies with different policy files
    /// may front one server: each gives back only what its own sources' policies took, never
    /// what another proxy's policies did (which would unmask that proxy's tables).
    public struct Ownership: Sendable, Hashable {
        /// The identity of this proxy's policy files (`files:<host>:<directory>`), if it has any.
        public var files: String?
        /// The identity of the state database whose policies it reads (`state:<database>`),
        /// shared by every proxy that reads the same one; nil when it reads none.
        public var state: String?
        /// The server's clock at this proxy's last read of the state database: a relation claimed
        /// for a state policy after that may be under a policy this proxy has not read yet.
        public var stateReadAt: String?

        public init(files: String?, state: String?, stateReadAt: String?) {
            self.files = files
            self.state = state
            self.stateReadAt = stateReadAt
        }

        /// The owner recorded for what `policy` changes.
        func owner(of policy: TablePolicy) -> String {
            policy.isFromStateDatabase ? (state ?? "state") : (files ?? "files")
        }

        /// Whether this proxy may give back what `owner` claimed (at a time before its last
        /// read of the state database, for state policies).
        func mayGiveBack(claimedBy owner: String, claimedBeforeStateRead: Bool) -> Bool {
            if owner == (files ?? "files") { return true }
            guard let state, owner == state else { return false }
            return claimedBeforeStateRead || stateReadAt == nil
        }
    }

    let connection: PQConnection
    let ownership: Ownership

    /// `ownership` nil: this proxy speaks for every source (one proxy per server).
    public init(connection: PQConnection, ownership: Ownership? = nil) {
        self.connection = connection
        self.ownership = ownership ?? Ownership(files: nil, state: "state", stateReadAt: nil)
    }

    /// Brings the database in line with `policies` (those for other databases are ignored by
    /// the caller) and gives back what policies that no longer exist took away.
    public func reconcile(_ policies: [TablePolicy]) async throws -> [Relation] {
        try await connection.exec("BEGIN")
        do {
            try await connection.exec("SET LOCAL lock_timeout = '10s'; SET LOCAL search_path = ''")
            try await connection.query("SELECT pg_catalog.pg_advisory_xact_lock($1::pg_catalog.int8)", [String(Self.lockKey)])
            let outcome = try await run(policies)
            try await connection.exec("COMMIT")
            _ = try? await endStaleSessions(outcome, policies: policies)
            return outcome
        } catch {
            _ = try? await connection.exec("ROLLBACK")
            _ = try? await connection.exec("RESET ROLE")
            throw error
        }
    }

    // MARK: - One run

    private struct Service {
        var oid: String
        var name: String
        var isSuperuser: Bool
        var bypassesRLS: Bool
    }

    private struct Target {
        var policyIndex: Int
        var oid: UInt32
        var schema: String
        var name: String
        var owner: String
        var ownerName: String
        var rowSecurity: Bool
        var forceRowSecurity: Bool
        var hasChildren: Bool
        /// For the policy's own table: the parent it inherits from, if any.
        var parent: String?
    }

    private func run(_ policies: [TablePolicy]) async throws -> [Relation] {
        let serviceRow = try await connection.exec("""
            SELECT r.oid::pg_catalog.text, r.rolname::pg_catalog.text, r.rolsuper, r.rolbypassrls
            FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER
            """)
        let service = Service(oid: serviceRow.string(0, 0) ?? "0", name: serviceRow.string(0, 1) ?? "",
                              isSuperuser: serviceRow.string(0, 2) == "t", bypassesRLS: serviceRow.string(0, 3) == "t")
        let targets = try await findTargets(policies)
        let infrastructure = try await connection.exec("""
            SELECT pg_catalog.to_regclass('pgclone_masked._changes') IS NOT NULL, pg_catalog.to_regclass('pgclone_masked._owners') IS NOT NULL,
                   EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass('pgclone_masked._owners')
                           AND attname OPERATOR(pg_catalog.=) 'policy')
            """)
        let hasInfrastructure = infrastructure.string(0, 0) == "t"
        guard !targets.isEmpty || hasInfrastructure else { return [] }
        if !hasInfrastructure || infrastructure.string(0, 1) != "t" || infrastructure.string(0, 2) != "t" { try await createInfrastructure() }
        try await protectInfrastructure()
        try await storeKey(needed: targets.contains { target in policies[target.policyIndex].columns.contains { $0.strategy.isKeyed } })

        // The roles that may be given back what they lose are those there now, before any
        // policy's masked roles are read: each statement of the pass sees roles committed (or
        // demoted from superuser) meanwhile, and such a role, in no masked list, was taken for
        // a reader that lost its columns and given them by name (a concurrent test's masked
        // role held grants in this database, found when dropping that role failed).
        let known = try await connection.exec(
            "SELECT r.oid::pg_catalog.text FROM pg_catalog.pg_roles r WHERE NOT r.rolsuper").strings.compactMap { $0 }
        var maskedRoles: [Int: [String]] = [:]
        // And those that were no superuser when the policy's masked roles were read, in the same
        // statement: a role promoted then demoted meanwhile was in no masked list, yet a reader.
        var eligibleRoles: [Int: Set<String>] = [:]
        func readMasked(_ index: Int) async throws {
            let (masked, eligible) = try await maskedAndEligible(by: policies[index])
            maskedRoles[index] = masked
            eligibleRoles[index] = eligible
        }
        var outcome: [Relation] = []
        for target in targets {
            let policy = policies[target.policyIndex]
            if maskedRoles[target.policyIndex] == nil { try await readMasked(target.policyIndex) }
            let masked = maskedRoles[target.policyIndex] ?? []
            let known = known.filter { eligibleRoles[target.policyIndex]?.contains($0) == true }
            var relation = Relation(policy: policy.qualifiedName, schema: target.schema, name: target.name, oid: target.oid, enforced: false)
            // A policy column the table lacks (a typo, another case, a rename or a drop): which
            // column it meant is unknown, so every column is held back from the masked roles
            // until the policy or the column is put right (the proxy refuses their reads of the
            // table meanwhile). What pgclone took from a column since renamed stays taken: its
            // privileges followed the column (restore keeps the record until the name is back).
            let (effective, missing) = try await effectivePolicy(target, policy: policy)
            let missingReason = missing.isEmpty ? nil : Self.missingColumnsReason(target, missing, policy)
            // One table that cannot be brought in line does not stop the others (round 36: one
            // renamed column failed every later pass over the database).
            do {
            try await isolated {
            relation.reason = try await obstacle(target, policy: effective, masked: masked, service: service)
            let exception = relation.reason == nil ? try await roleException(target, masked: masked) : nil
            if relation.reason != nil {
                relation.changes = try await restore(target.oid)
                if let missingReason { relation.reason = missingReason + "; " + (relation.reason ?? "") }
            } else {
                relation.changes = try await enforce(target, policy: effective, masked: masked, known: known)
                // A masked role the server cannot hold back (an owner, a reader of everything)
                // does not take the backstop from the others: they are held back, and that
                // role's sessions rely on the rewrite alone (the proxy sees its privileges).
                relation.enforced = exception == nil && missingReason == nil
                relation.reason = [missingReason, exception.map { "\($0); the server backs it up for the other masked roles" }].compactMap { $0 }.joined(separator: "; ")
                if relation.reason?.isEmpty == true { relation.reason = nil }
                if exception != nil { try await grantViewsToMaskedOwners(target, masked: masked, policy: effective) }
                // (After enforcing: rebuilding a view gives back first, which drops the claim.)
                try await claim(target.oid, for: ownership.owner(of: policy), policy: policy.qualifiedName)
            }
            }
            } catch {
                relation.enforced = false
                // What lets a masked role read a sensitive column is taken at least, without the
                // mask views (a reader's lock on one stopped the whole rebuild, and a column the
                // policy had just named stayed readable on the server: round 38).
                let held = (try? await isolated { try await holdBack(target, policy: effective, masked: masked) }) != nil
                // A mask view built for the policy as it was still shows a column the policy now
                // masks (round 46 F1: a masked role's own view over it, or its lock on it, stopped
                // the rebuild, and it read the new column in clear there): its grants go.
                var withdrawal = ""
                do {
                    if try await isolated({ try await withdrawStaleViews(target, policy: effective) }).any { withdrawal = "; its outdated mask views are withdrawn" }
                } catch {
                    withdrawal = "; its outdated mask views could not be withdrawn: \((error as? PQError)?.message ?? "\(error)")"
                }
                relation.reason = "\(target.schema).\(target.name) could not be brought in line with policy \(policy.qualifiedName): \((error as? PQError)?.message ?? "\(error)"); "
                    + (held ? "masked roles' privileges on its sensitive columns were taken back, without mask views until the next pass" : "its privileges stay as they were")
                    + withdrawal
            }
            outcome.append(relation)
        }
        // Views over sensitive columns read them with their owner's rights: masked roles lose them too.
        var kept = Set(targets.map { String($0.oid) })
        for view in try await exposingViews(policies, targets) {
            for index in view.policyIndices where maskedRoles[index] == nil { try await readMasked(index) }
            let masked = Array(Set(view.policyIndices.flatMap { maskedRoles[$0] ?? [] })).sorted()
            let known = known.filter { role in view.policyIndices.allSatisfy { eligibleRoles[$0]?.contains(role) == true } }
            // A view owned by a role every one of its policies masks cannot read what its owner
            // cannot: nothing to do, unless the owner reads the table whatever its privileges say
            // (a masked owner of the table: round 41 M1). An owner another of the policies
            // exempts reads that policy's columns (round 43 F3: a materialized view running
            // code counts for every policy, and was skipped when one of them masked its owner).
            let ownerMaskedByAll = view.policyIndices.allSatisfy { maskedRoles[$0]?.contains(view.owner) == true }
            guard !ownerMaskedByAll || view.ownerReadsEverything else { continue }
            kept.insert(String(view.oid))
            var relation = Relation(policy: policies[view.policyIndices[0]].qualifiedName, schema: view.schema, name: view.name, oid: view.oid, enforced: false)
            do {
                try await isolated {
                    if !service.isSuperuser && view.owner != service.oid {
                        relation.reason = "view \(view.schema).\(view.name) reads sensitive columns with the rights of its owner \(view.ownerName), and pgclone's service role \(service.name) can neither own nor manage it"
                        relation.changes = try await restore(view.oid)
                    } else {
                        relation.changes = try await enforceView(view, masked: masked, known: known)
                        relation.enforced = true
                        try await claim(view.oid, for: ownership.owner(of: policies[view.policyIndices[0]]), policy: policies[view.policyIndices[0]].qualifiedName)
                    }
                }
            } catch {
                relation.enforced = false
                relation.reason = "view \(view.schema).\(view.name) could not be brought in line: \((error as? PQError)?.message ?? "\(error)")"
            }
            outcome.append(relation)
        }
        // Relations no longer under a policy get their privileges back.
        let recorded = try await connection.exec("SELECT DISTINCT relid::pg_catalog.text FROM pgclone_masked._changes").strings.compactMap { $0 }
        let viewed = try await connection.exec("""
            SELECT DISTINCT d.refobjid::pg_catalog.text FROM pg_catalog.pg_class v
            JOIN pg_catalog.pg_rewrite r ON r.ev_class OPERATOR(pg_catalog.=) v.oid
            JOIN pg_catalog.pg_depend d ON d.objid OPERATOR(pg_catalog.=) r.oid AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass
              AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
            -- The tables the views read (not pgclone's own key table, nor the view itself).
            JOIN pg_catalog.pg_class t ON t.oid OPERATOR(pg_catalog.=) d.refobjid AND t.relnamespace OPERATOR(pg_catalog.<>) v.relnamespace
            WHERE v.relnamespace OPERATOR(pg_catalog.=) 'pgclone_masked'::pg_catalog.regnamespace
            """).strings.compactMap { $0 }
        // Only what this proxy's own sources claimed: another proxy's policies are its own to drop.
        let owners = try await connection.query("""
            SELECT o.relid::pg_catalog.text, o.owner, COALESCE(o.claimed_at OPERATOR(pg_catalog.<) $1::pg_catalog.timestamptz, false), o.policy,
                   (SELECT pg_catalog.format('%s.%s', n.nspname, c.relname) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                    WHERE c.oid OPERATOR(pg_catalog.=) o.relid)
            FROM pgclone_masked._owners o
            """, [ownership.stateReadAt])
        var claims: [String: (owner: String, beforeStateRead: Bool, policy: String?, currentName: String?)] = [:]
        for row in owners.rows.indices {
            claims[owners.string(row, 0) ?? ""] = (owners.string(row, 1) ?? "", owners.string(row, 2) == "t", owners.string(row, 3), owners.string(row, 4))
        }
        let inForce = Set(policies.map(\.qualifiedName))
        for oid in Set(recorded + viewed).subtracting(kept).sorted() {
            if let claim = claims[oid], !ownership.mayGiveBack(claimedBy: claim.owner, claimedBeforeStateRead: claim.beforeStateRead) { continue }
            if let claim = claims[oid], let policy = claim.policy, inForce.contains(policy), let name = claim.currentName {
                // Still there, under a name its policy no longer finds (a renamed table or
                // schema): it keeps what the policy took; dropping the policy gives it back.
                var relation = Relation(policy: policy, schema: String(name.split(separator: ".", maxSplits: 1).first ?? ""),
                                        name: String(name.split(separator: ".", maxSplits: 1).last ?? ""), oid: UInt32(oid) ?? 0, enforced: false)
                relation.reason = "\(name) was under policy \(policy) and no longer has its name (renamed or moved?): its privileges stay as the policy left them, and pgclone's rewrite no longer finds it; rename it back, or change or drop the policy"
                outcome.append(relation)
                continue
            }
            // (A lock a reader holds on a mask view must not stop the pass: round 38.)
            do {
                try await isolated { _ = try await restore(UInt32(oid) ?? 0) }
            } catch {
                var relation = Relation(policy: claims[oid]?.policy ?? "", schema: "", name: claims[oid]?.currentName ?? oid, oid: UInt32(oid) ?? 0, enforced: false)
                relation.reason = "privileges could not be given back yet: \((error as? PQError)?.message ?? "\(error)")"
                outcome.append(relation)
            }
        }
        return outcome
    }

    /// Records which policy source looks after a relation (the time stays while the owner does).
    /// (With the policy's name: a relation that no longer matches a policy still in force was
    /// renamed or moved away from it, and keeps what the policy took.)
    private func claim(_ oid: UInt32, for owner: String, policy: String) async throws {
        try await connection.query("""
            INSERT INTO pgclone_masked._owners AS o (relid, owner, policy) VALUES ($1::pg_catalog.oid, $2, $3)
            ON CONFLICT (relid) DO UPDATE SET owner = excluded.owner, policy = excluded.policy,
              claimed_at = CASE WHEN o.owner OPERATOR(pg_catalog.<>) excluded.owner THEN pg_catalog.clock_timestamp() ELSE o.claimed_at END
            WHERE o.owner OPERATOR(pg_catalog.<>) excluded.owner OR o.policy IS DISTINCT FROM excluded.policy
            """, [String(oid), owner, policy])
    }

    /// The policy tables that exist here, with their partitions and inheritance children.
    private func findTargets(_ policies: [TablePolicy]) async throws -> [Target] {
        guard !policies.isEmpty else { return [] }
        let values = policies.enumerated().map { index, policy in
            "(\(index), \(SQL.literal(policy.schema)), \(SQL.literal(policy.table)))"
        }.joined(separator: ", ")
        let rows = try await connection.exec("""
            WITH RECURSIVE p(i, nsp, rel) AS (VALUES \(values)),
            roots AS (
              SELECT p.i, c.oid FROM p
              JOIN pg_catalog.pg_namespace n ON n.nspname OPERATOR(pg_catalog.=) p.nsp
              JOIN pg_catalog.pg_class c ON c.relnamespace OPERATOR(pg_catalog.=) n.oid AND c.relname OPERATOR(pg_catalog.=) p.rel
              WHERE c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'p']::pg_catalog."char"[])
            ),
            d(i, oid, depth) AS (
              SELECT i, oid, 0 FROM roots
              UNION
              SELECT d.i, h.inhrelid, d.depth OPERATOR(pg_catalog.+) 1 FROM d JOIN pg_catalog.pg_inherits h ON h.inhparent OPERATOR(pg_catalog.=) d.oid
            )
            SELECT d.i::pg_catalog.text, c.oid::pg_catalog.text, n.nspname::pg_catalog.text, c.relname::pg_catalog.text,
                   c.relowner::pg_catalog.text, pg_catalog.pg_get_userbyid(c.relowner)::pg_catalog.text,
                   c.relrowsecurity, c.relforcerowsecurity, c.relhassubclass,
                   CASE WHEN d.depth OPERATOR(pg_catalog.=) 0 THEN
                     (SELECT pg_catalog.format('%I.%I', pn.nspname, pc.relname) FROM pg_catalog.pg_inherits h
                      JOIN pg_catalog.pg_class pc ON pc.oid OPERATOR(pg_catalog.=) h.inhparent
                      JOIN pg_catalog.pg_namespace pn ON pn.oid OPERATOR(pg_catalog.=) pc.relnamespace
                      WHERE h.inhrelid OPERATOR(pg_catalog.=) c.oid LIMIT 1) END
            FROM d JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) d.oid
            JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
            ORDER BY d.i, d.depth, c.oid
            """)
        return rows.rows.indices.map { row in
            Target(policyIndex: Int(rows.string(row, 0) ?? "0") ?? 0, oid: UInt32(rows.string(row, 1) ?? "0") ?? 0,
                   schema: rows.string(row, 2) ?? "", name: rows.string(row, 3) ?? "", owner: rows.string(row, 4) ?? "0",
                   ownerName: rows.string(row, 5) ?? "", rowSecurity: rows.string(row, 6) == "t",
                   forceRowSecurity: rows.string(row, 7) == "t", hasChildren: rows.string(row, 8) == "t", parent: rows.string(row, 9))
        }
    }

    /// The OIDs of the roles the policy masks: not superusers, not members of an unmasked
    /// role, and (when the policy names masked roles) members of one of those.
    private func masked(by policy: TablePolicy) async throws -> [String] {
        try await maskedAndEligible(by: policy).masked
    }

    /// The roles `policy` masks, and every role that is no superuser, read in one statement.
    private func maskedAndEligible(by policy: TablePolicy) async throws -> (masked: [String], eligible: Set<String>) {
        let rows = try await connection.query("""
            SELECT r.oid::pg_catalog.text,
                   r.rolname::pg_catalog.text OPERATOR(pg_catalog.!~) '^pg_'
                   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles u WHERE u.rolname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])
                                   AND pg_catalog.pg_has_role(r.oid, u.oid, 'MEMBER'))
                   AND ($2::pg_catalog.text[] IS NULL OR EXISTS (
                        SELECT 1 FROM pg_catalog.pg_roles u WHERE u.rolname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[])
                        AND pg_catalog.pg_has_role(r.oid, u.oid, 'MEMBER')))
            FROM pg_catalog.pg_roles r WHERE NOT r.rolsuper ORDER BY r.oid
            """, [SQL.textArray(policy.unmaskedRoles), policy.maskedRoles.map(SQL.textArray)])
        let masked = rows.rows.indices.filter { rows.string($0, 1) == "t" }.compactMap { rows.string($0, 0) }
        return (masked, Set(rows.strings.compactMap { $0 }))
    }

    /// Why the server cannot back the policy up on this relation, or nil when it can.
    private func obstacle(_ target: Target, policy: TablePolicy, masked: [String], service: Service) async throws -> String? {
        if let parent = target.parent {
            return "\(policy.qualifiedName) is a partition or inheritance child of \(parent): reads through \(parent) would not be masked; put the policy on the root table"
        }
        if !service.isSuperuser && target.owner != service.oid {
            return "pgclone's service role \(service.name) neither owns \(target.schema).\(target.name) nor is a superuser, so it cannot manage its privileges"
        }
        let rows = try await connection.query("""
            SELECT pg_catalog.string_agg(DISTINCT pg_catalog.pg_get_userbyid(a.grantor)::pg_catalog.text, ', ')
            FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
            WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND a.grantor OPERATOR(pg_catalog.<>) $2::pg_catalog.oid
              AND a.grantor OPERATOR(pg_catalog.<>) c.relowner
            """, [String(target.oid), service.oid])
        if !service.isSuperuser, let grantors = rows.string(0, 0) {
            return "privileges on \(target.schema).\(target.name) granted by \(grantors) can only be revoked by them or a superuser"
        }
        if target.rowSecurity && (service.isSuperuser || service.bypassesRLS || (target.owner == service.oid && !target.forceRowSecurity)) {
            return "\(target.schema).\(target.name) has row-level security, which would not apply to masked reads through a view owned by \(service.name)"
        }
        return nil
    }

    /// The policy's columns the relation does not have.
    private static func missingColumnsReason(_ target: Target, _ missing: [String], _ policy: TablePolicy) -> String {
        "\(target.schema).\(target.name) has no column \(missing.joined(separator: ", ")) of policy \(policy.qualifiedName) (another case, a typo, renamed or dropped?): "
            + "what pgclone holds back stays held back (every column, where the policy was never in force), and the proxy refuses masked roles' reads of the table; "
            + "correct the policy or the column"
    }

    /// Makes `name` the view `definition`, replaced in place where its columns allow it: a
    /// masked role's own view or function over a mask view (made through the proxy, whose
    /// rewrite reads the mask view) depends on it and made dropping it fail, which held every
    /// rebuild back (round 46 F1). The view starts with no grants either way, as a new one.
    private func rebuildView(_ name: String, as definition: String) async throws {
        let exists = try await connection.query("SELECT pg_catalog.to_regclass($1) IS NOT NULL", [name]).string(0, 0) == "t"
        if exists {
            do {
                try await isolated(savepoint: "pgclone_view") {
                    try await connection.exec("CREATE OR REPLACE VIEW \(name) AS \(definition)")
                }
                _ = try await revokeEveryGrant(on: name)
                return
            } catch let replacing as PQError where !Self.waited(replacing) {
                // Columns renamed, dropped, retyped, or added before the system columns of a
                // `(system)` view: only a new view can have them (a lock the view waited for
                // would stop the rest as well: that error goes on).
                try await retireView(name)
            }
        }
        try await connection.exec("CREATE VIEW \(name) AS \(definition)")
    }

    /// Whether `error` is a lock that could not be had (or a wait cut short).
    private static func waited(_ error: PQError) -> Bool {
        ["55P03", "40P01", "57014"].contains(error.sqlState ?? "")
    }

    /// Names of mask views set aside: `pgclone_retired_` and the view's oid.
    static let retiredPrefix = "pgclone_retired_"

    /// Drops the mask view `name`, or where objects depend on it (a masked role's own view or
    /// function over it, made through the proxy), renames it aside with no grant left: those
    /// objects then read nothing, and the view's name is free for its rebuild. (Dropping failed,
    /// and every masked user lost the table until the role dropped its objects: round 47 F5,
    /// after a plain ADD COLUMN.) A view set aside is dropped by a later pass once nothing
    /// depends on it.
    private func retireView(_ name: String) async throws {
        do {
            try await isolated(savepoint: "pgclone_view_drop") { try await connection.exec("DROP VIEW \(name)") }
        } catch let error as PQError where error.sqlState == "2BP01" {
            let oid = try await connection.query("SELECT pg_catalog.to_regclass($1)::pg_catalog.oid::pg_catalog.text", [name]).string(0, 0) ?? "0"
            let retired = SQL.qualified(MaskView.schema, Self.retiredPrefix + oid)
            if retired != name {
                try await connection.exec("ALTER VIEW \(name) RENAME TO \(SQL.identifier(Self.retiredPrefix + oid))")
                try await connection.exec("COMMENT ON VIEW \(retired) IS 'pgclone: a mask view set aside while objects depend on it; read by none'")
            }
            _ = try await revokeEveryGrant(on: retired)
        }
    }

    /// What the backstop enforces on `target` for `policy`, and the policy's columns the table
    /// lacks: with such a column every column is held back; otherwise generated columns
    /// computed from a sensitive one hold its value and are masked as NULL.
    private func effectivePolicy(_ target: Target, policy: TablePolicy) async throws -> (TablePolicy, missing: [String]) {
        let missing = try await missingColumns(target, policy: policy)
        var effective = policy
        if !missing.isEmpty {
            effective.columns = try await allColumns(target).map { TablePolicy.Column(name: $0, strategy: .null) }
        } else {
            let derived = try await connection.query(
                "SELECT pg_catalog.unnest(\(MaskView.derivedColumnsSQL(table: "$1::pg_catalog.oid", sensitive: "$2::pg_catalog.text[]")))",
                [String(target.oid), SQL.textArray(policy.columns.map(\.name))]).strings.compactMap { $0 }
            effective.columns += derived.sorted().map { TablePolicy.Column(name: $0, strategy: .null) }
        }
        return (effective, missing)
    }

    /// Before a pass, in a transaction of its own: mask views that no longer mask what their
    /// policy says lose every grant, and the sessions holding them open are ended. A pass is one
    /// transaction, committed at its end, and waits up to lock_timeout on each reader's lock: an
    /// open transaction that had read a mask view went on reading a column the policy had just
    /// named, in clear, for as long (round 47 H1: EXECUTE of a prepared statement, 20 to 47 s).
    /// A session that already holds a relation's lock does not see a REVOKE (PostgreSQL reads
    /// privileges at each statement, from caches refreshed when a lock is taken), so it ends.
    /// Returns how many sessions were ended.
    @discardableResult
    public func withdrawOutdatedViews(_ policies: [TablePolicy]) async throws -> Int {
        try await connection.exec("BEGIN")
        do {
            try await connection.exec("SET LOCAL lock_timeout = '10s'; SET LOCAL search_path = ''")
            try await connection.query("SELECT pg_catalog.pg_advisory_xact_lock($1::pg_catalog.int8)", [String(Self.lockKey)])
            var ended = 0
            if try await connection.exec("SELECT pg_catalog.to_regnamespace('pgclone_masked') IS NOT NULL").string(0, 0) == "t" {
                for target in try await findTargets(policies) {
                    let (effective, _) = try await effectivePolicy(target, policy: policies[target.policyIndex])
                    ended += try await withdrawStaleViews(target, policy: effective).ended
                }
            }
            try await connection.exec("COMMIT")
            return ended
        } catch {
            _ = try? await connection.exec("ROLLBACK")
            throw error
        }
    }

    /// Ends the sessions of masked roles that hold a relation this pass changed (or a partition
    /// or child of it) in a transaction begun before the pass committed. A session already
    /// holding a relation does not see a REVOKE until its transaction ends: an open
    /// transaction that had read the table went on reading a newly masked column in clear, or a
    /// role newly masked its real values (round 48 N1: a prepared statement, or a function of the
    /// role's own, for as long as it stayed open). Returns how many sessions were ended.
    @discardableResult
    func endStaleSessions(_ relations: [Relation], policies: [TablePolicy]) async throws -> Int {
        var ended = 0
        for relation in relations where !relation.changes.isEmpty {
            guard let policy = policies.first(where: { $0.qualifiedName == relation.policy }) else { continue }
            let masked = try await masked(by: policy)
            guard !masked.isEmpty else { continue }
            let count = try await connection.query("""
                WITH RECURSIVE tree(relid) AS (
                  SELECT $1::pg_catalog.oid
                  UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN tree t ON i.inhparent OPERATOR(pg_catalog.=) t.relid
                )
                SELECT pg_catalog.count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(h.pid)) FROM (
                  SELECT DISTINCT l.pid FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) l.pid
                  WHERE l.locktype OPERATOR(pg_catalog.=) 'relation' AND l.granted AND l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()
                    AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
                    AND l.relation IN (SELECT relid FROM tree)
                    AND a.xact_start OPERATOR(pg_catalog.<) pg_catalog.statement_timestamp()
                    AND a.usesysid OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.oid[])) h
                """, [String(relation.oid), SQL.oidArray(masked)]).string(0, 0)
            ended += Int(count ?? "0") ?? 0
        }
        return ended
    }

    /// Runs `body` in a savepoint of the pass: when it fails, what it did is undone and the
    /// pass goes on with the next relation.
    @discardableResult
    private func isolated<T>(savepoint: String = "pgclone_relation", _ body: () async throws -> T) async throws -> T {
        try await connection.exec("SAVEPOINT \(savepoint)")
        do {
            let result = try await body()
            try await connection.exec("RELEASE SAVEPOINT \(savepoint)")
            return result
        } catch {
            try await connection.exec("ROLLBACK TO SAVEPOINT \(savepoint); RELEASE SAVEPOINT \(savepoint)")
            _ = try? await connection.exec("RESET ROLE")
            throw error
        }
    }

    /// The entries that let a masked role read (or reference) a sensitive column, revoked and
    /// recorded (given back when the policy goes), without touching the mask views: for a table
    /// whose views cannot be rebuilt now.
    private func holdBack(_ target: Target, policy: TablePolicy, masked: [String]) async throws {
        let before = try await entries(target.oid)
        let sensitive = policy.columns.map(\.name)
        let entangled = try await entangledColumns(target, sensitive: sensitive)
        let leaky = try await connection.query(Self.leakyEntriesQuery, [String(target.oid), SQL.oidArray(masked), SQL.textArray(sensitive), SQL.textArray(entangled)])
        guard !leaky.rows.isEmpty else { return }
        for row in leaky.rows.indices {
            let column = leaky.string(row, 0), privilege = leaky.string(row, 3) ?? "SELECT"
            let granteeName = try await roleName(leaky.string(row, 1) ?? "0")
            try await asRole(leaky.string(row, 2) ?? "0") {
                try await connection.exec("REVOKE \(privilege)\(column.map { " (\(SQL.identifier($0)))" } ?? "") ON \(SQL.qualified(target.schema, target.name)) FROM \(granteeName) CASCADE")
            }
        }
        try await record(target.oid, before: before, after: try await entries(target.oid))
    }

    /// The privilege entries that let a masked role ($2) read or reference a sensitive column
    /// ($3) of the table ($1): on the table or on the column, to the role, a role it can become,
    /// or PUBLIC. TRIGGER counts: a trigger's function sees every column of OLD and NEW rows,
    /// whoever's statement fires it (round 41 H1). Columns: column (NULL for the table), grantee,
    /// grantor, privilege, grantable.
    /// UPDATE counts on the columns tied to a sensitive one ($4, `entangledColumnsQuery`): an
    /// UPDATE of one makes the server check the whole new row (round 46 F2).
    static let leakyEntriesQuery = """
        WITH masked(oid) AS (SELECT pg_catalog.unnest($2::pg_catalog.oid[])),
        entries AS (
          SELECT NULL::pg_catalog.text AS col, a.grantee, a.grantor, a.privilege_type, a.is_grantable
          FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
          WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND a.grantee OPERATOR(pg_catalog.<>) c.relowner
          UNION ALL
          SELECT att.attname::pg_catalog.text, a.grantee, a.grantor, a.privilege_type, a.is_grantable
          FROM pg_catalog.pg_attribute att, pg_catalog.aclexplode(att.attacl) a
          WHERE att.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid
            AND (att.attname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($3::pg_catalog.text[]) OR att.attname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($4::pg_catalog.text[]))
        )
        SELECT e.col, e.grantee::pg_catalog.text, e.grantor::pg_catalog.text, e.privilege_type, e.is_grantable
        FROM entries e
        WHERE ((e.privilege_type OPERATOR(pg_catalog.=) ANY (ARRAY['SELECT', 'REFERENCES', 'TRIGGER'])
                AND (e.col IS NULL OR e.col OPERATOR(pg_catalog.=) ANY ($3::pg_catalog.text[])))
               OR (e.privilege_type OPERATOR(pg_catalog.=) 'UPDATE'
                   AND (e.col OPERATOR(pg_catalog.=) ANY ($4::pg_catalog.text[]) OR (e.col IS NULL AND pg_catalog.cardinality($4::pg_catalog.text[]) OPERATOR(pg_catalog.>) 0))))
          AND (e.grantee OPERATOR(pg_catalog.=) 0 OR EXISTS (SELECT 1 FROM masked m WHERE pg_catalog.pg_has_role(m.oid, e.grantee, 'MEMBER')))
        ORDER BY e.col NULLS FIRST, e.grantee, e.privilege_type
        """

    /// The columns of table $1 whose UPDATE makes the server evaluate something over a
    /// sensitive column ($2) other than itself, and so tells something of its value by failing
    /// or not: a CHECK constraint, a unique, primary key, exclusion or foreign key constraint or
    /// any index (its key, expressions and predicate), a stored generated column's inputs (the
    /// generated column itself is theirs: computed, never the unknown). `bonus <= salary`
    /// with `bonus` writable gave `salary` exactly by binary search (round 46 F2). A NOT VALID
    /// CHECK or foreign key over a sensitive column is checked again at any UPDATE of the row,
    /// and a CHECK over the whole row (`octet_length(t::text)`) reads every column: every column
    /// then (round 47 M6). The partitions' and inheritance children's own count too: an UPDATE
    /// of the root is checked against the privileges of the root only (round 47 M3).
    static let entangledColumnsQuery = """
        WITH RECURSIVE tree(relid) AS (
          SELECT $1::pg_catalog.oid
          UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN tree t ON i.inhparent OPERATOR(pg_catalog.=) t.relid
        ),
        tied(relid, cols, whole_row, not_valid) AS (
          SELECT con.conrelid, con.conkey, 0::pg_catalog.int2 OPERATOR(pg_catalog.=) ANY (con.conkey),
                 NOT con.convalidated AND con.contype OPERATOR(pg_catalog.=) ANY (ARRAY['c', 'f']::pg_catalog."char"[])
          FROM pg_catalog.pg_constraint con WHERE con.conrelid IN (SELECT relid FROM tree) AND con.conkey IS NOT NULL
          UNION ALL
          SELECT i.indrelid, pg_catalog.array_agg(d.refobjsubid::pg_catalog.int2), false, false
          FROM pg_catalog.pg_index i JOIN pg_catalog.pg_depend d ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
            AND d.objid OPERATOR(pg_catalog.=) i.indexrelid AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
            AND d.refobjid OPERATOR(pg_catalog.=) i.indrelid AND d.refobjsubid OPERATOR(pg_catalog.>) 0
          WHERE i.indrelid IN (SELECT relid FROM tree) GROUP BY i.indrelid, i.indexrelid
          UNION ALL
          SELECT ad.adrelid, pg_catalog.array_agg(d.refobjsubid::pg_catalog.int2), false, false
          FROM pg_catalog.pg_attrdef ad JOIN pg_catalog.pg_depend d ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_attrdef'::pg_catalog.regclass
            AND d.objid OPERATOR(pg_catalog.=) ad.oid AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
            AND d.refobjid OPERATOR(pg_catalog.=) ad.adrelid AND d.refobjsubid OPERATOR(pg_catalog.>) 0 AND d.refobjsubid OPERATOR(pg_catalog.<>) ad.adnum
          WHERE ad.adrelid IN (SELECT relid FROM tree)
          GROUP BY ad.adrelid, ad.oid
        ),
        -- Columns by name: a partition's or child's numbers may differ from the table's.
        by_name(relid, cols, whole_row, not_valid) AS (
          SELECT t.relid, ARRAY(SELECT att.attname::pg_catalog.text FROM pg_catalog.pg_attribute att
                                WHERE att.attrelid OPERATOR(pg_catalog.=) t.relid AND att.attnum OPERATOR(pg_catalog.=) ANY (t.cols) AND NOT att.attisdropped),
                 t.whole_row, t.not_valid
          FROM tied t
        ),
        -- An UPDATE of a partition key moves the row into another partition, whose own
        -- constraints then judge its sensitive values (round 48 N2): the keys are tied to them.
        keys(cols) AS (
          SELECT ARRAY(SELECT att.attname::pg_catalog.text FROM pg_catalog.pg_attribute att
                       WHERE att.attrelid OPERATOR(pg_catalog.=) p.partrelid AND att.attnum OPERATOR(pg_catalog.=) ANY (p.partattrs::pg_catalog.int2[]))
          FROM pg_catalog.pg_partitioned_table p WHERE p.partrelid IN (SELECT relid FROM tree)
        ),
        named(cols, whole_row, not_valid) AS (
          SELECT b.cols, b.whole_row, b.not_valid FROM by_name b
          UNION ALL
          SELECT k.cols OPERATOR(pg_catalog.||) b.cols, b.whole_row, false FROM keys k, by_name b WHERE b.relid OPERATOR(pg_catalog.<>) $1::pg_catalog.oid
        )
        SELECT att.attname::pg_catalog.text FROM pg_catalog.pg_attribute att
        WHERE att.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND att.attnum OPERATOR(pg_catalog.>) 0 AND NOT att.attisdropped
          AND EXISTS (SELECT 1 FROM named n
                      WHERE n.whole_row
                         OR (n.not_valid AND n.cols OPERATOR(pg_catalog.&&) $2::pg_catalog.text[])
                         OR (att.attname::pg_catalog.text OPERATOR(pg_catalog.=) ANY (n.cols)
                             AND EXISTS (SELECT 1 FROM pg_catalog.unnest($2::pg_catalog.text[]) s(name)
                                         WHERE s.name OPERATOR(pg_catalog.=) ANY (n.cols) AND s.name OPERATOR(pg_catalog.<>) att.attname::pg_catalog.text)))
        ORDER BY att.attnum
        """

    /// The columns of `target` tied to a sensitive one (`entangledColumnsQuery`).
    private func entangledColumns(_ target: Target, sensitive: [String]) async throws -> [String] {
        try await connection.query(Self.entangledColumnsQuery, [String(target.oid), SQL.textArray(sensitive)]).strings.compactMap { $0 }
    }

    /// Whether which rows `target` holds, or where its rows are, tells a sensitive column's value:
    /// a partition key of it or above it (at any level) uses a sensitive column, or an expression
    /// (which may); or it inherits from a parent and a CHECK of its own bounds a sensitive column
    /// (partitioning by hand: round 45 N3). Row order, ctid and EXPLAIN ANALYZE give partitions
    /// away through the root too (round 45 N2): such a root is held back whole as well.
    private func partitionKeyIsSensitive(_ target: Target, sensitive: [String]) async throws -> Bool {
        // Its ancestors and itself, and everything below it: the key of a partition further
        // down, or a CHECK of a child, sorts the root's rows too (round 47 H2).
        try await connection.query("""
            WITH RECURSIVE below(relid) AS (
              SELECT i.inhrelid FROM pg_catalog.pg_inherits i WHERE i.inhparent OPERATOR(pg_catalog.=) $1::pg_catalog.oid
              UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN below b ON i.inhparent OPERATOR(pg_catalog.=) b.relid
            )
            SELECT EXISTS (
              SELECT 1 FROM (SELECT relid FROM pg_catalog.pg_partition_ancestors($1::pg_catalog.oid) UNION SELECT relid FROM below) a(relid)
              JOIN pg_catalog.pg_partitioned_table p ON p.partrelid OPERATOR(pg_catalog.=) a.relid
              WHERE p.partexprs IS NOT NULL
                 OR EXISTS (SELECT 1 FROM pg_catalog.unnest(p.partattrs::pg_catalog.int2[]) k(attnum)
                            JOIN pg_catalog.pg_attribute att ON att.attrelid OPERATOR(pg_catalog.=) a.relid AND att.attnum OPERATOR(pg_catalog.=) k.attnum
                            WHERE att.attname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[])))
            OR EXISTS (
              SELECT 1 FROM pg_catalog.pg_constraint co JOIN pg_catalog.pg_attribute att ON att.attrelid OPERATOR(pg_catalog.=) co.conrelid
                AND att.attnum OPERATOR(pg_catalog.=) ANY (co.conkey)
              WHERE co.contype OPERATOR(pg_catalog.=) 'c' AND co.conislocal
                AND ((co.conrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid
                      AND EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid))
                     -- (a partition's rows go by its bounds; its own CHECKs tie columns instead)
                     OR co.conrelid IN (SELECT b.relid FROM below b JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) b.relid WHERE NOT c.relispartition))
                AND att.attname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[]))
            """, [String(target.oid), SQL.textArray(sensitive)]).string(0, 0) == "t"
    }

    private func allColumns(_ target: Target) async throws -> [String] {
        try await connection.query("""
            SELECT a.attname::pg_catalog.text FROM pg_catalog.pg_attribute a
            WHERE a.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
            ORDER BY a.attnum
            """, [String(target.oid)]).strings.compactMap { $0 }
    }

    private func missingColumns(_ target: Target, policy: TablePolicy) async throws -> [String] {
        let present = Set(try await connection.query("""
            SELECT a.attname::pg_catalog.text FROM pg_catalog.pg_attribute a
            WHERE a.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
            """, [String(target.oid)]).strings.compactMap { $0 })
        return policy.columns.map(\.name).filter { !present.contains($0) }.sorted()
    }

    /// A masked role whose privileges the server cannot take: one that owns the table (or can act
    /// as its owner: an owner grants itself back what is revoked), reads every table
    /// (pg_read_all_data) or can stream the WAL (REPLICATION, as the role or one it can become).
    /// nil when there is none.
    private func roleException(_ target: Target, masked: [String]) async throws -> String? {
        let rows = try await connection.query("""
            SELECT
              (SELECT r.rolname::pg_catalog.text FROM pg_catalog.unnest($1::pg_catalog.oid[]) m(oid) JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) m.oid
               WHERE pg_catalog.pg_has_role(m.oid, $2::pg_catalog.oid, 'MEMBER') ORDER BY 1 LIMIT 1),
              (SELECT r.rolname::pg_catalog.text FROM pg_catalog.unnest($1::pg_catalog.oid[]) m(oid) JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) m.oid
               WHERE pg_catalog.pg_has_role(m.oid, 'pg_read_all_data', 'MEMBER') ORDER BY 1 LIMIT 1),
              (SELECT r.rolname::pg_catalog.text FROM pg_catalog.unnest($1::pg_catalog.oid[]) m(oid) JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) m.oid
               WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_roles g WHERE g.rolreplication AND pg_catalog.pg_has_role(m.oid, g.oid, 'MEMBER')) ORDER BY 1 LIMIT 1)
            """, [SQL.oidArray(masked), target.owner])
        if let role = rows.string(0, 0) {
            return "masked role \(role) owns \(target.schema).\(target.name) or can act as its owner \(target.ownerName), and an owner can always grant itself back what is revoked"
        }
        if let role = rows.string(0, 1) {
            return "masked role \(role) is a member of pg_read_all_data, which reads every table"
        }
        if let role = rows.string(0, 2) {
            return "masked role \(role) has the REPLICATION attribute (or can act as a role that has it): a replication connection streams every table's changes"
        }
        return nil
    }

    /// A masked owner reads the table through its mask views like every masked role (the proxy
    /// points its reads there); it holds no grant the views could stand in for, so it gets them
    /// here. (They go with the views when the policy is dropped.)
    private func grantViewsToMaskedOwners(_ target: Target, masked: [String], policy: TablePolicy) async throws {
        // (Not the views of a relation whose rows tell a sensitive key: round 45 N4.)
        guard !(try await partitionKeyIsSensitive(target, sensitive: policy.columns.map(\.name))) else { return }
        let owners = try await connection.query("""
            SELECT r.rolname::pg_catalog.text FROM pg_catalog.unnest($1::pg_catalog.oid[]) m(oid) JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) m.oid
            WHERE pg_catalog.pg_has_role(m.oid, $2::pg_catalog.oid, 'MEMBER')
              -- (pg_has_role counts a superuser a member of every role: one made superuser since
              -- the masked roles were read got the views of every table with a masked owner.)
              AND NOT r.rolsuper
            ORDER BY 1
            """, [SQL.oidArray(masked), target.owner]).strings.compactMap { $0 }
        guard !owners.isEmpty else { return }
        for only in target.hasChildren ? [false, true] : [false] {
            for system in [false, true] {
                let view = MaskView.qualifiedName(schema: target.schema, table: target.name, oid: target.oid, only: only, system: system)
                try await connection.exec("GRANT SELECT ON \(view) TO \(owners.map(SQL.identifier).joined(separator: ", "))")
            }
        }
    }

    // MARK: - Enforcing

    private struct ColumnRow {
        var name: String
        var type: String
    }

    /// The relation's columns as its mask views show them, in order.
    private func maskColumns(_ target: Target, policy: TablePolicy) async throws -> [MaskView.Column] {
        let columnRows = try await connection.query("""
            SELECT a.attname::pg_catalog.text, \(MaskView.columnTypeSQL), \(MaskView.baseTypeSQL("a.atttypid"))
            FROM pg_catalog.pg_attribute a WHERE a.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
            ORDER BY a.attnum
            """, [String(target.oid)])
        return columnRows.rows.indices.map { row in
            MaskView.Column(name: columnRows.string(row, 0) ?? "", type: columnRows.string(row, 1) ?? "",
                            strategy: policy.strategy(for: columnRows.string(row, 0) ?? ""), baseType: columnRows.string(row, 2))
        }
    }

    /// Makes the relation's mask views current and converts every privilege entry that
    /// reaches a masked role. Returns what it changed.
    private func enforce(_ target: Target, policy: TablePolicy, masked: [String], known: [String]) async throws -> String {
        let columns = try await maskColumns(target, policy: policy)
        // A partition of a table partitioned on a sensitive column holds the rows of one value
        // of it: which rows it holds is that value (round 44 F2: `SELECT id FROM patient_hiv`).
        // Masked roles read such a partition through its root only: none of its columns, none
        // of its views.
        let revealsKey = try await partitionKeyIsSensitive(target, sensitive: columns.filter { $0.strategy != nil }.map(\.name))
        let sensitive = revealsKey ? columns.map(\.name) : columns.filter { $0.strategy != nil }.map(\.name)
        let plain = revealsKey ? [] : columns.filter { $0.strategy == nil }.map(\.name)
        // The table's view, the one of its own rows when it has children, and each with the
        // system columns (for statements that name ctid, xmin...).
        var views: [(only: Bool, system: Bool, definition: String)] = []
        for only in target.hasChildren ? [false, true] : [false] {
            for system in [false, true] {
                views.append((only, system, MaskView.definition(schema: target.schema, table: target.name, oid: target.oid, columns: columns, only: only, system: system)))
            }
        }
        var changes: [String] = []
        // A view that masks something else (an older policy, other columns) is rebuilt from the
        // privileges as they were before pgclone touched them.
        var current = true
        for view in views {
            let name = MaskView.qualifiedName(schema: target.schema, table: target.name, oid: target.oid, only: view.only, system: view.system)
            let comment = try await connection.query(
                "SELECT pg_catalog.obj_description(pg_catalog.to_regclass($1), 'pg_class')", [name]).string(0, 0)
            if comment != MaskView.comment(schema: target.schema, table: target.name, columns: columns) { current = false }
        }
        let viewNames = views.map { MaskView.qualifiedName(schema: target.schema, table: target.name, oid: target.oid, only: $0.only, system: $0.system) }
        if !current {
            let restored = try await restore(target.oid, keepingViews: true)
            if !restored.isEmpty { changes.append(restored) }
            for old in try await maskViews(of: target.oid) where !viewNames.contains(old.name) {
                try await retireView(old.name)
            }
            for (view, name) in zip(views, viewNames) {
                try await rebuildView(name, as: view.definition)
                try await connection.exec("COMMENT ON VIEW \(name) IS \(SQL.literal(MaskView.comment(schema: target.schema, table: target.name, columns: columns)))")
            }
            changes.append("mask view created")
        }
        if revealsKey {
            for view in viewNames where try await revokeEveryGrant(on: view) {
                changes.append("the views of a relation whose rows tell a sensitive key's value withdrawn")
            }
        }

        // A REVOKE made since (of the table, which takes the column grants pgclone made in its
        // place too) takes away what the mask view stood in for: the grantee loses the view as
        // well, and what pgclone recorded for it (dropping the policy must not give it back).
        let withdrawn = try await connection.query("""
            SELECT DISTINCT c.grantee::pg_catalog.text FROM pgclone_masked._changes c
            WHERE c.relid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND c.action OPERATOR(pg_catalog.=) 'added' AND c.column_name IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute att, pg_catalog.aclexplode(att.attacl) a
                              WHERE att.attrelid OPERATOR(pg_catalog.=) c.relid AND att.attname::pg_catalog.text OPERATOR(pg_catalog.=) c.column_name
                                AND a.grantee OPERATOR(pg_catalog.=) c.grantee AND a.privilege_type OPERATOR(pg_catalog.=) c.privilege)
            """, [String(target.oid)]).strings.compactMap { $0 }
        for grantee in withdrawn {
            let granteeName = try await roleName(grantee)
            let exists = try await connection.query("SELECT $1::pg_catalog.oid OPERATOR(pg_catalog.=) 0 OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid)", [grantee]).string(0, 0) == "t"
            if exists {
                for view in viewNames { try await connection.exec("REVOKE SELECT ON \(view) FROM \(granteeName)") }
            }
            try await connection.query("DELETE FROM pgclone_masked._changes WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND grantee OPERATOR(pg_catalog.=) $2::pg_catalog.oid",
                                       [String(target.oid), grantee])
            changes.append("\(granteeName) lost its grants on the table: its mask view grant withdrawn")
        }

        // A masked role keeps what it may read of a policy table, not the power to grant it: an
        // uncommitted GRANT under a grant option held the backstop's REVOKE off for as long as
        // its transaction stayed open, when the policy came to name that column (round 39).
        let grantOptions = try await connection.query("""
            WITH masked(oid) AS (SELECT pg_catalog.unnest($2::pg_catalog.oid[])),
            entries AS (
              SELECT NULL::pg_catalog.text AS col, a.grantee, a.grantor, a.privilege_type
              FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
              WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND a.grantee OPERATOR(pg_catalog.<>) c.relowner AND a.is_grantable
              UNION ALL
              SELECT att.attname::pg_catalog.text, a.grantee, a.grantor, a.privilege_type
              FROM pg_catalog.pg_attribute att, pg_catalog.aclexplode(att.attacl) a
              WHERE att.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND att.attnum OPERATOR(pg_catalog.>) 0 AND NOT att.attisdropped AND a.is_grantable
            )
            SELECT e.col, e.grantee::pg_catalog.text, e.grantor::pg_catalog.text, e.privilege_type FROM entries e
            WHERE EXISTS (SELECT 1 FROM masked m WHERE pg_catalog.pg_has_role(m.oid, e.grantee, 'MEMBER'))
            """, [String(target.oid), SQL.oidArray(masked)])
        if !grantOptions.rows.isEmpty {
            let before = try await entries(target.oid)
            for row in grantOptions.rows.indices {
                let column = grantOptions.string(row, 0), privilege = grantOptions.string(row, 3) ?? "SELECT"
                let granteeName = try await roleName(grantOptions.string(row, 1) ?? "0")
                try await asRole(grantOptions.string(row, 2) ?? "0") {
                    try await connection.exec("REVOKE GRANT OPTION FOR \(privilege)\(column.map { " (\(SQL.identifier($0)))" } ?? "") ON \(SQL.qualified(target.schema, target.name)) FROM \(granteeName) CASCADE")
                }
            }
            try await record(target.oid, before: before, after: try await entries(target.oid))
            changes.append("grant options of masked roles taken back")
        }

        // Entries that let a masked role read a sensitive column (or test it by updating another).
        let entangled = try await entangledColumns(target, sensitive: sensitive)
        let updatable = columns.map(\.name).filter { !entangled.contains($0) }
        let leaky = try await connection.query(Self.leakyEntriesQuery, [String(target.oid), SQL.oidArray(masked), SQL.textArray(sensitive), SQL.textArray(entangled)])
        guard !leaky.rows.isEmpty else { return changes.joined(separator: "; ") }

        let before = try await entries(target.oid)
        let readersBefore = try await sensitiveReaders(target.oid, sensitive: sensitive, masked: masked, known: known)
        var viewGrants: [String: Set<String>?] = [:] // grantee → columns (nil: the whole view)
        for row in leaky.rows.indices {
            let column = leaky.string(row, 0)
            let grantee = leaky.string(row, 1) ?? "0"
            let grantor = leaky.string(row, 2) ?? "0"
            let privilege = leaky.string(row, 3) ?? "SELECT"
            let grantable = leaky.string(row, 4) == "t"
            let granteeName = try await roleName(grantee)
            try await asRole(grantor) {
                if let column {
                    try await connection.exec("REVOKE \(privilege) (\(SQL.identifier(column))) ON \(SQL.qualified(target.schema, target.name)) FROM \(granteeName) CASCADE")
                } else {
                    try await connection.exec("REVOKE \(privilege) ON \(SQL.qualified(target.schema, target.name)) FROM \(granteeName) CASCADE")
                    // TRIGGER is the table's as a whole (no column has it): taken, not narrowed.
                    // UPDATE stays on every column but those tied to a sensitive one.
                    let kept = privilege == "UPDATE" ? updatable : plain
                    if !kept.isEmpty && privilege != "TRIGGER" {
                        try await connection.exec("GRANT \(privilege) (\(kept.map(SQL.identifier).joined(separator: ", "))) ON \(SQL.qualified(target.schema, target.name)) TO \(granteeName)\(grantable ? " WITH GRANT OPTION" : "")")
                    }
                }
            }
            guard privilege == "SELECT" else { continue }
            if column == nil {
                viewGrants[grantee] = .some(nil)
            } else if case .some(.some(var set)) = viewGrants[grantee] {
                set.insert(column!)
                viewGrants[grantee] = set
            } else if viewGrants[grantee] == nil {
                // The columns the grantee may read of the table, now masked in the view.
                let readable = try await connection.query("""
                    SELECT att.attname::pg_catalog.text FROM pg_catalog.pg_attribute att, pg_catalog.aclexplode(att.attacl) a
                    WHERE att.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND a.grantee OPERATOR(pg_catalog.=) $2::pg_catalog.oid AND a.privilege_type OPERATOR(pg_catalog.=) 'SELECT'
                    """, [String(target.oid), grantee]).strings.compactMap { $0 }
                viewGrants[grantee] = .some(Set(readable).union([column!]))
            }
        }
        if revealsKey { viewGrants = [:] }
        for (grantee, columns) in viewGrants.sorted(by: { $0.key < $1.key }) {
            let granteeName = try await roleName(grantee)
            for view in viewNames {
                if let columns {
                    // (Not the system columns: as on the table, a grantee of some columns reads none.)
                    try await connection.exec("GRANT SELECT (\(columns.sorted().map(SQL.identifier).joined(separator: ", "))) ON \(view) TO \(granteeName)")
                } else {
                    try await connection.exec("GRANT SELECT ON \(view) TO \(granteeName)")
                }
            }
        }
        // Roles that are not masked keep what they could read: the policy's unmasked roles first
        // (their members inherit), then any other role that still lost a column.
        for round in 0..<2 {
            let readersNow = try await sensitiveReaders(target.oid, sensitive: sensitive, masked: masked, known: known)
            var lost: [String: [String]] = [:]
            for reader in readersBefore.subtracting(readersNow) { lost[reader.role, default: []].append(reader.column) }
            for (role, lostColumns) in lost.sorted(by: { $0.key < $1.key }) {
                let name = try await connection.query("SELECT pg_catalog.pg_get_userbyid($1::pg_catalog.oid)::pg_catalog.text", [role]).string(0, 0) ?? ""
                guard round == 1 || policy.unmaskedRoles.contains(name) else { continue }
                try await connection.exec("GRANT SELECT (\(lostColumns.sorted().map(SQL.identifier).joined(separator: ", "))) ON \(SQL.qualified(target.schema, target.name)) TO \(SQL.identifier(name))")
            }
        }
        try await record(target.oid, before: before, after: try await entries(target.oid))
        changes.append("\(leaky.rows.count) privilege \(leaky.rows.count == 1 ? "entry" : "entries") on sensitive columns converted")
        return changes.joined(separator: "; ")
    }

    private struct ExposingView {
        var oid: UInt32
        var schema: String
        var name: String
        var owner: String
        var ownerName: String
        var policyIndices: [Int]
        /// Whether the owner reads the policy tables whatever their privileges say: it owns one
        /// (or acts as its owner), is a superuser or has pg_read_all_data.
        var ownerReadsEverything: Bool
        /// Rules besides a view's own (`_RETURN`): they run their actions with the owner's rights
        /// for whoever writes to the relation.
        var hasRules: Bool
    }

    /// The views and materialized views that read a sensitive column of a policy table.
    private func exposingViews(_ policies: [TablePolicy], _ targets: [Target]) async throws -> [ExposingView] {
        guard !targets.isEmpty else { return [] }
        let values = targets.map { target in
            "(\(target.policyIndex), \(target.oid)::pg_catalog.oid, \(SQL.literal(SQL.textArray(policies[target.policyIndex].columns.map(\.name))))::pg_catalog.text[])"
        }.joined(separator: ", ")
        let rows = try await connection.exec("""
            WITH RECURSIVE t(i, reloid, sens) AS (VALUES \(values)),
            \(MaskView.exposingViewsCTE(name: "exposing", tables: "t"))
            SELECT e.oid::pg_catalog.text, n.nspname::pg_catalog.text, c.relname::pg_catalog.text, c.relowner::pg_catalog.text,
                   pg_catalog.pg_get_userbyid(c.relowner)::pg_catalog.text, pg_catalog.string_agg(DISTINCT e.i::pg_catalog.text, ','),
                   (EXISTS (SELECT 1 FROM t JOIN pg_catalog.pg_class tc ON tc.oid OPERATOR(pg_catalog.=) t.reloid
                            WHERE pg_catalog.pg_has_role(c.relowner, tc.relowner, 'USAGE'))
                    OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles o WHERE o.oid OPERATOR(pg_catalog.=) c.relowner AND o.rolsuper)
                    OR pg_catalog.pg_has_role(c.relowner, 'pg_read_all_data', 'USAGE'))::pg_catalog.text,
                   EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r WHERE r.ev_class OPERATOR(pg_catalog.=) c.oid AND r.rulename OPERATOR(pg_catalog.<>) '_RETURN')::pg_catalog.text
            FROM exposing e JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) e.oid
            JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
            -- Views, materialized views, and tables whose rules read sensitive columns (a rule
            -- runs with its table owner's rights: DO INSTEAD SELECT hands the rows to whoever
            -- fires it; round 42 N2). Policy tables themselves are brought in line above.
            WHERE (c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['v', 'm']::pg_catalog."char"[])
                   OR (c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'p']::pg_catalog."char"[]) AND NOT EXISTS (SELECT 1 FROM t WHERE t.reloid OPERATOR(pg_catalog.=) c.oid)))
            GROUP BY 1, 2, 3, 4, 5, c.relowner, c.oid ORDER BY 1
            """)
        return rows.rows.indices.map { row in
            ExposingView(oid: UInt32(rows.string(row, 0) ?? "0") ?? 0, schema: rows.string(row, 1) ?? "", name: rows.string(row, 2) ?? "",
                         owner: rows.string(row, 3) ?? "0", ownerName: rows.string(row, 4) ?? "",
                         policyIndices: (rows.string(row, 5) ?? "0").split(separator: ",").compactMap { Int($0) },
                         ownerReadsEverything: rows.string(row, 6) != "false", hasRules: rows.string(row, 7) == "true")
        }
    }

    /// Takes SELECT on the view (and its columns) from every grantee a masked role can act as;
    /// roles that are not masked and lose it get it back directly.
    /// TRIGGER goes too (an INSTEAD OF trigger sees the rows a DELETE or UPDATE of the view would
    /// change; round 42 N1), and every privilege that fires a rule reading sensitive columns.
    private func enforceView(_ view: ExposingView, masked: [String], known: [String]) async throws -> String {
        let privileges = view.hasRules ? ["SELECT", "INSERT", "UPDATE", "DELETE", "TRIGGER"] : ["SELECT", "TRIGGER"]
        let leaky = try await connection.query("""
            WITH masked(oid) AS (SELECT pg_catalog.unnest($2::pg_catalog.oid[])),
            entries AS (
              SELECT NULL::pg_catalog.text AS col, a.grantee, a.grantor, a.privilege_type FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
              WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND a.grantee OPERATOR(pg_catalog.<>) c.relowner
              UNION ALL
              SELECT att.attname::pg_catalog.text, a.grantee, a.grantor, a.privilege_type FROM pg_catalog.pg_attribute att, pg_catalog.aclexplode(att.attacl) a
              WHERE att.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid
            )
            SELECT e.col, e.grantee::pg_catalog.text, e.grantor::pg_catalog.text, e.privilege_type FROM entries e
            WHERE e.privilege_type OPERATOR(pg_catalog.=) ANY ($3::pg_catalog.text[])
              AND (e.grantee OPERATOR(pg_catalog.=) 0 OR EXISTS (SELECT 1 FROM masked m WHERE pg_catalog.pg_has_role(m.oid, e.grantee, 'MEMBER')))
            ORDER BY e.col NULLS FIRST, e.grantee, e.privilege_type
            """, [String(view.oid), SQL.oidArray(masked), SQL.textArray(privileges)])
        guard !leaky.rows.isEmpty else { return "" }
        let qualified = SQL.qualified(view.schema, view.name)
        let readers = """
            SELECT r.oid::pg_catalog.text FROM pg_catalog.pg_roles r
            WHERE NOT r.rolsuper AND r.rolname::pg_catalog.text OPERATOR(pg_catalog.!~) '^pg_' AND r.oid OPERATOR(pg_catalog.=) ANY ($3::pg_catalog.oid[])
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest($2::pg_catalog.oid[]) m(oid) WHERE pg_catalog.pg_has_role(m.oid, r.oid, 'MEMBER'))
              AND pg_catalog.has_table_privilege(r.oid, $1::pg_catalog.oid, 'SELECT')
            """
        let before = try await entries(view.oid)
        let readersBefore = Set(try await connection.query(readers, [String(view.oid), SQL.oidArray(masked), SQL.oidArray(known)]).strings.compactMap { $0 })
        for row in leaky.rows.indices {
            let column = leaky.string(row, 0)
            let grantee = try await roleName(leaky.string(row, 1) ?? "0")
            try await asRole(leaky.string(row, 2) ?? "0") {
                try await connection.exec("REVOKE \(leaky.string(row, 3) ?? "SELECT")\(column.map { " (\(SQL.identifier($0)))" } ?? "") ON \(qualified) FROM \(grantee) CASCADE")
            }
        }
        let readersAfter = Set(try await connection.query(readers, [String(view.oid), SQL.oidArray(masked), SQL.oidArray(known)]).strings.compactMap { $0 })
        for role in readersBefore.subtracting(readersAfter).sorted() {
            try await connection.exec("GRANT SELECT ON \(qualified) TO \(try await roleName(role))")
        }
        try await record(view.oid, before: before, after: try await entries(view.oid))
        return "\(privileges.joined(separator: ", ")) taken from masked roles on a \(view.hasRules ? "relation whose rules read" : "view over") sensitive columns"
    }

    private struct Reader: Hashable {
        var role: String
        var column: String
    }

    /// Roles (not masked, not superusers, with no masked role among their members) that can
    /// read each sensitive column.
    private func sensitiveReaders(_ oid: UInt32, sensitive: [String], masked: [String], known: [String]) async throws -> Set<Reader> {
        let rows = try await connection.query("""
            SELECT r.oid::pg_catalog.text, c.col FROM pg_catalog.pg_roles r, pg_catalog.unnest($2::pg_catalog.text[]) c(col)
            WHERE NOT r.rolsuper AND r.rolname::pg_catalog.text OPERATOR(pg_catalog.!~) '^pg_' AND r.oid OPERATOR(pg_catalog.=) ANY ($4::pg_catalog.oid[])
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest($3::pg_catalog.oid[]) m(oid) WHERE pg_catalog.pg_has_role(m.oid, r.oid, 'MEMBER'))
              AND pg_catalog.has_column_privilege(r.oid, $1::pg_catalog.oid, c.col, 'SELECT')
            """, [String(oid), SQL.textArray(sensitive), SQL.oidArray(masked), SQL.oidArray(known)])
        return Set(rows.rows.indices.map { Reader(role: rows.string($0, 0) ?? "", column: rows.string($0, 1) ?? "") })
    }

    // MARK: - Records

    private struct Entry: Hashable {
        var column: String?
        var grantee: String
        var grantor: String
        var privilege: String
        var grantable: Bool
    }

    /// Every privilege entry on the relation and its columns (owner's own included).
    private func entries(_ oid: UInt32) async throws -> Set<Entry> {
        let rows = try await connection.query("""
            SELECT NULL::pg_catalog.text, a.grantee::pg_catalog.text, a.grantor::pg_catalog.text, a.privilege_type, a.is_grantable
            FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid
            UNION ALL
            SELECT att.attname::pg_catalog.text, a.grantee::pg_catalog.text, a.grantor::pg_catalog.text, a.privilege_type, a.is_grantable
            FROM pg_catalog.pg_attribute att, pg_catalog.aclexplode(att.attacl) a WHERE att.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid
            """, [String(oid)])
        return Set(rows.rows.indices.map { row in
            Entry(column: rows.string(row, 0), grantee: rows.string(row, 1) ?? "0", grantor: rows.string(row, 2) ?? "0",
                  privilege: rows.string(row, 3) ?? "", grantable: rows.string(row, 4) == "t")
        })
    }

    /// Records the difference: entries that disappeared were revoked, new ones were added.
    private func record(_ oid: UInt32, before: Set<Entry>, after: Set<Entry>) async throws {
        let changes = before.subtracting(after).map { ("revoked", $0) } + after.subtracting(before).map { ("added", $0) }
        for (action, entry) in changes {
            try await connection.query("""
                INSERT INTO pgclone_masked._changes (relid, action, column_name, grantee, grantor, privilege, grantable)
                VALUES ($1::pg_catalog.oid, $2, $3, $4::pg_catalog.oid, $5::pg_catalog.oid, $6, $7::pg_catalog.bool)
                """, [String(oid), action, entry.column, entry.grantee, entry.grantor, entry.privilege, entry.grantable ? "true" : "false"])
        }
    }

    /// Gives back what pgclone changed on the relation and drops its mask views (or, for a
    /// rebuild, leaves them to be replaced in place).
    @discardableResult
    func restore(_ oid: UInt32, keepingViews: Bool = false) async throws -> String {
        let exists = try await connection.query("SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid", [String(oid)])
        // A column renamed since keeps its record (and what was taken from it stays taken: its
        // privileges followed it) until its name is back; giving back by the old name would fail.
        let rows = try await connection.query("""
            SELECT action, column_name, grantee::pg_catalog.text, grantor::pg_catalog.text, privilege, grantable,
                   pg_catalog.pg_get_userbyid(grantee)::pg_catalog.text,
                   EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) grantee) OR grantee OPERATOR(pg_catalog.=) 0
            FROM pgclone_masked._changes ch WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.oid
              AND (column_name IS NULL OR EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid OPERATOR(pg_catalog.=) ch.relid
                                                  AND a.attname::pg_catalog.text OPERATOR(pg_catalog.=) ch.column_name AND NOT a.attisdropped))
            ORDER BY id
            """, [String(oid)])
        var given = 0
        if let table = exists.string(0, 0) {
            struct Change { var action: String; var entry: Entry; var granteeExists: Bool }
            let changes = rows.rows.indices.map { row in
                Change(action: rows.string(row, 0) ?? "", entry: Entry(
                    column: rows.string(row, 1), grantee: rows.string(row, 2) ?? "0", grantor: rows.string(row, 3) ?? "0",
                    privilege: rows.string(row, 4) ?? "", grantable: rows.string(row, 5) == "t"), granteeExists: rows.string(row, 7) == "t")
            }
            for change in changes where change.action == "added" && change.granteeExists {
                let entry = change.entry
                let granteeName = try await roleName(entry.grantee)
                try await asRole(entry.grantor) {
                    try await connection.exec("REVOKE \(entry.privilege)\(entry.column.map { " (\(SQL.identifier($0)))" } ?? "") ON \(table) FROM \(granteeName) CASCADE")
                }
            }
            // Grants whose grantor needs its own grant option back first go last.
            var pending = changes.filter { $0.action == "revoked" && $0.granteeExists }
            while !pending.isEmpty {
                let grantees = Set(pending.map(\.entry.grantee))
                let ready = pending.filter { !grantees.contains($0.entry.grantor) }
                let batch = ready.isEmpty ? pending : ready
                for change in batch {
                    let entry = change.entry
                    let granteeName = try await roleName(entry.grantee)
                    try await asRole(entry.grantor) {
                        try await connection.exec("GRANT \(entry.privilege)\(entry.column.map { " (\(SQL.identifier($0)))" } ?? "") ON \(table) TO \(granteeName)\(entry.grantable ? " WITH GRANT OPTION" : "")")
                    }
                    given += 1
                }
                pending.removeAll { change in batch.contains { $0.entry == change.entry && $0.action == change.action } }
            }
        }
        try await connection.query("""
            DELETE FROM pgclone_masked._changes ch WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.oid
              AND (column_name IS NULL OR EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid OPERATOR(pg_catalog.=) ch.relid
                                                  AND a.attname::pg_catalog.text OPERATOR(pg_catalog.=) ch.column_name AND NOT a.attisdropped))
            """, [String(oid)])
        try await connection.query("DELETE FROM pgclone_masked._owners WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.oid", [String(oid)])
        let views = keepingViews ? [] : try await maskViews(of: oid).map(\.name)
        for view in views { try await retireView(view) }
        var account: [String] = []
        if given > 0 { account.append("\(given) privilege \(given == 1 ? "entry" : "entries") given back") }
        if !views.isEmpty { account.append("mask view dropped") }
        return account.joined(separator: "; ")
    }

    /// The mask views of a relation (qualified names) with their comments, which say what they mask.
    private func maskViews(of oid: UInt32) async throws -> [(name: String, comment: String?)] {
        let rows = try await connection.query("""
            SELECT DISTINCT v.relname::pg_catalog.text, pg_catalog.obj_description(v.oid, 'pg_class') FROM pg_catalog.pg_class v
            JOIN pg_catalog.pg_rewrite r ON r.ev_class OPERATOR(pg_catalog.=) v.oid
            JOIN pg_catalog.pg_depend d ON d.objid OPERATOR(pg_catalog.=) r.oid AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass
            WHERE v.relnamespace OPERATOR(pg_catalog.=) 'pgclone_masked'::pg_catalog.regnamespace AND d.refobjid OPERATOR(pg_catalog.=) $1::pg_catalog.oid
              AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
            ORDER BY 1
            """, [String(oid)])
        // Named as MaskView names them (compared with its names).
        return rows.rows.indices.map { (SQL.qualified(MaskView.schema, rows.string($0, 0) ?? ""), rows.string($0, 1)) }
    }

    /// Takes every grant on the relation's mask views that no longer mask what `policy` says
    /// (grants take no lock: this works while a reader holds a view or an object depends on it,
    /// which is what stopped the rebuild), and the sessions (not a superuser's) holding a lock
    /// on them are ended. The next pass that rebuilds them grants again. Returns whether there
    /// was any (withdrawn now or by an earlier pass), and how many sessions were ended.
    private func withdrawStaleViews(_ target: Target, policy: TablePolicy) async throws -> (any: Bool, ended: Int) {
        let comment = MaskView.comment(schema: target.schema, table: target.name, columns: try await maskColumns(target, policy: policy))
        let stale = try await maskViews(of: target.oid).filter { $0.comment != comment }
        guard !stale.isEmpty else { return (false, 0) }
        for view in stale { _ = try await revokeEveryGrant(on: view.name) }
        let ended = try await connection.query("""
            SELECT pg_catalog.count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(h.pid)) FROM (
              SELECT DISTINCT l.pid FROM pg_catalog.pg_locks l
              JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) l.pid
              JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.usesysid
              WHERE l.locktype OPERATOR(pg_catalog.=) 'relation' AND l.granted AND l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()
                AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
                AND l.relation OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.regclass[]) AND NOT r.rolsuper) h
            """, [SQL.textArray(stale.map(\.name))]).string(0, 0)
        return (true, Int(ended ?? "0") ?? 0)
    }

    // MARK: - Helpers

    private func createInfrastructure() async throws {
        try await connection.exec("""
            CREATE SCHEMA IF NOT EXISTS pgclone_masked;
            COMMENT ON SCHEMA pgclone_masked IS 'pgclone: views of masked values that masked roles read instead of policy tables';
            GRANT USAGE ON SCHEMA pgclone_masked TO PUBLIC;
            CREATE TABLE IF NOT EXISTS pgclone_masked._changes (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                relid oid NOT NULL,
                action text NOT NULL CHECK (action IN ('revoked', 'added')),
                column_name text,
                grantee oid NOT NULL,
                grantor oid NOT NULL,
                privilege text NOT NULL,
                grantable boolean NOT NULL,
                changed_at timestamptz NOT NULL DEFAULT pg_catalog.now()
            );
            COMMENT ON TABLE pgclone_masked._changes IS 'pgclone: privileges changed by masking policies, given back when a policy goes';
            REVOKE ALL ON pgclone_masked._changes FROM PUBLIC;
            CREATE TABLE IF NOT EXISTS pgclone_masked._key (inner_pad bytea NOT NULL, outer_pad bytea NOT NULL);
            COMMENT ON TABLE pgclone_masked._key IS 'pgclone: HMAC pads of keyed mask strategies, read only by the owner of the mask views';
            REVOKE ALL ON pgclone_masked._key FROM PUBLIC;
            CREATE TABLE IF NOT EXISTS pgclone_masked._owners (
                relid oid PRIMARY KEY,
                owner text NOT NULL,
                claimed_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
                policy text
            );
            ALTER TABLE pgclone_masked._owners ADD COLUMN IF NOT EXISTS policy text;
            COMMENT ON TABLE pgclone_masked._owners IS 'pgclone: which policy source (one proxy''s policy files, or the state database) looks after each relation';
            REVOKE ALL ON pgclone_masked._owners FROM PUBLIC;
            """)
    }

    private func protectInfrastructure() async throws {
        // Whatever was granted on them since (GRANT ... ON ALL TABLES IN SCHEMA pgclone_masked,
        // meant for the mask views, took the HMAC pads too: round 43 F4) goes again, every pass.
        for table in ["_key", "_changes", "_owners"] {
            _ = try await revokeEveryGrant(on: SQL.qualified(MaskView.schema, table))
        }
    }

    /// Takes every grant on `relation` (a qualified name) but its owner's, on the relation and on
    /// its columns (round 44 F4: a column grant survived); returns whether there was any.
    private func revokeEveryGrant(on relation: String) async throws -> Bool {
        let grantees = try await connection.query("""
            SELECT DISTINCT CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END
            FROM pg_catalog.pg_class c
            CROSS JOIN LATERAL (SELECT (pg_catalog.aclexplode(c.relacl)).grantee
                                UNION SELECT (pg_catalog.aclexplode(att.attacl)).grantee FROM pg_catalog.pg_attribute att WHERE att.attrelid OPERATOR(pg_catalog.=) c.oid) a
            LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee
            WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1) AND a.grantee OPERATOR(pg_catalog.<>) c.relowner
            """, [relation]).strings.compactMap { $0 }
        // (REVOKE ALL on the relation takes its column grants too.)
        for grantee in grantees { try await connection.exec("REVOKE ALL ON \(relation) FROM \(grantee) CASCADE") }
        return !grantees.isEmpty
    }

    /// Keeps the HMAC pads of keyed strategies where the mask views (and only their owner) read them.
    private func storeKey(needed: Bool) async throws {
        guard needed, let pads = MaskingKey.hexPads else { return }
        let current = try await connection.exec("SELECT pg_catalog.encode(inner_pad, 'hex'), pg_catalog.encode(outer_pad, 'hex') FROM pgclone_masked._key")
        guard current.rows.count != 1 || current.string(0, 0) != pads.inner || current.string(0, 1) != pads.outer else { return }
        try await connection.exec("DELETE FROM pgclone_masked._key")
        try await connection.query("INSERT INTO pgclone_masked._key VALUES (pg_catalog.decode($1, 'hex'), pg_catalog.decode($2, 'hex'))", [pads.inner, pads.outer])
    }

    private func roleName(_ oid: String) async throws -> String {
        if oid == "0" { return "PUBLIC" }
        let name = try await connection.query("SELECT pg_catalog.pg_get_userbyid($1::pg_catalog.oid)::pg_catalog.text", [oid]).string(0, 0) ?? ""
        return SQL.identifier(name)
    }

    /// Runs `body` as `role` (a grant is revoked or given by its grantor); as the service role
    /// itself when that is the role or the role no longer exists.
    private func asRole(_ oid: String, _ body: () async throws -> Void) async throws {
        let row = try await connection.query("""
            SELECT r.rolname::pg_catalog.text, r.rolname OPERATOR(pg_catalog.=) CURRENT_USER FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid
            """, [oid])
        guard let name = row.string(0, 0), row.string(0, 1) != "t" else {
            try await body()
            return
        }
        try await connection.exec("SET ROLE \(SQL.identifier(name))")
        try await body()
        try await connection.exec("RESET ROLE")
    }
}
