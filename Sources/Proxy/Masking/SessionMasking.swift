import CloneEngine
import Masking
import PostgresWire
import JSON
import SQLParser

/// One session's masking state: the context for its current role, a cache of
/// rewritten statements, and when the context must be read again.
///
/// The context is read in-band (on the session itself) before the first
/// statement, after any statement that may change the role or search_path, and
/// when the policies change. Sessions that are not masked pay only a substring
/// check per statement.
struct SessionMasking {
    private(set) var context: MaskingContext?
    private(set) var needsCheck = true
    /// When the context was read: views and functions created since then are only known after a re-read.
    private var checkedAt: ContinuousClock.Instant?
    /// How long a context is trusted before it is read again.
    static let maximumAge: Duration = .seconds(2)
    /// How fresh the context must be for a COPY (whose output the guard cannot see).
    static let copyFreshness: Duration = .milliseconds(5)

    var contextAge: Duration { checkedAt.map { ContinuousClock.now - $0 } ?? .seconds(3600) }
    /// Rewrites by statement shape (the text without its numeric constants): a driver that
    /// sends `... WHERE id = 17`, then `... = 18`, parses and rewrites once.
    private var cache: [[UInt8]: CachedRewrite] = [:]
    /// Bounds on what one session keeps: a masked role could otherwise fill the proxy's
    /// memory with large distinct statements.
    static let cacheLimit = 256
    static let largestCachedStatement = 16 << 10

    /// How many statement shapes the session has cached.
    var cachedShapes: Int { cache.count }

    enum CachedRewrite {
        case unchanged
        case template(ShapedRewrite)
    }
    /// Set after a RowDescription was refused: rows up to the command's end are dropped.
    var suppressingRows = false

    /// Words after which the role or search_path may differ (SET ROLE, RESET ALL, DISCARD ALL,
    /// SET SESSION AUTHORIZATION, set_config('role', ...), a ROLLBACK or COMMIT ending SET LOCAL).
    /// DDL words too: a view or function created since the context was read must be known before it is used.
    private static let triggers: [[UInt8]] = ["role", "authorization", "reset", "discard", "search_path", "rollback", "abort", "commit", "set_config",
                                              "create", "alter", "drop", "import"]
        .map { Array($0.utf8) }

    static let copyWord = Array("copy".utf8)

    var isMasked: Bool { context?.isMasked ?? false }

    enum Check {
        case none
        /// The context is only old: re-read it when convenient.
        case refresh
        /// The role or the policies may have changed: the context must be re-read first.
        case required
    }

    /// Whether the context must be (re)read before running a statement under `policies`.
    func check(_ policies: PolicySet) -> Check {
        guard !policies.isEmpty else { return .none }
        if needsCheck || context?.policyVersion != policies.version { return .required }
        if let checkedAt, ContinuousClock.now - checkedAt > Self.maximumAge { return .refresh }
        return .none
    }

    /// Counts the context changes: a statement prepared under an older context carries that
    /// context's rewrite (or none) and must not run under this one.
    private(set) var generation = 0
    /// SQL-level prepared statements (PREPARE) and the generation they were prepared under.
    private var sqlPrepared: [String: Int] = [:]

    mutating func update(_ context: MaskingContext) {
        // Only what decides a rewrite counts: a new table or function anywhere in the database
        // (the highest OID, the user-function names) leaves earlier rewrites and prepared
        // statements as they were; a new policy, role or tainted view or function does not.
        if !context.decidesRewritesLike(self.context) {
            cache.removeAll()
            generation += 1
        }
        self.context = context
        needsCheck = false
        checkedAt = ContinuousClock.now
        justChecked = true
    }

    /// Set by a context read, cleared by the next rewrite: a statement that asked for a fresh
    /// context is not sent back for another one.
    private var justChecked = false

