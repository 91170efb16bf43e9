import CloneEngine
import JSON
import Masking
import PQ
import SQLParser

/// Rewrites a masked session's statement so that every read of a masked table reads
/// masked values instead, and refuses what it cannot see into.
///
/// The server then computes filters, joins, sorts, casts, whole-row values and error
/// texts from masked values only. The statement is otherwise left byte for byte as
/// the client wrote it.
public struct MaskingRewriter: Sendable {
    public enum Result: Sendable, Equatable {
        case unchanged
        case rewritten(String)
        case refused(AdminError)
        /// The statement calls a function the context does not know (created since it was
        /// read, perhaps reading a masked table): read the context again, then decide.
        case needsFreshContext(function: String)
    }

    let context: MaskingContext
    /// The server's built-in function names (nil until known: then every function not in
    /// the context's user functions counts as unknown).
    let builtinFunctions: Set<String>?

    public init(context: MaskingContext, builtinFunctions: Set<String>? = nil) {
        self.context = context
        self.builtinFunctions = builtinFunctions
    }

    /// Statements a masked session may run (their reads are rewritten).
    static let allowedStatements: Set<String> = [
        "SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "TransactionStmt", "VariableSetStmt", "VariableShowStmt",
        "PrepareStmt", "ExecuteStmt", "DeallocateStmt", "DeclareCursorStmt", "FetchStmt", "ClosePortalStmt",
        "CopyStmt", "ExplainStmt", "ListenStmt", "UnlistenStmt", "NotifyStmt", "DiscardStmt", "CheckPointStmt",
    ]

    /// Statements that define, change or drop objects, or maintain tables, and read no rows when
    /// they run: a masked session may run them whatever backs its policies (the walk still checks
    /// the functions and operators they name, foreign keys to masked tables, and the queries of
    /// views and CREATE TABLE AS, which are rewritten). Statements not here (DO, CALL, triggers,
    /// rules, row security policies, casts, extensions, foreign data...) run code or read data in
    /// ways the proxy cannot follow: only where the server backs up every masked table.
    static let definitionStatements: Set<String> = [
        "CreateStmt", "DropStmt", "CreateSchemaStmt", "CompositeTypeStmt", "CreateEnumStmt", "AlterEnumStmt", "CreateRangeStmt",
        "CreateDomainStmt", "AlterDomainStmt", "CreateSeqStmt", "AlterSeqStmt", "AlterTableStmt", "IndexStmt", "RenameStmt",
        "AlterObjectSchemaStmt", "AlterOwnerStmt", "CommentStmt", "TruncateStmt", "VacuumStmt", "LockStmt", "ReindexStmt", "ClusterStmt",
        "AlterRoleStmt", "AlterRoleSetStmt", "CreateFunctionStmt", "AlterFunctionStmt", "GrantStmt", "AlterDefaultPrivilegesStmt",
        "ViewStmt", "CreateTableAsStmt", "RefreshMatViewStmt", "CreateStatsStmt", "AlterStatsStmt", "ConstraintsSetStmt",
        "DropOwnedStmt", "ReassignOwnedStmt", "CreatedbStmt", "DropdbStmt", "AlterTableMoveAllStmt", "AlterCollationStmt",
    ]

    /// Definition statements that may name a masked table where only the rewrite protects it:
    /// they read no value and keep it where the policy finds it. (CREATE TABLE names one as a
    /// parent or a LIKE source, copying no rows; views and CREATE TABLE AS read it rewritten.)
    static let harmlessOnMaskedTables: Set<String> = [
        "DropStmt", "TruncateStmt", "LockStmt", "VacuumStmt", "CommentStmt", "CreateStmt", "ViewStmt", "CreateTableAsStmt",
        // Its elements are judged one by one.
        "CreateSchemaStmt",
    ]

    /// Why a masked session may run only code pgclone can read (`MaskingContext.runsOnlyVisibleCode`).
    static func whyOnlyVisibleCode(_ context: MaskingContext) -> String {
        if context.reliesOnRewriteAlone {
            return "a masking policy here is enforced by the proxy's rewrite alone (see pgclone.policy_status())"
        }
        let definers = context.riskyDefiners.subtracting(context.allowedFunctions).sorted().map { "\($0)()" }.joined(separator: ", ")
        return "SECURITY DEFINER function \(definers) can read sensitive columns with its owner's rights, and code pgclone cannot read could call it"
    }

    /// ALTER TABLE actions that read no value of the table and keep its columns where the
    /// policy finds them (a new column only with NOT NULL, NULL or DEFAULT: a column CHECK or a
    /// generated expression may read the others).
    static let harmlessAlterActions: Set<String> = [
        "AT_AddColumn", "AT_DropColumn", "AT_ColumnDefault", "AT_DropNotNull", "AT_SetNotNull", "AT_SetStatistics", "AT_SetStorage",
        "AT_SetCompression", "AT_DropConstraint", "AT_SetRelOptions", "AT_ResetRelOptions", "AT_ChangeOwner", "AT_SetLogged",
        // (Not CLUSTER ON: the rows' physical order would follow a sensitive column's values.)
        "AT_SetUnLogged", "AT_DropCluster", "AT_SetTableSpace",
    ]

    static func isHarmlessAlter(_ body: JSONNode) -> Bool {
        (body["cmds"]?.array ?? []).allSatisfy { command in
            guard let action = command["AlterTableCmd"], let subtype = action["subtype"]?.string, harmlessAlterActions.contains(subtype) else { return false }
            guard subtype == "AT_AddColumn" else { return true }
            let constraints = action["def"]?["ColumnDef"]?["constraints"]?.array ?? []
            return constraints.allSatisfy { ["CONSTR_NOTNULL", "CONSTR_NULL", "CONSTR_DEFAULT"].contains($0["Constraint"]?["contype"]?.string ?? "") }
        }
    }

    /// The prepared statement that CREATE TABLE ... AS EXECUTE or EXPLAIN EXECUTE runs.
    static func nestedExecute(_ body: JSONNode) -> String? {
        guard let (kind, inner) = body["query"]?.tagged else { return nil }
        if kind == "ExecuteStmt" { return inner["name"]?.string ?? "" }
        return nestedExecute(inner)
    }

    /// Statements that only read what they name (rewritten like any read) or change settings.
    static func isRead(_ kind: String) -> Bool { allowedStatements.contains(kind) }

    /// Catalog views that show column values (planner statistics) of tables the role may read.
    static let valueRevealingRelations: Set<String> = ["pg_stats", "pg_stats_ext", "pg_stats_ext_exprs", "pg_statistic", "pg_statistic_ext_data"]

