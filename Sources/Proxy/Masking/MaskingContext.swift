import CloneEngine
import Foundation
import Masking
import PQ

/// What a masked session must not see, as of its current role, search_path and the
/// policy version: the masked tables with all their columns, and the views and
/// functions that read them.
public struct MaskingContext: Sendable, Hashable {
    public struct Table: Sendable, Hashable {
        public struct Column: Sendable, Hashable {
            public var number: Int
            public var name: String
            public var type: String
            public var strategy: MaskStrategy?
        }

        public var oid: UInt32
        public var schema: String
        public var name: String
        /// Whether an unqualified reference to `name` reaches this table under the session's search_path.
        public var resolvesUnqualified: Bool
        public var columns: [Column]
        /// A partitioned table (its rows live in the partitions; COPY of it is an error).
        public var isPartitioned = false

        /// The table has partitions or inheritance children.
        public var hasChildren = false
        /// How reads of the table are masked.
        public var reads = Reads.inline
        /// The server itself refuses the session's roles the sensitive columns: neither the
        /// current role nor any role the login (or current) role can become holds SELECT or
        /// REFERENCES on one, as the server answered when the context was read.
        public var serverDenies = false
        /// Columns the table's policy names that the table does not have (a typo, another
        /// case, a rename): the column meant may be one read unmasked, so reads are refused.
        public var missingPolicyColumns: [String] = []

        public enum Reads: Sendable, Hashable {
            /// The server backs the policy up: reads go to pgclone's mask views (the second for `ONLY`).
            case views(all: String, only: String)
            /// No mask view: reads become a subquery over the table (the policy relies on the rewrite alone).
            case inline
            /// A mask view exists but masks something other than what the policies say now:
            /// reads are refused until pgclone has brought it up to date.
            case stale
        }

        /// The relation a masked read of this table goes to, with the table's column names,
        /// order and types, holding masked values; or why the read is refused.
        /// With `system`, the relation also has the table's system columns (ctid, xmin...).
        public func maskedRelation(only: Bool, system: Bool = false) -> Result<String, AdminError> {
            if !missingPolicyColumns.isEmpty {
                let names = missingPolicyColumns.map { "\"\($0)\"" }.joined(separator: ", ")
                return .failure(AdminError("42501", "pgclone: the masking policy on \(schema).\(name) names \(missingPolicyColumns.count == 1 ? "column" : "columns") \(names), which the table does not have; its reads are refused until the policy is fixed",
                                           hint: "Policy column names are exact, case included (pgclone.policy_status() lists what does not match)."))
            }
            switch reads {
            case .views(let all, let onlyView):
                guard system else { return .success(only ? onlyView : all) }
                return .success(MaskView.qualifiedName(schema: schema, table: name, oid: oid, only: only && hasChildren, system: true))
            case .stale:
                return .failure(AdminError("42501", "pgclone: the masked view of \(schema).\(name) is being brought up to date with the current policies; try again in a moment"))
            case .inline:
                if let keyed = columns.first(where: { $0.strategy?.isKeyed == true }) {
                    // The pads would travel in the statement text, which the role can read back (pg_stat_activity).
                    return .failure(AdminError("42501", "pgclone: column \(name).\(keyed.name) is masked with a keyed strategy, which needs the server backstop (pgclone.policy_status() says why it is not in force)"))
                }
                let list = MaskView.selectList(columns.map { MaskView.Column(name: $0.name, type: $0.type, strategy: $0.strategy) }, keys: .literals)
                    + (system ? ", " + MaskView.systemColumns.joined(separator: ", ") : "")
                return .success("(SELECT \(list) FROM \(only ? "ONLY " : "")\(SQL.qualified(schema, name)))")
            }
        }
    }