    /// Called for each statement sent on: does it possibly change who we are?
    mutating func noteStatement<Bytes: Collection>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        if Self.mentionsTrigger(bytes) { needsCheck = true }
    }

    /// A ParameterStatus for the role (is_superuser, session_authorization) means the role changed.
    mutating func noteParameter(_ name: String) {
        if name == "is_superuser" || name == "session_authorization" { needsCheck = true }
    }

    mutating func rewrite(_ sql: String, builtinFunctions: Set<String>? = nil) -> MaskingRewriter.Result {
        guard let context, context.isMasked else { return .unchanged }
        let fresh = justChecked
        justChecked = false
        let bytes = Array(sql.utf8)
        let shape = StatementShape(bytes)
        switch cache[shape.key] {
        case .unchanged?:
            return .unchanged
        case .template(let template)?:
            return .rewritten(String(decoding: template.apply(to: bytes, constants: shape.constants), as: UTF8.self))
        case nil:
            break
        }
        let (plan, uses) = MaskingRewriter(context: context, builtinFunctions: builtinFunctions).planAndUses(sql, bytes: bytes)
        if let function = plan.unknownFunction, !fresh {
            needsCheck = true
            return .needsFreshContext(function: function)
        }
        if case .refused = plan {} else if let refusal = trackPreparedStatements(uses) {
            return .refused(refusal)
        }
        var cached: CachedRewrite?
        let result: MaskingRewriter.Result
        switch plan {
        case .unchanged:
            cached = .unchanged
            result = .unchanged
        case .edits(let edits, _):
            cached = ShapedRewrite(text: bytes, shape: shape, replacements: edits.map { ($0.range, Array($0.replacement.utf8)) }).map(CachedRewrite.template)
            result = .rewritten(String(decoding: MaskingRewriter.apply(edits, to: bytes), as: UTF8.self))
        case .refused(let error):
            // Not cached: a refusal's message may quote the statement (a syntax error at a constant).
            cached = nil
            result = .refused(error)
        }
        // A statement calling a function that is still unknown on a fresh context (it does not
        // exist, or appeared just now) is judged again next time.
        // Statements that prepare or execute are judged every time (their names are tracked).
        if plan.unknownFunction != nil || bytes.count > Self.largestCachedStatement || !uses.isEmpty { cached = nil }
        if let cached {
            if cache.count >= Self.cacheLimit { cache.removeAll() }
            cache[shape.key] = cached
        }
        return result
    }

    /// Follows PREPARE / EXECUTE / DEALLOCATE: EXECUTE of a statement not prepared under the
    /// current context (before the session was masked, or before the role or the policies
    /// changed) would run an old rewrite, or none, so it is refused.
    private mutating func trackPreparedStatements(_ uses: [MaskingRewriter.Plan.PreparedStatementUse]) -> AdminError? {
        var prepared = sqlPrepared
        for use in uses {
            switch use {
            case .prepare(let name):
                prepared[name] = generation
            case .execute(let name):
                guard prepared[name] == generation else {
                    return AdminError("42501", "pgclone: prepared statement \"\(name)\" was prepared before this session's masking last changed (its role or the policies); prepare it again")
                }
            case .deallocate(let name?):
                prepared[name] = nil
            case .deallocate(nil):
                prepared.removeAll()
            }
        }
        sqlPrepared = prepared
        return nil
    }

    /// The refusal for a result that would carry a masked column, if any.
    mutating func violation(_ description: RowDescription) -> String? {
        guard let context, context.isMasked else { return nil }
        for column in description.columns where column.tableOID > context.maximumRelationOID {
            needsCheck = true
            return "pgclone: result column \"\(column.name)\" comes from a relation created after this session's masking context was read; run the statement again"
        }
        for column in description.columns where context.isMaskedOrigin(tableOID: column.tableOID, attribute: column.columnAttributeNumber) {
            let table = context.tables.first { $0.oid == column.tableOID }
            return "pgclone: result column \"\(column.name)\" would carry unmasked values of \(table.map { "\($0.schema).\($0.name)" } ?? "a masked table"); the statement's rows were not sent"
        }
        return nil
    }

    /// A query string of several statements one of which may change the role.
    static func changesRoleAmongOthers(_ sql: String) -> Bool {
        guard let statements = try? PostgresParser.parse(sql) else { return false }
        guard statements.count > 1 else { return false }
        return statements.contains { statement in
            guard let (kind, body) = statement.node.tagged else { return false }
            switch kind {
            case "VariableSetStmt":
                let name = body["name"]?.string ?? ""
                return name == "role" || name == "session_authorization" || body["kind"]?.string == "VAR_RESET_ALL"
            case "DiscardStmt":
                return true
            default:
                var setsConfig = false
                statement.node.walk { node in
                    if let call = node["FuncCall"], call["funcname"]?.array.last?["String"]?["sval"]?.string == "set_config" { setsConfig = true }
                }
                return setsConfig
            }
        }
    }

    static func mentionsTrigger<Bytes: Collection>(_ bytes: Bytes) -> Bool where Bytes.Element == UInt8 {
        triggers.contains { mentions(bytes, $0) }
    }

    /// Whether the text contains `word` (lower case), ignoring ASCII case. Runs once or
    /// more per statement of a masked session: no copies.
    static func mentions<Bytes: Collection>(_ bytes: Bytes, _ word: [UInt8]) -> Bool where Bytes.Element == UInt8 {
        guard let first = word.first, bytes.count >= word.count else { return false }
        var start = bytes.startIndex
        let lastStart = bytes.index(bytes.endIndex, offsetBy: -(word.count - 1))
        while start != lastStart {
            if lowered(bytes[start]) == first {
                var index = bytes.index(after: start)
                var matched = 1
                while matched < word.count, lowered(bytes[index]) == word[matched] {
                    matched += 1
                    index = bytes.index(after: index)
                }
                if matched == word.count { return true }
            }
            start = bytes.index(after: start)
        }
        return false
    }

    @inline(__always) private static func lowered(_ byte: UInt8) -> UInt8 {
        byte >= 0x41 && byte <= 0x5A ? byte + 0x20 : byte
    }
}