    public func rewrite(_ sql: String) -> Result {
        let bytes = Array(sql.utf8)
        let planned = planAndUses(sql, bytes: bytes).plan
        if let function = planned.unknownFunction { return .needsFreshContext(function: function) }
        switch planned {
        case .unchanged: return .unchanged
        case .refused(let error): return .refused(error)
        case .edits(let edits, _): return .rewritten(String(decoding: Self.apply(edits, to: bytes), as: UTF8.self))
        }
    }

    /// What a rewrite does to a statement: nothing, replacements at byte ranges, or a refusal;
    /// with the first called function the context does not know, if any.
    enum Plan {
        case unchanged(unknownFunction: String?)
        case edits([Edit], unknownFunction: String?)
        case refused(AdminError)

        /// SQL-level PREPARE, EXECUTE and DEALLOCATE in the statement, in order (a nil name: DEALLOCATE ALL).
        enum PreparedStatementUse: Equatable {
            case prepare(String)
            case execute(String)
            case deallocate(String?)
        }

        var unknownFunction: String? {
            switch self {
            case .unchanged(let name), .edits(_, let name): return name
            case .refused: return nil
            }
        }
    }

    /// What statements change in the session that decides how later statements are read.
    struct Effects: OptionSet, Sendable, Hashable {
        let rawValue: Int
        /// The current role may differ afterwards (SET ROLE, RESET ALL, set_config, a user function).
        static let role = Effects(rawValue: 1)
        /// Unqualified names may resolve elsewhere (search_path, temporary tables).
        static let names = Effects(rawValue: 2)
        /// client_encoding or standard_conforming_strings may differ for the next message.
        static let reading = Effects(rawValue: 4)
        /// The statement ends a transaction or rolls back to a savepoint (SET LOCAL and rolled-back SETs revert).
        static let transactionEnd = Effects(rawValue: 8)
        static let all: Effects = [.role, .names, .reading]
    }

    /// What the analysis of a text found: the plan, the SQL-level prepared statements it prepares,
    /// executes or deallocates, and its effects on the session (those of every statement but the
    /// last matter for the statements after them in the same text).
    struct Analysis {
        var plan: Plan
        var uses: [Plan.PreparedStatementUse] = []
        var effects: Effects = []
        var effectsBeforeLast: Effects = []
        /// The text calls a function that is not built in (whether the context knows it or not).
        var callsUserFunction = false
    }

    /// The analysis of a text; `bytes` is `sql`'s UTF-8 (the parse tree's locations are offsets into it).
    func analyze(_ sql: String, bytes: [UInt8], trusted: [Range<Int>] = []) -> Analysis {
        let verifying = !trusted.isEmpty
        let statements: [PostgresParser.Statement]
        do {
            statements = try PostgresParser.parse(sql)
        } catch {
            if !context.runsOnlyVisibleCode {
                // The server refuses the sensitive columns to this session whatever the text does:
                // it goes as written (a syntax error gets the server's own error and position),
                // and anything may have changed after it.
                return Analysis(plan: .unchanged(unknownFunction: nil), effects: .all, effectsBeforeLast: .all)
            }
            if error.position > 0 || error.message.hasPrefix("syntax error") {
                return Analysis(plan: .refused(AdminError("42601", error.message)))
            }
            return Analysis(plan: .refused(AdminError("42501", "pgclone: this statement could not be parsed, and a masked role may only run statements pgclone can read: \(error.message)")))
        }
        var walker = Walker(context: context, builtinFunctions: builtinFunctions, lexer: SQLLexer(bytes: bytes))
        walker.trusted = trusted
        var analysis = Analysis(plan: .unchanged(unknownFunction: nil))
        for (index, statement) in statements.enumerated() {
            guard let (kind, body) = statement.node.tagged else { continue }
            switch kind {
            case "PrepareStmt": analysis.uses.append(.prepare(body["name"]?.string ?? ""))
            case "ExecuteStmt": analysis.uses.append(.execute(body["name"]?.string ?? ""))
            case "DeallocateStmt": analysis.uses.append(.deallocate(body["name"]?.string))
            default:
                // CREATE TABLE ... AS EXECUTE and EXPLAIN [ANALYZE] EXECUTE run a prepared
                // statement too: judged like EXECUTE (refused when prepared under other names).
                if let name = Self.nestedExecute(body) { analysis.uses.append(.execute(name)) }
            }
            walker.changesSession = false
            walker.readsSystemColumns = Self.namesSystemColumn(body)
            if Self.allowedStatements.contains(kind) {
                walker.statement(kind, body)
            } else if Self.definitionStatements.contains(kind) || !context.runsOnlyVisibleCode {
                walker.definition(kind, body)
            } else {
                let why = context.reliesOnRewriteAlone ? "that the server does not back up here (see pgclone.policy_status())" : "here, and \(Self.whyOnlyVisibleCode(context))"
                return Analysis(plan: .refused(AdminError("42501", "pgclone: \(Self.describe(kind)) is not allowed for role \"\(context.role)\", which is masked by a policy \(why)")))
            }
            if let refusal = walker.refusal { return Analysis(plan: .refused(refusal)) }
            var effects = Self.effects(kind, body)
            if walker.changesSession { effects.formUnion(.all) }
            if index < statements.count - 1 { analysis.effectsBeforeLast.formUnion(effects) }
            analysis.effects.formUnion(effects)
        }
        analysis.callsUserFunction = walker.callsUserFunction
        let edits = walker.allEdits
        guard !edits.isEmpty else {
            analysis.plan = .unchanged(unknownFunction: walker.unknownFunction)
            return analysis
        }
        // Two edits over the same bytes: the proxy's reading of the text and the parser's part
        // ways somewhere (one edit would be lost, and the table it rewrites read as it is).
        var end = 0
        for edit in edits.sorted(by: { $0.range.lowerBound < $1.range.lowerBound }) {
            guard edit.range.lowerBound >= end else { return Analysis(plan: .refused(Self.unsafeRewrite)) }
            end = max(end, edit.range.upperBound)
        }
        // Outside what the rewrite put in, the rewritten text must need no rewrite of its own: a
        // masked table still read there means the proxy's reading of the text and the parser's
        // parted ways (a comment or string the lexer ends elsewhere), and an edit went astray.
        if !verifying {
            let (rewritten, inserted) = Self.applyTracking(edits, to: bytes)
            let check = analyze(String(decoding: rewritten, as: UTF8.self), bytes: rewritten, trusted: inserted.isEmpty ? [0..<0] : inserted)
            switch check.plan {
            case .unchanged: break
            case .edits, .refused: return Analysis(plan: .refused(Self.unsafeRewrite))
            }
        }
        analysis.plan = .edits(edits, unknownFunction: walker.unknownFunction)
        return analysis
    }