    public var role: String
    public var tables: [Table]
    /// Views and materialized views (any schema) whose definitions read a masked table.
    public var taintedRelations: Set<String>
    /// SECURITY DEFINER functions whose owner can read a sensitive column: refused (they would
    /// read with the owner's rights), unless a policy allows them by name.
    public var riskyDefiners: Set<String>
    /// Operators that are not built in, and those whose function is a risky definer.
    public var userOperators: Set<String> = []
    public var riskyOperators: Set<String> = []
    /// Functions the policies allow masked roles to call whatever they read (`allowed_functions`).
    public var allowedFunctions: Set<String> = []
    /// Views that call functions which are not built in: refused while a policy relies on the rewrite alone.
    public var viewsCallingFunctions: Set<String> = []
    /// Names of types that are not built in (not tables' row types), as of the context's read.
    public var userTypes: Set<String> = []
    /// Operators of extensions (known, not a role's own): not user operators.
    public var extensionOperators: Set<String> = []
    /// Names of every function that is not built in (OID 16384 and up), as of the context's read.
    public var userFunctions: Set<String> = []
    public var policyVersion: Int
    /// The highest relation OID when the context was read: a result from a newer relation
    /// (a view created since) cannot be judged and is refused until the context is re-read.
    public var maximumRelationOID: UInt32 = .max

    /// Ancestors of tables whose policy sits on a partition or inheritance child: reads of them
    /// would not be masked, so they are refused.
    public var misplacedPolicyAncestors: [Misplaced] = []

    public struct Misplaced: Sendable, Hashable {
        public var schema: String
        public var name: String
        public var resolvesUnqualified: Bool
        /// The partition or child the policy is on (`schema.table`).
        public var policyTable: String
    }

    public var isMasked: Bool { !tables.isEmpty }

    /// Some masked table is protected by the rewrite alone (no current mask view, or the server
    /// would let the session read a sensitive column): there, whatever pgclone cannot read could
    /// read real values. When no table is, the server refuses every read the rewrite misses.
    public var reliesOnRewriteAlone: Bool {
        tables.contains { table in
            guard case .views = table.reads else { return true }
            return !table.serverDenies
        }
    }

    /// A SECURITY DEFINER function no policy allows can read sensitive columns with its owner's
    /// rights: code the proxy cannot see into (a user function's body, a trigger, DO) could call
    /// it, and the server would not stop it.
    public var definerReachable: Bool { !riskyDefiners.subtracting(allowedFunctions).isEmpty }

    /// Only code the proxy can read may run for the session: the server does not back up every
    /// masked table, or a risky definer could be reached through code the proxy cannot read.
    public var runsOnlyVisibleCode: Bool { reliesOnRewriteAlone || definerReachable }

    /// The ancestor of a misplaced policy's table that a RangeVar names, if any.
    func misplacedAncestor(schema: String?, name: String) -> Misplaced? {
        misplacedPolicyAncestors.first { ancestor in
            ancestor.name == name && (schema.map { $0 == ancestor.schema } ?? (ancestor.resolvesUnqualified || takesNamesConservatively))
        }
    }

    /// Whether a statement rewritten (or allowed) under `other` is rewritten (or allowed) the same
    /// way under this context: the same role, policies, masked tables and tainted objects.
    func decidesRewritesLike(_ other: MaskingContext?) -> Bool {
        guard let other else { return false }
        return role == other.role && policyVersion == other.policyVersion && tables == other.tables
            && taintedRelations == other.taintedRelations && riskyDefiners == other.riskyDefiners
            && userOperators == other.userOperators && riskyOperators == other.riskyOperators && allowedFunctions == other.allowedFunctions && viewsCallingFunctions == other.viewsCallingFunctions && misplacedPolicyAncestors == other.misplacedPolicyAncestors
    }

    /// Whether the session may read the same under this context as under `other`: the same role
    /// and masked tables (their columns, strategies and how they are read). A policy reload that
    /// changes nothing for the session leaves its open cursors alone.
    func readsLike(_ other: MaskingContext?) -> Bool {
        guard let other else { return false }
        return role == other.role && tables == other.tables && isMasked == other.isMasked
    }