    static let unsafeRewrite = AdminError("42501", "pgclone: this statement cannot be rewritten safely for a masked role (pgclone's reading of it and the server's may differ)",
                                          hint: "Remove unusual comments or line breaks (a lone carriage return) and try again.")

    /// Whether a column reference in the tree names a system column (`ctid`, `t.xmin`).
    static func namesSystemColumn(_ node: JSONNode) -> Bool {
        var found = false
        node.walk { node in
            guard !found, let (tag, reference) = node.tagged, tag == "ColumnRef",
                  let last = reference["fields"]?.array.last?["String"]?["sval"]?.string else { return }
            if MaskView.systemColumns.contains(last) { found = true }
        }
        return found
    }

    /// The effects of a statement read without a context: its kind, and any set_config call in it.
    static func effects(of statement: PostgresParser.Statement) -> Effects {
        guard let (kind, body) = statement.node.tagged else { return [] }
        var effects = Self.effects(kind, body)
        statement.node.walk { node in
            if let (tag, write) = node.tagged, Walker.writes.contains(tag), writesSettings(write) { effects.formUnion(.all) }
            guard let (tag, call) = node.tagged, tag == "FuncCall",
                  call["funcname"]?.array.last?["String"]?["sval"]?.string == "set_config", !setsHarmlessSetting(call) else { return }
            effects.formUnion(.all)
        }
        return effects
    }

    /// Whether a write's table is pg_settings (UPDATE pg_settings changes settings).
    static func writesSettings(_ body: JSONNode) -> Bool {
        guard let relation = body["relation"] else { return false }
        let rangeVar = relation["RangeVar"] ?? relation
        return rangeVar["relname"]?.string == "pg_settings" && [nil, "pg_catalog"].contains(rangeVar["schemaname"]?.string)
    }

    /// Settings that decide who the session is, where names resolve or how text reads.
    static let decisiveSettings: Set<String> = ["role", "session_authorization", "search_path", "client_encoding", "standard_conforming_strings"]

    /// A set_config call whose setting is a constant that decides nothing of the above (drivers
    /// set jit, application_name... so: asyncpg around its type introspection).
    static func setsHarmlessSetting(_ call: JSONNode) -> Bool {
        guard let name = call["args"]?.array.first?["A_Const"]?["sval"]?["sval"]?.string else { return false }
        return !decisiveSettings.contains(name.lowercased())
    }

    /// The effects a statement has by its kind (calls that change settings are found by the walker).
    static func effects(_ kind: String, _ body: JSONNode) -> Effects {
        switch kind {
        case "VariableSetStmt":
            if body["kind"]?.string == "VAR_RESET_ALL" { return .all }
            switch body["name"]?.string ?? "" {
            case "role", "session_authorization": return .role
            case "search_path": return .names
            case "client_encoding", "standard_conforming_strings": return .reading
            default: return []
            }
        case "SelectStmt" where body["intoClause"] != nil:
            return .names
        case "DiscardStmt", "DoStmt", "CallStmt":
            return .all
        case _ where definitionStatements.contains(kind):
            // Objects may have been made, dropped, renamed or granted: names may resolve elsewhere.
            return .names
        case _ where !allowedStatements.contains(kind):
            return .all
        case "TransactionStmt":
            switch body["kind"]?.string ?? "" {
            case "TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK", "TRANS_STMT_ROLLBACK_TO", "TRANS_STMT_PREPARE", "TRANS_STMT_COMMIT_PREPARED", "TRANS_STMT_ROLLBACK_PREPARED":
                return .transactionEnd
            default:
                return []
            }
        default:
            return []
        }
    }

    /// The plan, and the SQL-level prepared statements the text prepares, executes or deallocates.
    func planAndUses(_ sql: String, bytes: [UInt8]) -> (plan: Plan, uses: [Plan.PreparedStatementUse]) {
        let analysis = analyze(sql, bytes: bytes)
        return (analysis.plan, analysis.uses)
    }

    /// The text with every edit made, in one pass (a statement naming a masked table
    /// thousands of times must not cost a copy of the text per edit).
    /// `apply`, and where each replacement landed in the result.
    static func applyTracking(_ edits: [Edit], to text: [UInt8]) -> ([UInt8], [Range<Int>]) {
        var out: [UInt8] = []
        var inserted: [Range<Int>] = []
        var position = 0
        for edit in edits.sorted(by: { $0.range.lowerBound < $1.range.lowerBound }) where edit.range.lowerBound >= position {
            out.append(contentsOf: text[position..<edit.range.lowerBound])
            let start = out.count
            out.append(contentsOf: edit.replacement.utf8)
            inserted.append(start..<out.count)
            position = edit.range.upperBound
        }
        out.append(contentsOf: text[position...])
        return (out, inserted)
    }