    public init(role: String, tables: [Table], taintedRelations: Set<String>, riskyDefiners: Set<String> = [], policyVersion: Int) {
        self.role = role
        self.tables = tables
        self.taintedRelations = taintedRelations
        self.riskyDefiners = riskyDefiners
        self.policyVersion = policyVersion
    }

    /// Unqualified names are not known to resolve as read (the search_path or a temporary table
    /// may have changed since): a name that any masked table has is taken to be that table.
    public var resolvesNamesConservatively = false
    /// Every policy table is masked here, whatever the role (used while the role is not known).
    public var isWorstCase = false

    /// Unqualified names are taken conservatively: in the worst case, and wherever only readable
    /// code may run (a view, default or check of the role's own may call set_config and move
    /// search_path unseen: the server does not report it).
    var takesNamesConservatively: Bool { resolvesNamesConservatively || runsOnlyVisibleCode }

    /// The masked table a RangeVar names, if any.
    func table(schema: String?, name: String) -> Table? {
        let conservative = takesNamesConservatively
        return tables.first { table in
            table.name == name && (schema.map { $0 == table.schema } ?? (table.resolvesUnqualified || conservative))
        }
    }

    /// Whether a RowDescription column comes straight from a masked column.
    func isMaskedOrigin(tableOID: UInt32, attribute: Int16) -> Bool {
        tables.contains { table in
            table.oid == tableOID && table.columns.contains { $0.number == Int(attribute) && $0.strategy != nil }
        }
    }

    /// The in-band query that reads the context for the session's current role.
    public static func query(for policies: PolicySet, includeBuiltins: Bool = false) -> String {
        let rows = policies.policies.enumerated().map { index, policy in
            let unmasked = SQL.literal(SQL.textArray(policy.unmaskedRoles)) + "::pg_catalog.text[]"
            let masked = policy.maskedRoles.map { SQL.literal(SQL.textArray($0)) + "::pg_catalog.text[]" } ?? "NULL::pg_catalog.text[]"
            let sensitive = SQL.literal(SQL.textArray(policy.columns.map(\.name))) + "::pg_catalog.text[]"
            return "(\(index), \(SQL.literal(policy.schema)), \(SQL.literal(policy.table)), \(unmasked), \(masked), \(SQL.literal(policy.database))::pg_catalog.text, \(sensitive))"
        }.joined(separator: ", ")
        return """
            WITH RECURSIVE p(i, nsp, rel, unmasked, masked, db, sens) AS (VALUES \(rows)),
            -- Every policy table here, and whether its policy masks the session's role (the other
            -- tables make the worst-case context, used while the role is not known for sure).
            base AS (
              SELECT p.i, c.oid AS reloid,
                NOT COALESCE((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) pg_catalog.current_user()), false)
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles u WHERE u.rolname OPERATOR(pg_catalog.=) ANY (p.unmasked) AND pg_catalog.pg_has_role(pg_catalog.current_user(), u.oid, 'MEMBER'))
                AND (p.masked IS NULL OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles u WHERE u.rolname OPERATOR(pg_catalog.=) ANY (p.masked) AND pg_catalog.pg_has_role(pg_catalog.current_user(), u.oid, 'MEMBER'))
                     -- A login role the policy masks stays masked after SET ROLE to a role the policy does not exempt.
                     OR (NOT COALESCE((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) pg_catalog.session_user()), false)
                         AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles u WHERE u.rolname OPERATOR(pg_catalog.=) ANY (p.unmasked) AND pg_catalog.pg_has_role(pg_catalog.session_user(), u.oid, 'MEMBER'))
                         AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles u WHERE u.rolname OPERATOR(pg_catalog.=) ANY (p.masked) AND pg_catalog.pg_has_role(pg_catalog.session_user(), u.oid, 'MEMBER')))) AS applies
              FROM p
              JOIN pg_catalog.pg_namespace n ON n.nspname OPERATOR(pg_catalog.=) p.nsp
              JOIN pg_catalog.pg_class c ON c.relnamespace OPERATOR(pg_catalog.=) n.oid AND c.relname OPERATOR(pg_catalog.=) p.rel
              WHERE (p.db IS NULL OR p.db OPERATOR(pg_catalog.=) pg_catalog.current_database()::pg_catalog.text)
            ),
            -- A policy on a partition or inheritance child does not cover reads through its ancestors:
            -- those reads are refused (put the policy on the root).
            up(i, reloid, child, applies) AS (
              SELECT b.i, h.inhparent, b.reloid, b.applies FROM base b JOIN pg_catalog.pg_inherits h ON h.inhrelid OPERATOR(pg_catalog.=) b.reloid
              UNION
              SELECT up.i, h.inhparent, up.child, up.applies FROM up JOIN pg_catalog.pg_inherits h ON h.inhrelid OPERATOR(pg_catalog.=) up.reloid
            ),
            -- Partitions and inheritance children carry the same data: the policy covers them too.
            m(i, reloid, applies) AS (
              SELECT i, reloid, applies FROM base
              UNION
              SELECT m.i, h.inhrelid, m.applies FROM m JOIN pg_catalog.pg_inherits h ON h.inhparent OPERATOR(pg_catalog.=) m.reloid
            ),
            -- The sensitive columns of each table: the policy's and the generated columns computed
            -- from them, or every column where the policy names one the table lacks (a typo or
            -- another case: the column meant may be any).
            ms(i, reloid, sens) AS (
              SELECT m.i, m.reloid,
                CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.unnest(p.sens) s(name) WHERE NOT EXISTS (
                       SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid OPERATOR(pg_catalog.=) m.reloid AND a.attnum OPERATOR(pg_catalog.>) 0
                         AND NOT a.attisdropped AND a.attname::pg_catalog.text OPERATOR(pg_catalog.=) s.name))
                     THEN ARRAY(SELECT a.attname::pg_catalog.text FROM pg_catalog.pg_attribute a
                                WHERE a.attrelid OPERATOR(pg_catalog.=) m.reloid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped)
                     ELSE p.sens OPERATOR(pg_catalog.||) \(MaskView.derivedColumnsSQL(table: "m.reloid", sensitive: "p.sens")) END
              FROM m JOIN p ON p.i OPERATOR(pg_catalog.=) m.i
            ),
            -- Views over sensitive columns: they read with their owner's rights.
            \(MaskView.exposingViewsCTE(name: "tainted", tables: "(SELECT ms.i, ms.reloid, ms.sens FROM ms)", scanQueryTrees: false)),
            -- Views that call functions which are not built in (directly or through other views):
            -- while a policy relies on the rewrite alone, such a function could read real values.
            fnviews(oid) AS (
              SELECT r.ev_class FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_rewrite r ON r.oid OPERATOR(pg_catalog.=) d.objid
              WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.refobjid OPERATOR(pg_catalog.>=) 16384
                AND EXISTS (SELECT 1 FROM m)
              UNION
              SELECT r.ev_class FROM fnviews f
              JOIN pg_catalog.pg_depend d ON d.refobjid OPERATOR(pg_catalog.=) f.oid AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass
              JOIN pg_catalog.pg_rewrite r ON r.oid OPERATOR(pg_catalog.=) d.objid
              WHERE r.ev_class OPERATOR(pg_catalog.<>) f.oid
            ),
            -- SECURITY DEFINER functions (not built in) whose owner can read a sensitive column: they
            -- would read it with the owner's rights. (Other functions run as the caller, whom the
            -- server backstop stops.)
            risky(name) AS (
              SELECT DISTINCT pr.proname::pg_catalog.text FROM pg_catalog.pg_proc pr
              WHERE pr.prosecdef AND pr.oid OPERATOR(pg_catalog.>=) 16384
                AND (EXISTS (SELECT 1 FROM ms
                             JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) ms.reloid AND a.attname::pg_catalog.text OPERATOR(pg_catalog.=) ANY (ms.sens)
                             WHERE pg_catalog.has_column_privilege(pr.proowner, ms.reloid, a.attnum, 'SELECT'))
                     -- or a view over them (it reads with its own owner's rights; round 42 N4)
                     OR EXISTS (SELECT 1 FROM tainted tv WHERE pg_catalog.has_table_privilege(pr.proowner, tv.oid, 'SELECT')))
            )
            SELECT 'user', pg_catalog.current_user()::pg_catalog.text, pg_catalog.current_setting('transaction_isolation'), NULL, NULL, NULL
            UNION ALL
            SELECT 'misplaced', n.nspname::pg_catalog.text, c.relname::pg_catalog.text,
                   (SELECT pg_catalog.format('%s.%s', cn.nspname, cc.relname) FROM pg_catalog.pg_class cc JOIN pg_catalog.pg_namespace cn ON cn.oid OPERATOR(pg_catalog.=) cc.relnamespace
                    WHERE cc.oid OPERATOR(pg_catalog.=) up.child),
                   COALESCE(pg_catalog.to_regclass(pg_catalog.quote_ident(c.relname)) OPERATOR(pg_catalog.=) c.oid, false)::pg_catalog.text, up.applies::pg_catalog.text
            FROM up JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) up.reloid JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
            UNION ALL
            SELECT 'maxoid', (SELECT pg_catalog.max(oid) FROM pg_catalog.pg_class)::pg_catalog.text, NULL, NULL, NULL, NULL
            UNION ALL
            SELECT 'table', m.i::pg_catalog.text, m.reloid::pg_catalog.text,
                   COALESCE(pg_catalog.to_regclass(pg_catalog.quote_ident(c.relname)) OPERATOR(pg_catalog.=) m.reloid, false)::pg_catalog.text
                     OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) c.relkind::pg_catalog.text
                     OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) c.relhassubclass::pg_catalog.text
                     OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) m.applies::pg_catalog.text
                     -- Whether the server refuses the sensitive columns to every role the session can be.
                     OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) (NOT EXISTS (
                       SELECT 1 FROM pg_catalog.pg_attribute a JOIN ms ON ms.i OPERATOR(pg_catalog.=) m.i AND ms.reloid OPERATOR(pg_catalog.=) m.reloid, pg_catalog.pg_roles r
                       WHERE a.attrelid OPERATOR(pg_catalog.=) m.reloid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
                         AND a.attname::pg_catalog.text OPERATOR(pg_catalog.=) ANY (ms.sens)
                         AND (pg_catalog.pg_has_role(pg_catalog.current_user(), r.oid, 'MEMBER') OR pg_catalog.pg_has_role(pg_catalog.session_user(), r.oid, 'MEMBER'))
                         AND (pg_catalog.has_column_privilege(r.oid, m.reloid, a.attnum, 'SELECT, REFERENCES')
                              -- TRIGGER lets a function see whole rows (round 42 N5: the backstop had not taken it yet)
                              OR pg_catalog.has_table_privilege(r.oid, m.reloid, 'TRIGGER'))))::pg_catalog.text,
                   n.nspname::pg_catalog.text, c.relname::pg_catalog.text
            FROM m JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) m.reloid JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
            UNION ALL
            -- The comments of pgclone's mask views (what they mask), found by name: to_regclass
            -- takes text, so the query does not fail where they do not exist.
            SELECT 'view', m.i::pg_catalog.text, m.reloid::pg_catalog.text,
                   pg_catalog.obj_description(pg_catalog.to_regclass('pgclone_masked.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(\(MaskView.nameSQL(schema: "n.nspname", table: "c.relname", oid: "c.oid", only: false)))), 'pg_class'),
                   pg_catalog.obj_description(pg_catalog.to_regclass('pgclone_masked.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(\(MaskView.nameSQL(schema: "n.nspname", table: "c.relname", oid: "c.oid", only: true)))), 'pg_class'),
                   NULL
            FROM m JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) m.reloid JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
            UNION ALL
            SELECT 'column', m.i::pg_catalog.text, m.reloid::pg_catalog.text, a.attnum::pg_catalog.text, a.attname::pg_catalog.text,
                   \(MaskView.columnTypeSQL)
            FROM m JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) m.reloid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
            UNION ALL
            -- Generated columns computed from a sensitive column (what ms added to the policy's
            -- names): masked too, as NULL.
            SELECT 'derived', ms.i::pg_catalog.text, ms.reloid::pg_catalog.text, NULL, d.name, NULL
            FROM ms JOIN p ON p.i OPERATOR(pg_catalog.=) ms.i, pg_catalog.unnest(ms.sens) d(name)
            WHERE d.name OPERATOR(pg_catalog.<>) ALL (p.sens)
            UNION ALL
            SELECT DISTINCT 'relation', c.relname::pg_catalog.text, NULL, NULL, NULL, NULL FROM tainted t JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.oid
            WHERE NOT EXISTS (SELECT 1 FROM m WHERE m.reloid OPERATOR(pg_catalog.=) t.oid)
            UNION ALL
            -- The backstop's own tables (the HMAC pads of keyed masks above all): never read by a
            -- masked role, whatever a later GRANT says (round 43 F4).
            SELECT 'relation', c.relname::pg_catalog.text, NULL, NULL, NULL, NULL
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
            WHERE n.nspname OPERATOR(pg_catalog.=) 'pgclone_masked' AND c.relname OPERATOR(pg_catalog.=) ANY (ARRAY['_key', '_changes', '_owners']::pg_catalog.name[])
            UNION ALL
            SELECT 'definer', r.name, NULL, NULL, NULL, NULL FROM risky r
            UNION ALL
            SELECT DISTINCT 'fnview', c.relname::pg_catalog.text, NULL, NULL, NULL, NULL FROM fnviews f JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) f.oid
            UNION ALL
            -- Operators that are not built in, and whether their function is a risky definer.
            -- (An extension's operators were installed by a superuser, not written by a role: known, not user operators.)
            SELECT DISTINCT 'operator', o.oprname::pg_catalog.text, (pr.proname::pg_catalog.text OPERATOR(pg_catalog.=) ANY (SELECT r.name FROM risky r))::pg_catalog.text,
                   (EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_operator'::pg_catalog.regclass
                           AND d.objid OPERATOR(pg_catalog.=) o.oid AND d.deptype OPERATOR(pg_catalog.=) 'e')
                    AND pr.prolang OPERATOR(pg_catalog.=) ANY (SELECT l.oid FROM pg_catalog.pg_language l WHERE l.lanname OPERATOR(pg_catalog.=) ANY ('{c,internal}')))::pg_catalog.text, NULL, NULL
            FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_proc pr ON pr.oid OPERATOR(pg_catalog.=) o.oprcode
            WHERE o.oid OPERATOR(pg_catalog.>=) 16384 AND EXISTS (SELECT 1 FROM m)
            UNION ALL
            -- (An extension's C functions were installed by a superuser: known, not a role's own.
            -- Its SQL or PL functions, or ones a role added to it, are a role's own.)
            SELECT DISTINCT 'userfn', pr.proname::pg_catalog.text, NULL, NULL, NULL, NULL FROM pg_catalog.pg_proc pr
            WHERE pr.oid OPERATOR(pg_catalog.>=) 16384 AND EXISTS (SELECT 1 FROM m)
              AND NOT (pr.prolang OPERATOR(pg_catalog.=) ANY (SELECT l.oid FROM pg_catalog.pg_language l WHERE l.lanname OPERATOR(pg_catalog.=) ANY ('{c,internal}'))
                       AND EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
                                   AND d.objid OPERATOR(pg_catalog.=) pr.oid AND d.deptype OPERATOR(pg_catalog.=) 'e'))
            UNION ALL
            -- Types that are not built in (their input functions, casts and domain checks are code).
            SELECT DISTINCT 'usertype', t.typname::pg_catalog.text, NULL, NULL, NULL, NULL FROM pg_catalog.pg_type t
            WHERE t.oid OPERATOR(pg_catalog.>=) 16384 AND t.typrelid OPERATOR(pg_catalog.=) 0 AND EXISTS (SELECT 1 FROM m)
            """ + (includeBuiltins ? """

            UNION ALL
            -- Built-in function names and operator symbols (OIDs below 16384, the same in every database).
            SELECT DISTINCT 'builtin', pr.proname::pg_catalog.text, NULL, NULL, NULL, NULL FROM pg_catalog.pg_proc pr WHERE pr.oid OPERATOR(pg_catalog.<) 16384
            UNION ALL
            SELECT DISTINCT 'builtin', o.oprname::pg_catalog.text, NULL, NULL, NULL, NULL FROM pg_catalog.pg_operator o WHERE o.oid OPERATOR(pg_catalog.<) 16384
            UNION ALL
            -- Built-in type names, marked apart from function names.
            SELECT DISTINCT 'builtin', 'type:' OPERATOR(pg_catalog.||) t.typname::pg_catalog.text, NULL, NULL, NULL, NULL FROM pg_catalog.pg_type t WHERE t.oid OPERATOR(pg_catalog.<) 16384
            """ : "")
    }