    static func apply(_ edits: [Edit], to text: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.count + edits.reduce(0) { $0 + $1.replacement.utf8.count })
        var position = 0
        for edit in edits.sorted(by: { $0.range.lowerBound < $1.range.lowerBound }) where edit.range.lowerBound >= position {
            out.append(contentsOf: text[position..<edit.range.lowerBound])
            out.append(contentsOf: edit.replacement.utf8)
            position = edit.range.upperBound
        }
        out.append(contentsOf: text[position...])
        return out
    }

    static func describe(_ kind: String) -> String {
        switch kind {
        case "DoStmt": return "DO"
        case "CreateFunctionStmt": return "CREATE FUNCTION"
        case "ViewStmt": return "CREATE VIEW"
        case "CreateTableAsStmt": return "CREATE TABLE AS"
        case "CreateStmt": return "CREATE TABLE"
        case "RuleStmt": return "CREATE RULE"
        case "CreateTrigStmt": return "CREATE TRIGGER"
        case "CallStmt": return "CALL"
        case "AlterTableStmt": return "ALTER TABLE"
        case "IndexStmt": return "CREATE INDEX"
        case "RenameStmt": return "RENAME"
        case "AlterObjectSchemaStmt": return "SET SCHEMA"
        case "CreateStatsStmt": return "CREATE STATISTICS"
        case "GrantStmt": return "GRANT"
        case "DropStmt": return "DROP"
        default:
            var words = kind.hasSuffix("Stmt") ? String(kind.dropLast(4)) : kind
            words = words.reduce(into: "") { out, character in
                if character.isUppercase, !out.isEmpty { out.append(" ") }
                out.append(Character(character.uppercased()))
            }
            return words
        }
    }

    struct Edit {
        var range: Range<Int>
        var replacement: String
    }

    /// Walks one statement's tree collecting edits, with the CTE names in scope.
    struct Walker {
        let context: MaskingContext
        let builtinFunctions: Set<String>?
        let lexer: SQLLexer
        var edits: [Edit] = []
        var refusal: AdminError?
        var unknownFunction: String?
        var callsUserFunction = false
        /// The statement being walked calls set_config or a function that is not built in (which
        /// may change any setting, the role included).
        var changesSession = false
        /// The statement names a system column (ctid, xmin...): masked tables are read through
        /// the relations that carry them.
        var readsSystemColumns = false
        /// Functions created by earlier statements of the text (the context predates them).
        var createdFunctions: Set<String> = []
        /// Masked tables read without an alias (`[schema, name]`).
        var unaliased: Set<[String]> = []
        /// Edits of qualified column references, kept when their table was read without an alias.
        var columnPrefixEdits: [(key: [String], edit: Edit)] = []
        /// When checking a rewritten text: the byte ranges the rewrite put there (its masked
        /// relations read the tables they mask), not walked.
        var trusted: [Range<Int>] = []
        var verifying: Bool { !trusted.isEmpty }

        func isTrusted(_ node: JSONNode) -> Bool {
            guard !trusted.isEmpty else { return false }
            let location = node["location"]?.int ?? node.tagged?.1["location"]?.int
            guard let location else { return false }
            return trusted.contains { $0.contains(location) }
        }

        /// Every edit of the statement.
        var allEdits: [Edit] {
            edits + columnPrefixEdits.filter { unaliased.contains($0.key) }.map(\.edit)
        }

        mutating func refuse(_ message: String) {
            if refusal == nil { refusal = AdminError("42501", "pgclone: \(message) (role \"\(context.role)\" is masked by a policy)") }
        }

        /// Statements that write a table they name as `relation` (at the top or nested in a CTE,
        /// PREPARE, EXPLAIN or COPY).
        static let writes: Set<String> = ["InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"]

        mutating func statement(_ kind: String, _ body: JSONNode, ctes: Set<ExactName> = []) {
            switch kind {
            case "ListenStmt":
                // A notification's payload is whatever a trigger or function put there (a
                // change feed's row_to_json(NEW), say): nothing pgclone can mask.
                refuse("LISTEN is not allowed: notification payloads are written by triggers and functions pgclone cannot read")
            case _ where Self.writes.contains(kind) && MaskingRewriter.writesSettings(body):
                // UPDATE pg_settings is set_config by another name: a masked role uses SET, whose
                // effects the proxy follows.
                refuse("writing pg_settings is not allowed; use SET")
            case _ where Self.writes.contains(kind):
                // Where the server backs the policy up, a write names the table itself and the
                // server checks it: without SELECT on the sensitive columns, WHERE, SET, MERGE
                // conditions and RETURNING cannot read them. Otherwise the write could read them: refused.
                if let relation = body["relation"], let target = masked(relation["RangeVar"] ?? relation) {
                    // (Mask views may exist for the other masked roles while the server cannot
                    // hold this session back, an owner's say: then the write is refused too.)
                    guard case .views = target.reads, target.serverDenies else {
                        let verb = ["InsertStmt": "INSERT", "UpdateStmt": "UPDATE", "DeleteStmt": "DELETE", "MergeStmt": "MERGE"][kind] ?? kind
                        refuse("\(verb) on \(target.schema).\(target.name) is not allowed")
                        return
                    }
                }
                walk(body, ctes: ctes, skipKeys: ["relation"])
            case "CreateTableAsStmt":
                // Nested (EXPLAIN, PREPARE): the query is read like any other.
                if let query = body["query"] { walk(query, ctes: ctes) }
            case "SelectStmt" where body["intoClause"] != nil:
                // SELECT ... INTO t: t is the table made, not read; the rest is a read.
                walk(body, ctes: ctes, skipKeys: ["intoClause"])
            case "CopyStmt":
                copy(body)
            case "ExplainStmt":
                for option in body["options"]?.array ?? [] where option["DefElem"]?["defname"]?.string == "analyze" {
                    refuse("EXPLAIN ANALYZE is not allowed")
                    return
                }
                walk(body, ctes: ctes)
            default:
                if readsSystemColumns, kind == "SelectStmt" {
                    expandStars(body, ctes: ctes)
                    if refusal != nil { return }
                }
                walk(body, ctes: ctes)
            }
        }

        /// Statements that are not reads: the names they define, change or drop are left alone
        /// (they are not reads); the queries inside them (a view's, CREATE TABLE AS's, a rule's,
        /// a function's SQL body) are reads, walked as such; the functions and operators named in
        /// expressions (defaults, checks, index expressions) meet the same allow-list as in a read.
        mutating func definition(_ kind: String, _ body: JSONNode) {
            if kind == "CreateFunctionStmt", let name = body["funcname"]?.array.last?["String"]?["sval"]?.string {
                createdFunctions.insert(name)
                if context.runsOnlyVisibleCode {
                    // The role could not call it through the proxy, but defaults, triggers and
                    // functions that already call a function of that name would run its body,
                    // which pgclone cannot read.
                    refuse("CREATE FUNCTION is not allowed: what already calls a function named \(name)() (a default, a trigger, another function) would run its body, which pgclone cannot read, and \(MaskingRewriter.whyOnlyVisibleCode(context))")
                    return
                }
            }
            if kind == "RenameStmt", body["renameType"]?.string == "OBJECT_SCHEMA", let schema = body["subname"]?.string,
               let table = context.tables.first(where: { $0.schema == schema }) {
                // Policies name their tables: under another schema name the table would be no
                // policy's (and the server backstop would give its privileges back).
                refuse("renaming schema \(schema), which holds masked table \(table.schema).\(table.name), is not allowed")
                return
            }
            defer {
                if refusal == nil, !verifying, context.reliesOnRewriteAlone, !MaskingRewriter.harmlessOnMaskedTables.contains(kind),
                   !(kind == "AlterTableStmt" && MaskingRewriter.isHarmlessAlter(body)), let table = maskedTableNamed(in: body) {
                    // An owner could read values through a constraint's or an index's errors, or
                    // move them out of the policy's reach (a renamed column, a generated copy,
                    // another schema): nothing but the rewrite stops it here.
                    refusal = AdminError("42501", "pgclone: \(MaskingRewriter.describe(kind)) on masked table \(table.schema).\(table.name) is not allowed for role \"\(context.role)\", which is masked by a policy that the server does not back up here (see pgclone.policy_status())")
                }
            }
            switch kind {
            case "ViewStmt":
                if let query = body["query"] { walk(query, ctes: []) }
            case "CreateTableAsStmt":
                if let query = body["query"] { walk(query, ctes: []) }
            case "CreateSchemaStmt":
                for element in body["schemaElts"]?.array ?? [] {
                    guard let (kind, inner) = element.tagged else { continue }
                    if MaskingRewriter.allowedStatements.contains(kind) {
                        statement(kind, inner)
                    } else if MaskingRewriter.definitionStatements.contains(kind) || !context.runsOnlyVisibleCode {
                        definition(kind, inner)
                    } else {
                        refuse("\(MaskingRewriter.describe(kind)) is not allowed")
                    }
                }
            case "CreateRangeStmt" where context.runsOnlyVisibleCode:
                // Their support functions would run, unseen, in index and range operations.
                for parameter in body["params"]?.array ?? [] {
                    let name = parameter["DefElem"]?["defname"]?.string ?? ""
                    if name == "canonical" || name == "subtype_diff" {
                        refuse("CREATE TYPE ... AS RANGE with a \(name) function is not allowed")
                        return
                    }
                }
            default:
                definitionWalk(body)
            }
        }

        /// A function call or an operator in the node meets the allow-lists.
        mutating func checkCalls(_ fields: [String: JSONNode]) {
            if let call = fields["FuncCall"] {
                let parts = call["funcname"]?.array.compactMap { $0["String"]?["sval"]?.string } ?? []
                let changedBefore = changesSession
                function(parts, arguments: call["args"]?.array.count ?? 0)
                if refusal != nil { return }
                if parts.last == "set_config", isBuiltin("set_config", schema: parts.count > 1 ? parts[parts.count - 2] : nil),
                   MaskingRewriter.setsHarmlessSetting(call) {
                    changesSession = changedBefore
                }
            }
            if let expression = fields["A_Expr"] {
                let name = expression["name"]?.array.last?["String"]?["sval"]?.string ?? ""
                switch expression["kind"]?.string ?? "" {
                case "AEXPR_BETWEEN", "AEXPR_BETWEEN_SYM":
                    // BETWEEN is >= and <= by name (search_path may reach a user's).
                    operatorCall(">=")
                    operatorCall("<=")
                case "AEXPR_NOT_BETWEEN", "AEXPR_NOT_BETWEEN_SYM":
                    operatorCall("<")
                    operatorCall(">")
                default:
                    operatorCall(name)
                }
                if refusal != nil { return }
            }
            // Operators named elsewhere: x op ANY/ALL (SELECT ...) and IN (SELECT ...), the `=` of
            // CASE x WHEN, ORDER BY ... USING op.
            if let link = fields["SubLink"] {
                if let name = link["operName"]?.array.last?["String"]?["sval"]?.string { operatorCall(name) }
                if ["ANY_SUBLINK", "ALL_SUBLINK"].contains(link["subLinkType"]?.string ?? ""), link["operName"] == nil { operatorCall("=") }
                if refusal != nil { return }
            }
            // A type named anywhere (a cast, a column definition, a PREPARE's parameter, a
            // record's column list): one of a role's own runs its input function, casts and
            // domain checks, which pgclone cannot read.
            if context.runsOnlyVisibleCode, let typeName = fields["TypeName"] ?? (fields["names"] != nil && fields["typemod"] != nil ? JSONNode.object(fields) : nil) {
                let names = typeName["names"]?.array.compactMap { $0["String"]?["sval"]?.string } ?? []
                if let name = names.last, !isBuiltinType(name, schema: names.count > 1 ? names[names.count - 2] : nil) {
                    refuse("type \(names.joined(separator: ".")) is not built in: its functions and checks run code pgclone cannot read, and \(MaskingRewriter.whyOnlyVisibleCode(context))")
                    return
                }
            }
            if let join = fields["JoinExpr"], join["usingClause"] != nil || join["isNatural"]?.bool == true {
                // USING and NATURAL compare the columns with `=` found by name.
                operatorCall("=")
                if refusal != nil { return }
            }
            if let caseExpression = fields["CaseExpr"], caseExpression["arg"] != nil {
                operatorCall("=")
                if refusal != nil { return }
            }
            if let sort = fields["SortBy"], let operators = sort["useOp"]?.array {
                operatorCall(operators.last?["String"]?["sval"]?.string ?? "")
                if refusal != nil { return }
            }
            // Functional notation: `t.f` and `(t).f` call f(t) when t has no column f.
            var selected: [String] = []
            if let reference = fields["ColumnRef"], let names = reference["fields"]?.array, names.count >= 2,
               let last = names.last?["String"]?["sval"]?.string {
                selected.append(last)
            }
            if let indirection = fields["A_Indirection"]?["indirection"]?.array {
                selected += indirection.compactMap { $0["String"]?["sval"]?.string }
            }
            for name in selected where context.userFunctions.contains(name) || createdFunctions.contains(name) || context.riskyDefiners.contains(name) {
                function([name], arguments: 1)
                if refusal != nil { return }
            }
        }

        /// Walks a definition: queries in it are reads; expressions meet the allow-lists.
        mutating func definitionWalk(_ node: JSONNode) {
            guard refusal == nil else { return }
            switch node {
            case .array(let items):
                for item in items { definitionWalk(item) }
            case .object(let fields):
                if let (kind, body) = node.tagged, fields.count == 1 {
                    if kind == "SelectStmt" || Self.writes.contains(kind) {
                        statement(kind, body)
                        return
                    }
                    if kind == "Constraint", context.reliesOnRewriteAlone, let referenced = body["pktable"], let table = masked(referenced["RangeVar"] ?? referenced) {
                        // Inserting into the referencing table would tell which values exist.
                        refuse("a foreign key to masked table \(table.schema).\(table.name) is not allowed")
                        return
                    }
                }
                checkCalls(fields)
                if refusal != nil { return }
                for (_, value) in fields { definitionWalk(value) }
            default:
                break
            }
        }

        /// The first masked table a statement names anywhere (as a RangeVar, or through its schema
        /// in GRANT/REVOKE ... ON ALL TABLES IN SCHEMA).
        func maskedTableNamed(in body: JSONNode) -> MaskingContext.Table? {
            if body["targtype"]?.string == "ACL_TARGET_ALL_IN_SCHEMA" {
                let schemas = body["objects"]?.array.compactMap { $0["String"]?["sval"]?.string } ?? []
                if let table = context.tables.first(where: { schemas.contains($0.schema) }) { return table }
            }
            var found: MaskingContext.Table?
            body.walk { node in
                guard found == nil else { return }
                if let (tag, rangeVar) = node.tagged, tag == "RangeVar" {
                    found = masked(rangeVar)
                } else if node["relname"]?.string != nil, node["relpersistence"] != nil {
                    // A field typed RangeVar (a statement's `relation`) comes without the tag.
                    found = masked(node)
                }
            }
            return found
        }

        func masked(_ rangeVar: JSONNode) -> MaskingContext.Table? {
            guard let name = rangeVar["relname"]?.string else { return nil }
            return context.table(schema: rangeVar["schemaname"]?.string, name: name)
        }

        mutating func copy(_ body: JSONNode) {
            if let relation = body["relation"], let table = masked(relation) {
                guard body["is_from"]?.bool != true else {
                    refuse("COPY into \(table.schema).\(table.name) is not allowed")
                    return
                }
                guard !table.isPartitioned else {
                    // As the server itself answers.
                    refusal = AdminError("42809", "cannot copy from partitioned table \"\(table.name)\"", hint: "Try the COPY (SELECT ...) TO variant.")
                    return
                }
                // COPY t [(cols)] TO ... becomes COPY (SELECT cols FROM masked) TO ...
                let start = relation["location"]?.int ?? 0
                var end = lexer.endOfQualifiedName(startingAt: start)
                var columns = "*"
                if let list = body["attlist"]?.array, !list.isEmpty {
                    columns = list.compactMap { $0["String"]?["sval"]?.string }.map(SQL.identifier).joined(separator: ", ")
                    if let close = lexer.endOfCall(startingAt: end) { end = close }
                }
                // COPY t TO reads t's own rows, never its inheritance children's.
                switch table.maskedRelation(only: true) {
                case .success(let relation):
                    edits.append(Edit(range: start..<end, replacement: "(SELECT \(columns) FROM \(relation) AS \(SQL.identifier(table.name)))"))
                case .failure(let error):
                    refusal = error
                }
                return
            }
            // Everything else it holds: its query, and the WHERE of a COPY FROM (run on every row:
            // its calls are judged as anywhere else).
            walk(body, ctes: [], skipKeys: ["relation"])
        }

        mutating func walk(_ node: JSONNode, ctes: Set<ExactName>, skipKeys: Set<String> = []) {
            guard refusal == nil, !isTrusted(node) else { return }
            switch node {
            case .array(let items):
                for item in items { walk(item, ctes: ctes) }
            case .object(let fields):
                if fields.count == 1, let (kind, body) = node.tagged,
                   Self.writes.contains(kind) || kind == "CreateTableAsStmt" || (kind == "SelectStmt" && body["intoClause"] != nil) {
                    statement(kind, body, ctes: ctes)
                    return
                }
                if readsSystemColumns, fields.count == 1, let (kind, body) = node.tagged, kind == "SelectStmt" {
                    expandStars(body, ctes: ctes)
                    if refusal != nil { return }
                }
                if let rangeVar = fields["RangeVar"] {
                    rangeVarReference(rangeVar, ctes: ctes)
                    return
                }
                if let columnRef = fields["ColumnRef"] {
                    checkCalls(fields)
                    qualifiedColumnReference(columnRef)
                    return
                }
                if let sample = fields["RangeTableSample"], let rangeVar = sample["relation"]?["RangeVar"],
                   let name = rangeVar["relname"]?.string, !(rangeVar["schemaname"] == nil && ctes.contains(ExactName(name))),
                   let table = context.table(schema: rangeVar["schemaname"]?.string, name: name) {
                    tableSample(sample, rangeVar: rangeVar, table: table)
                    return
                }
                checkCalls(fields)
                if refusal != nil { return }
                var scope = ctes
                if let with = fields["withClause"] {
                    // A CTE body sees the CTEs before it (all of them if RECURSIVE), not itself;
                    // a name that is not a CTE in scope there is the real table.
                    let recursive = with["recursive"]?.bool == true
                    let entries = with["ctes"]?.array.compactMap { $0["CommonTableExpr"] } ?? []
                    let names = entries.compactMap { $0["ctename"]?.string.map { ExactName($0) } }
                    for (index, entry) in entries.enumerated() {
                        let visible = recursive ? ctes.union(names) : ctes.union(names.prefix(index))
                        if let query = entry["ctequery"] { walk(query, ctes: visible) }
                    }
                    scope.formUnion(names)
                }
                for (key, value) in fields where !skipKeys.contains(key) && key != "withClause" {
                    walk(value, ctes: scope)
                }
            default:
                break
            }
        }

        /// The allow-list for calls: built-ins except those that reach beyond the statement; other
        /// functions when they run as the caller (whom the server backstop stops) and every masked
        /// table is backed up by the server; or when a policy allows them by name.
        mutating func function(_ parts: [String], arguments: Int) {
            let name = parts.last ?? ""
            let schema = parts.count > 1 ? parts[parts.count - 2] : nil
            if FunctionsBeyondTheRewrite.contains(name, arguments: arguments) {
                refuse("function \(name)() is not allowed: it runs SQL text or reads files, large objects or other databases, which pgclone cannot mask")
                return
            }
            // Exactly the name a policy allows (a canonically equivalent spelling is another function).
            let allowed = context.allowedFunctions.contains { ExactName($0) == ExactName(name) }
            if context.riskyDefiners.contains(name) && !allowed {
                refuse("function \(name)() runs with the rights of its owner, who can read sensitive columns; it is not allowed")
                return
            }
            let builtin = isBuiltin(name, schema: schema)
            if !builtin && !allowed && context.runsOnlyVisibleCode {
                refuse("function \(name)() is not built in, and \(MaskingRewriter.whyOnlyVisibleCode(context)): only built-in functions and those a policy allows may be called")
                return
            }
            noteCalledFunction(name, schema: schema)
        }

        /// Whether a call certainly reaches a built-in function. An unqualified name that is
        /// also a user function's (as of the context's read, or created earlier in this text)
        /// may resolve to that function through search_path (or a closer argument type): it is
        /// judged as a user function.
        func isBuiltin(_ name: String, schema: String?) -> Bool {
            guard builtinFunctions?.contains(name) ?? false else { return false }
            if schema == "pg_catalog" || schema == "information_schema" { return true }
            return schema == nil && !context.userFunctions.contains(name) && !createdFunctions.contains(name)
        }

        /// Whether a type name certainly reaches a built-in type (an unqualified one that a type of
        /// a role's own also has may resolve to it through search_path).
        func isBuiltinType(_ name: String, schema: String?) -> Bool {
            guard builtinFunctions?.contains("type:" + name) ?? true else { return false }
            if schema == "pg_catalog" || schema == "information_schema" { return true }
            return schema == nil && !context.userTypes.contains(name)
        }

        /// Operators call functions: the same rules, by operator symbol.
        mutating func operatorCall(_ name: String) {
            guard !name.isEmpty else { return }
            if context.riskyOperators.contains(name) {
                refuse("operator \(name) runs a function with the rights of its owner, who can read sensitive columns; it is not allowed")
                return
            }
            if context.userOperators.contains(name) && context.runsOnlyVisibleCode {
                refuse("operator \(name) is not built in, and \(MaskingRewriter.whyOnlyVisibleCode(context)): it is not allowed")
                return
            }
            // An operator neither built in nor known to the context was created since it was read.
            if unknownFunction == nil, let builtins = builtinFunctions, !builtins.contains(name), !context.userOperators.contains(name),
               !context.extensionOperators.contains(name) {
                unknownFunction = "operator \(name)"
            }
        }

        /// A called function the context knows nothing about (not built in, not a user function
        /// when the context was read) was created since: it could read a masked table.
        mutating func noteCalledFunction(_ name: String, schema: String?) {
            let builtin = isBuiltin(name, schema: schema)
            if !builtin { callsUserFunction = true }
            if !builtin || name == "set_config" { changesSession = true }
            guard unknownFunction == nil, !context.userFunctions.contains(name) else { return }
            if !builtin { unknownFunction = name }
        }

        mutating func rangeVarReference(_ rangeVar: JSONNode, ctes: Set<ExactName>) {
            guard let name = rangeVar["relname"]?.string else { return }
            let schema = rangeVar["schemaname"]?.string
            if schema == nil, ctes.contains(ExactName(name)) { return }
            if schema == "pg_toast" || (schema == nil && name.hasPrefix("pg_toast_")) {
                // A table's TOAST relation holds its long values as they are.
                refuse("\(schema.map { "\($0)." } ?? "")\(name) holds tables' values out of line and is not allowed")
                return
            }
            if MaskingRewriter.valueRevealingRelations.contains(name) && (schema == nil || schema == "pg_catalog") {
                refuse("\(name) shows column values and is not allowed")
                return
            }
            if context.taintedRelations.contains(name) {
                refuse("\(schema.map { "\($0)." } ?? "")\(name) reads a masked table and is not allowed")
                return
            }
            if context.runsOnlyVisibleCode && context.viewsCallingFunctions.contains(name) {
                refuse("\(schema.map { "\($0)." } ?? "")\(name) calls functions that are not built in, and \(MaskingRewriter.whyOnlyVisibleCode(context)): it is not allowed")
                return
            }
            if let ancestor = context.misplacedAncestor(schema: schema, name: name) {
                refuse("the masking policy on \(ancestor.policyTable) is on a partition or inheritance child of \(ancestor.schema).\(ancestor.name), whose reads it does not cover; put the policy on the root table")
                return
            }
            guard let table = context.table(schema: schema, name: name) else { return }
            let location = rangeVar["location"]?.int ?? 0
            var nameEnd = lexer.endOfQualifiedName(startingAt: location)
            // `t *` (the table and its descendants, the default): the star belongs to the name.
            let next = lexer.skipSpaceAndComments(from: nameEnd)
            if next < lexer.bytes.count, lexer.bytes[next] == UInt8(ascii: "*") { nameEnd = next + 1 }
            // `ONLY (t)`: the parentheses go with the name (an alias may not stand inside them).
            var nameStart = location
            if let (open, close) = parenthesizedAfterOnly(location, nameEnd) {
                nameStart = open
                nameEnd = close
            }
            let only = rangeVar["inh"]?.bool != true
            let relation: String
            switch table.maskedRelation(only: only, system: readsSystemColumns) {
            case .success(let masked): relation = masked
            case .failure(let error):
                if refusal == nil { refusal = error }
                return
            }
            // What precedes the name: ONLY, TABLE, or TABLE ONLY.
            var keywords: [(word: String, start: Int)] = []
            var cursor = nameStart
            while keywords.count < 2, let (word, start) = lexer.previousWord(before: cursor), word == "only" || word == "table" {
                keywords.append((word, start))
                cursor = start
                if word == "table" { break }
            }
            let isTableCommand = keywords.last?.word == "table"
            let hasAlias = rangeVar["alias"] != nil
            if !hasAlias { unaliased.insert([table.schema, table.name]) }
            // TABLE takes no alias; elsewhere the table's own name stays usable in column references.
            let alias = hasAlias || isTableCommand ? "" : " AS \(SQL.identifier(name))"
            switch table.reads {
            case .views:
                // A view takes ONLY and TABLE as the table did: only the name changes.
                edits.append(Edit(range: nameStart..<nameEnd, replacement: relation + alias))
            case .inline, .stale:
                // ONLY (SELECT ...) and TABLE (SELECT ...) are not SQL: the subquery replaces them too.
                let start = keywords.last?.start ?? nameStart
                let prefix = isTableCommand ? "SELECT * FROM " : ""
                let subqueryAlias = isTableCommand && !hasAlias ? " AS \(SQL.identifier(name))" : alias
                edits.append(Edit(range: start..<nameEnd, replacement: prefix + relation + subqueryAlias))
            }
        }

        /// With a system column named, a masked table is read through the relation that also
        /// carries its system columns (`ctid`, `xmin`...), which a `*` would show as columns the
        /// table does not have: a `*` or `t.*` over the masked table is written out as the table's
        /// own columns. A bare `*` over a masked table and other relations is refused (their
        /// columns are not known here).
        mutating func expandStars(_ select: JSONNode, ctes outer: Set<ExactName>) {
            let own = select["withClause"]?["ctes"]?.array.compactMap { $0["CommonTableExpr"]?["ctename"]?.string.map { ExactName($0) } } ?? []
            let ctes = outer.union(own)
            var masked: [(name: String, table: MaskingContext.Table)] = []
            var others = 0
            func collect(_ item: JSONNode) {
                guard let (tag, body) = item.tagged else {
                    others += 1
                    return
                }
                switch tag {
                case "RangeVar":
                    if let name = body["relname"]?.string, !(body["schemaname"] == nil && ctes.contains(ExactName(name))),
                       let table = context.table(schema: body["schemaname"]?.string, name: name) {
                        masked.append((body["alias"]?["aliasname"]?.string ?? name, table))
                    } else {
                        others += 1
                    }
                case "JoinExpr":
                    if let left = body["larg"] { collect(left) }
                    if let right = body["rarg"] { collect(right) }
                default:
                    others += 1
                }
            }
            for item in select["fromClause"]?.array ?? [] { collect(item) }
            guard !masked.isEmpty else { return }
            for target in select["targetList"]?.array ?? [] {
                guard let reference = target["ResTarget"]?["val"]?["ColumnRef"], let fields = reference["fields"]?.array,
                      fields.last?["A_Star"] != nil, let location = reference["location"]?.int else { continue }
                let qualifier = fields.dropLast().compactMap { $0["String"]?["sval"]?.string }
                let alias: String
                let table: MaskingContext.Table
                var end: Int
                if qualifier.isEmpty {
                    guard masked.count == 1, others == 0 else {
                        refuse("* over masked table \(masked[0].table.schema).\(masked[0].table.name) and other relations, with a system column named, is not supported; list the columns")
                        return
                    }
                    (alias, table) = masked[0]
                    end = location + 1
                } else {
                    // `t.*`; a longer prefix (`s.t.*`) is left as written.
                    guard qualifier.count == 1, let match = masked.first(where: { ExactName($0.name) == ExactName(qualifier[0]) }) else { continue }
                    (alias, table) = match
                    end = lexer.skipSpaceAndComments(from: lexer.endOfQualifiedName(startingAt: location))
                    guard end < lexer.bytes.count, lexer.bytes[end] == UInt8(ascii: ".") else { continue }
                    end = lexer.skipSpaceAndComments(from: end + 1)
                    guard end < lexer.bytes.count, lexer.bytes[end] == UInt8(ascii: "*") else { continue }
                    end += 1
                }
                guard location < end, lexer.bytes[end - 1] == UInt8(ascii: "*") else { continue }
                let columns = table.columns.sorted { $0.number < $1.number }
                    .map { "\(SQL.identifier(alias)).\(SQL.identifier($0.name))" }.joined(separator: ", ")
                edits.append(Edit(range: location..<end, replacement: columns))
            }
        }

        /// The span of `(` name `)` when the name at `start..<end` stands in parentheses after ONLY.
        func parenthesizedAfterOnly(_ start: Int, _ end: Int) -> (Int, Int)? {
            var open = start - 1
            while open >= 0, [UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r")].contains(lexer.bytes[open]) { open -= 1 }
            guard open >= 0, lexer.bytes[open] == UInt8(ascii: "("), lexer.previousWord(before: open)?.0 == "only" else { return nil }
            let close = lexer.skipSpaceAndComments(from: end)
            guard close < lexer.bytes.count, lexer.bytes[close] == UInt8(ascii: ")") else { return nil }
            return (open, close + 1)
        }

        /// `t TABLESAMPLE BERNOULLI (p)` (or SYSTEM) of a masked table: a view cannot be sampled, so
        /// the masked read keeps each row with probability p%, as BERNOULLI does (SYSTEM samples
        /// pages, with the same expected share of rows). REPEATABLE cannot be kept: refused.
        mutating func tableSample(_ sample: JSONNode, rangeVar: JSONNode, table: MaskingContext.Table) {
            let method = sample["method"]?.array.last?["String"]?["sval"]?.string ?? ""
            // The percentage is copied into the masked read: only a constant (or a parameter) may be.
            let argument = sample["args"]?.array.first?.tagged?.0
            guard ["bernoulli", "system"].contains(method), sample["args"]?.array.count == 1, argument == "A_Const" || argument == "ParamRef" else {
                refuse("TABLESAMPLE \(method.uppercased()) on masked table \(table.schema).\(table.name) is not supported (BERNOULLI and SYSTEM with a constant percentage are)")
                return
            }
            guard sample["repeatable"] == nil else {
                refuse("TABLESAMPLE ... REPEATABLE on masked table \(table.schema).\(table.name) is not supported")
                return
            }
            let methodStart = sample["location"]?.int ?? 0
            guard let clauseEnd = lexer.endOfCall(startingAt: methodStart), let (keyword, clauseStart) = lexer.previousWord(before: methodStart),
                  keyword == "tablesample", let open = lexer.bytes[methodStart..<clauseEnd].firstIndex(of: UInt8(ascii: "(")) else {
                refuse("this TABLESAMPLE clause could not be read")
                return
            }
            let relation: String
            switch table.maskedRelation(only: rangeVar["inh"]?.bool != true, system: readsSystemColumns) {
            case .success(let masked): relation = masked
            case .failure(let error):
                if refusal == nil { refusal = error }
                return
            }
            let percent = lexer.text((open + 1)..<(clauseEnd - 1))
            let location = rangeVar["location"]?.int ?? 0
            let alias = rangeVar["alias"] == nil ? " AS \(SQL.identifier(table.name))" : ""
            edits.append(Edit(range: location..<lexer.endOfQualifiedName(startingAt: location), replacement:
                "(SELECT * FROM \(relation) AS pgclone_sample WHERE pg_catalog.random() OPERATOR(pg_catalog.<) ((\(percent))::pg_catalog.float8 OPERATOR(pg_catalog./) 100))\(alias)"))
            edits.append(Edit(range: clauseStart..<clauseEnd, replacement: ""))
        }

        /// `schema.table.column` (and `db.schema.table.column`) of a masked table read without an
        /// alias: the read now has the table's bare name as its alias, so the prefix goes.
        mutating func qualifiedColumnReference(_ columnRef: JSONNode) {
            let fields = columnRef["fields"]?.array ?? []
            guard fields.count >= 3 else { return }
            let names = fields.map { $0["String"]?["sval"]?.string }
            guard let schema = names[fields.count - 3], let table = names[fields.count - 2],
                  context.table(schema: schema, name: table) != nil else { return }
            let parts = lexer.qualifiedNameParts(startingAt: columnRef["location"]?.int ?? 0)
            guard parts.count >= fields.count - 1 else { return }
            columnPrefixEdits.append((key: [schema, table], edit: Edit(range: parts[0].lowerBound..<parts[fields.count - 2].lowerBound, replacement: "")))
        }
    }
}