    /// The built-in function names among the rows of `query(for:includeBuiltins: true)`.
    static func builtinFunctions(in rows: [[String?]]) -> Set<String> {
        Set(rows.lazy.filter { $0.count == 6 && $0[0] == "builtin" }.compactMap { $0[1] })
    }

    /// Which relation masked reads of `table` go to, from the comments of its mask views.
    static func reads(of table: Table, comments: (all: String?, only: String?)?) -> Table.Reads {
        guard let all = comments?.all else { return .inline }
        let expected = MaskView.fingerprint(table.columns.map { MaskView.Column(name: $0.name, type: $0.type, strategy: $0.strategy) })
        guard MaskView.fingerprint(inComment: all) == expected else { return .stale }
        let allView = MaskView.qualifiedName(schema: table.schema, table: table.name, oid: table.oid, only: false)
        guard table.hasChildren else { return .views(all: allView, only: allView) }
        guard let only = comments?.only, MaskView.fingerprint(inComment: only) == expected else { return .stale }
        return .views(all: allView, only: MaskView.qualifiedName(schema: table.schema, table: table.name, oid: table.oid, only: true))
    }

    /// Builds the context of the session's role, and the worst case, from the rows of `query(for:)`.
    static func from(rows: [[String?]], policies: PolicySet) -> (context: MaskingContext, worstCase: MaskingContext) {
        var role = ""
        var tables: [UInt32: Table] = [:]
        var policyOf: [UInt32: Int] = [:]
        var relations: Set<String> = []
        var definers: Set<String> = []
        var functionViews: Set<String> = []
        var operators: Set<String> = []
        var userTypes: Set<String> = []
        var extensionOperators: Set<String> = []
        var riskyOperators: Set<String> = []
        var userFunctions: Set<String> = []
        var maximumOID = UInt32.max
        var viewComments: [UInt32: (all: String?, only: String?)] = [:]
        var misplaced: [(Misplaced, applies: Bool)] = []
        var applying: Set<UInt32> = []
        var derived: Set<String> = []
        for row in rows where row.count == 6 {
            switch row[0] {
            case "user": role = row[1] ?? ""
            case "maxoid": maximumOID = row[1].flatMap(UInt32.init) ?? .max
            case "table":
                guard let index = row[1].flatMap(Int.init), index < policies.policies.count, let oid = row[2].flatMap(UInt32.init),
                      let schema = row[4], let name = row[5] else { continue }
                // "true:r:false:true:true": resolves unqualified, relkind, has children, applies, server denies.
                let flags = (row[3] ?? "").split(separator: ":").map(String.init)
                var table = Table(oid: oid, schema: schema, name: name, resolvesUnqualified: flags.first == "true",
                                  columns: tables[oid]?.columns ?? [], isPartitioned: flags.count > 1 && flags[1] == "p")
                table.hasChildren = flags.count > 2 && flags[2] == "true"
                table.serverDenies = flags.count > 4 && flags[4] == "true"
                tables[oid] = table
                policyOf[oid] = index
                if flags.count > 3 && flags[3] == "true" { applying.insert(oid) }
            case "view":
                guard let oid = row[2].flatMap(UInt32.init) else { continue }
                viewComments[oid] = (row[3], row[4])
            case "column":
                guard let index = row[1].flatMap(Int.init), index < policies.policies.count, let oid = row[2].flatMap(UInt32.init),
                      let number = row[3].flatMap(Int.init), let name = row[4], let type = row[5] else { continue }
                var table = tables[oid] ?? Table(oid: oid, schema: "", name: "", resolvesUnqualified: false, columns: [])
                table.columns.append(.init(number: number, name: name, type: type, strategy: policies.policies[index].strategy(for: name)))
                tables[oid] = table
            case "misplaced":
                guard let schema = row[1], let name = row[2], let policyTable = row[3] else { continue }
                misplaced.append((Misplaced(schema: schema, name: name, resolvesUnqualified: row[4] == "true", policyTable: policyTable), row[5] == "true"))
            case "derived":
                if let oid = row[2].flatMap(UInt32.init), let name = row[4] { derived.insert("\(oid)\u{0}\(name)") }
            case "relation": if let name = row[1] { relations.insert(name) }
            case "definer": if let name = row[1] { definers.insert(name) }
            case "fnview": if let name = row[1] { functionViews.insert(name) }
            case "operator":
                guard let name = row[1] else { continue }
                if row[2] == "true" { riskyOperators.insert(name) }
                if row[3] == "true" { extensionOperators.insert(name) } else { operators.insert(name) }
            case "userfn": if let name = row[1] { userFunctions.insert(name) }
            case "usertype": if let name = row[1] { userTypes.insert(name) }
            default: break
            }
        }
        let ordered = tables.keys.sorted().compactMap { oid -> Table? in
            guard var table = tables[oid], let index = policyOf[oid], !table.name.isEmpty else { return nil }
            table.columns.sort { $0.number < $1.number }
            for index in table.columns.indices where table.columns[index].strategy == nil && derived.contains("\(oid)\u{0}\(table.columns[index].name)") {
                table.columns[index].strategy = .null
            }
            let present = Set(table.columns.map(\.name))
            table.missingPolicyColumns = policies.policies[index].columns.map(\.name).filter { !present.contains($0) }
            table.reads = reads(of: table, comments: viewComments[oid])
            return table
        }
        var context = MaskingContext(role: role, tables: ordered.filter { applying.contains($0.oid) }, taintedRelations: relations,
                                     riskyDefiners: definers, policyVersion: policies.version)
        context.maximumRelationOID = maximumOID
        context.userOperators = operators
        context.riskyOperators = riskyOperators
        context.extensionOperators = extensionOperators
        context.userTypes = userTypes
        context.allowedFunctions = Set(policies.policies.flatMap(\.allowedFunctions))
        context.viewsCallingFunctions = functionViews
        context.userFunctions = userFunctions
        context.misplacedPolicyAncestors = misplaced.filter(\.applies).map(\.0)
        // Every policy table masked, whoever the role, and names taken conservatively.
        var worstCase = context
        worstCase.tables = ordered
        worstCase.misplacedPolicyAncestors = misplaced.map(\.0)
        worstCase.resolvesNamesConservatively = true
        worstCase.isWorstCase = true
        return (context, worstCase)
    }

}
