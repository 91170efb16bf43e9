import CloneEngine
import JSON
import Masking
import PostgresWire
import SQLParser

/// What one session knows about its masking, and how sure it is.
///
/// The server reports whether the current role is a superuser, client_encoding and
/// standard_conforming_strings (ParameterStatus); the rest (the role's masked tables, the
/// views and functions that read them, how unqualified names resolve) is read in-band on the
/// session itself. That read happens only where it is harmless: between requests, never
/// inside a failed transaction, never in front of the statement that ends one. In between,
/// a statement that may have changed what was read makes the knowledge stale; statements
/// that cannot wait for a read are masked under the worst case (every policy table, names
/// taken conservatively), and statements that cannot be masked safely are refused, never
/// relayed.
struct MaskingState {
    enum Knowledge: Equatable {
        /// Never read.
        case unknown
        /// Read, and nothing since may have changed it.
        case current
        /// A statement since may have changed the role, the names or the catalog.
        case stale
        /// The last read failed: until one succeeds, statements that could be masked are refused.
        case failed(AdminError)
    }

    /// How a statement is to be treated.
    enum Treatment: Equatable {
        /// Relayed as it is (the session is not masked, for sure).
        case relay
        /// Rewritten (or refused) under this context.
        case mask(MaskingContext)
        /// Read the context first, then decide again.
        case readFirst
        case refuse(AdminError)
    }

    private(set) var knowledge = Knowledge.unknown
    /// The context of the current role, and the worst case, as last read.
    private(set) var context: MaskingContext? {
        didSet {
            contextIsMasked = context?.isMasked ?? false
            contextPolicyVersion = context?.policyVersion
            refreshStanding()
        }
    }
    /// Two facts of `context`, kept beside it: they are checked for every statement and every
    /// Bind and Execute of a session that may be masked, and reading them through the optional
    /// copied the whole context (its sets and arrays) each time (seen in perf: ~1 us a Bind).
    private(set) var contextIsMasked = false
    private(set) var contextPolicyVersion: Int?
    private(set) var worstCase: MaskingContext?
    private(set) var readAt: ContinuousClock.Instant?

    /// What the server reported (ParameterStatus is_superuser): set at login and by SET ROLE and
    /// SET SESSION AUTHORIZATION, but not when ALTER ROLE ... NOSUPERUSER demotes the session's
    /// role, which the server applies to the open session at once.
    private(set) var reportedSuperuser = false {
        didSet { refreshStanding() }
    }
    /// A superuser as far as the proxy knows: reported so, and not contradicted by the last read
    /// of the context (which asks the catalog, and finds tables masked for a role that is no
    /// longer one: round 17, a demoted superuser's open session read real values). A superuser's
    /// context is read again every `maximumAge` while policies are in force. Stored (kept by
    /// `context` and `reportedSuperuser`) for the same reason as `contextIsMasked`.
    private(set) var isSuperuser = false
    private(set) var sessionAuthorization: String?
    private(set) var reading = StatementText.Settings()

    /// A statement that may change the role, the encoding or standard_conforming_strings is in
    /// flight: until the server is quiet again (and has reported the new values), statements are
    /// judged under the worst case and read conservatively.
    private(set) var inFlightChange = false
    /// The role (or names) were changed since the session was last idle: ending the transaction
    /// (or rolling back to a savepoint) may change them back.
    private(set) var mayRevertAtTransactionEnd = false
    /// The same for client_encoding and standard_conforming_strings (the server reports their
    /// new values, but only at the end of the request that reverted them).
    private var mayRevertReading = false

    /// Rewrites by statement shape (the text without its numeric constants): a driver that
    /// sends `... WHERE id = 17`, then `... = 18`, parses and rewrites once.
    private var cache: [[UInt8]: CachedRewrite] = [:]
    /// Statements found in the rewrite cache, and those that had to be analysed (metrics).
    private(set) var cacheHits = 0
    private(set) var cacheMisses = 0
    static let cacheLimit = 256
    static let largestCachedStatement = 16 << 10
    var cachedShapes: Int { cache.count }

    struct CachedRewrite {
        var template: ShapedRewrite?
        var effects: MaskingRewriter.Effects
    }

    /// Counts changes of what decides rewrites: a statement prepared under an older context
    /// carries that context's rewrite (or none) and must not run under this one.
    private(set) var generation = 0
    /// The last context read changed what decides the session's masking (its role, the
    /// policies, the tables...).
    private(set) var lastReadChangedMasking = false
    /// Counts the changes of what the session may read (a read that changed it, a role or
    /// search_path change noted): a portal is read only within the epoch it was bound in.
    private(set) var epoch = 0
    /// SQL-level prepared statements (PREPARE) and the generation they were prepared under.
    private var sqlPrepared: [ExactName: Int] = [:]

    /// How long a masked session's context is trusted (views and functions created by other
    /// sessions since are found by the next read).
    static let maximumAge: Duration = .seconds(2)
    /// How fresh the context must be for a COPY, whose output carries no column origins to check.
    static let copyFreshness: Duration = .milliseconds(5)
    /// How long a standing that cannot be read again (the client keeps an extended-protocol batch
    /// open, without Sync) is still taken on trust: past it, an unmasked or superuser session's
    /// statements are refused and a masked one's are read under the worst case (round 18: a
    /// batch left open kept a revoked exemption, or a demotion, from ever being seen).
    static let unreadableLimit: Duration = .seconds(10)
    static let unconfirmed = AdminError("55000", "pgclone: this session's masking has not been read for \(unreadableLimit.components.seconds) s and cannot be while an extended-protocol batch is open; send Sync",
                                        hint: "Drivers send Sync at the end of each batch or pipeline; the statement can run after it.")

    /// Never read, or read longer ago than `maximumAge`.
    func isOld(now: ContinuousClock.Instant) -> Bool {
        readAt.map { now - $0 > Self.maximumAge } ?? true
    }

    /// The standing was read, but longer ago than `unreadableLimit`.
    func isUnconfirmed(now: ContinuousClock.Instant) -> Bool {
        readAt.map { now - $0 > Self.unreadableLimit } ?? false
    }

    /// Set after a RowDescription was refused: rows up to the command's end are dropped.
    var suppressingRows = false

    /// Whether a statement prepared under an earlier context could read real values when run
    /// under the current one: yes unless the session is not masked or the server refuses it
    /// every sensitive column (then a statement that misses the rewrite gets "permission denied").
    var preparedStatementsNeedTheRewrite: Bool {
        guard let context else { return true }
        return context.isMasked && context.runsOnlyVisibleCode
    }

    /// The session's current role is masked (as last read; a superuser never is). Stored for the
    /// same reason as `contextIsMasked`.
    private(set) var isMasked = false

    private mutating func refreshStanding() {
        isSuperuser = reportedSuperuser && !contextIsMasked
        isMasked = !isSuperuser && contextIsMasked
    }

    // MARK: - What the server reports

    /// A ParameterStatus: the server's own account of the session's settings.
    mutating func parameterReported(name: String, value: String) {
        switch name {
        case "is_superuser":
            let superuser = value == "on"
            if superuser != reportedSuperuser, knowledge == .current { knowledge = .stale }
            reportedSuperuser = superuser
        case "session_authorization":
            if sessionAuthorization != nil, sessionAuthorization != value, knowledge == .current { knowledge = .stale }
            sessionAuthorization = value
        case "client_encoding":
            reading.clientEncoding = value
        case "standard_conforming_strings":
            reading.standardConformingStrings = value == "on"
        default:
            break
        }
    }

    /// Nothing is in flight: every ParameterStatus of what was sent has arrived.
    mutating func serverQuiet() {
        inFlightChange = false
        reading.uncertain = false
    }

    // MARK: - Reading the context

    mutating func contextRead(rows: [[String?]], policies: PolicySet, at now: ContinuousClock.Instant, idle: Bool) {
        let (context, worstCase) = MaskingContext.from(rows: rows, policies: policies)
        // Read inside the client's REPEATABLE READ or SERIALIZABLE transaction, the catalog is
        // seen as of that transaction's snapshot, while its statements resolve names against the
        // current catalog: what was made since (a SECURITY DEFINER function) is not in the context.
        let isolation = rows.first { $0.count == 6 && $0[0] == "user" }?[2] ?? nil
        snapshotPinned = !idle && (isolation == "repeatable read" || isolation == "serializable")
        install(context, worstCase: worstCase, at: now, idle: idle)
    }

    /// The last read saw the catalog through the client's transaction snapshot (see `contextRead`).
    private(set) var snapshotPinned = false

    mutating func install(_ context: MaskingContext, worstCase: MaskingContext, at now: ContinuousClock.Instant, idle: Bool) {
        // Only what decides a rewrite counts: a new table or function anywhere in the database
        // leaves earlier rewrites and prepared statements as they were.
        lastReadChangedMasking = !context.readsLike(self.context)
        if lastReadChangedMasking { epoch += 1 }
        if !context.decidesRewritesLike(self.context) || !worstCase.decidesRewritesLike(self.worstCase) {
            cache.removeAll()
            self.context = context
            if preparedStatementsNeedTheRewrite { generation += 1 }
        }
        self.context = context
        self.worstCase = worstCase
        knowledge = .current
        readAt = now
        justRead = true
        if idle { mayRevertAtTransactionEnd = false }
    }

    mutating func contextReadFailed(_ error: AdminError) {
        knowledge = .failed(error)
        failureToReport = error
    }

    /// The statement that waited for a read that failed gets the failure (the next one tries again).
    private var failureToReport: AdminError?

    /// Set by a read, cleared by the next rewrite: a statement that asked for a fresh context
    /// is not sent back for another one.
    private var justRead = false

    // MARK: - Judging a statement

    /// How the next statement is treated under `policies`.
    /// - Parameters:
    ///   - canRead: the context could be read now (nothing in flight, not in a failed transaction).
    ///   - isCopy: the statement may be a COPY (judged on a fresh context: its rows carry no origins).
    /// - Parameters:
    ///   - notReady: why the policies are not all known yet (nil when they are).
    mutating func treatment(policies: PolicySet, notReady: String?, canRead: Bool, isCopy: @autoclosure () -> Bool, now: ContinuousClock.Instant) -> Treatment {
        if let failure = failureToReport {
            failureToReport = nil
            return .refuse(failure)
        }
        if let notReady, !isSuperuser {
            return .refuse(AdminError("57P03", "\(notReady); statements of roles that could be masked are refused until it has",
                                      hint: "Check that pgclone's service role can log in to the state database; superusers are not affected."))
        }
        guard !policies.isEmpty else { return .relay }
        // A superuser login may read everything anyway; after SET ROLE to another role the server
        // reports is_superuser off (at the end of the request) and the context is read then. The
        // catalog is asked again when the last read is old: a demotion reports nothing.
        if isSuperuser {
            if isOld(now: now) {
                if canRead { return .readFirst }
                if isUnconfirmed(now: now) { return .refuse(Self.unconfirmed) }
            }
            return .relay
        }
        let needsRead = knowledge != .current || contextPolicyVersion != policies.version
        if needsRead {
            if canRead { return .readFirst }
            if inFlightChange || knowledge == .stale, let worstCase, worstCase.policyVersion == policies.version {
                return .mask(worstCase)
            }
            if case .failed(let error) = knowledge { return .refuse(error) }
            return .refuse(AdminError("42501", "pgclone: this session's masking cannot be read in the middle of an extended-protocol batch after the policies changed; send Sync first"))
        }
        if inFlightChange, let worstCase { return .mask(worstCase) }
        // Read again when it is old, masked or not: a membership granted or revoked (an exempt
        // role taken away) changes the session's masking without a policy reload.
        if canRead, let readAt {
            let age = now - readAt
            if age > Self.maximumAge || (age > Self.copyFreshness && isCopy() && contextIsMasked) { return .readFirst }
        }
        if !canRead, isUnconfirmed(now: now) {
            if !contextIsMasked { return .refuse(Self.unconfirmed) }
            if let worstCase, worstCase.policyVersion == policies.version { return .mask(worstCase) }
        }
        guard contextIsMasked, let context else { return .relay }
        return .mask(context)
    }

    /// Whether the context should be read before anything else runs (changed policies, a role
    /// change, or older than `maximumAge`).
    func needsFreshRead(policies: PolicySet, now: ContinuousClock.Instant) -> Bool {
        if policies.isEmpty { return false }
        if !isSuperuser, knowledge != .current || contextPolicyVersion != policies.version { return true }
        return isOld(now: now)
    }

    /// What a statement relayed without rewriting may change: only when it mentions a word that
    /// could change the role or how statements read is it parsed (an unmasked session pays a
    /// substring search per statement). Functions that change the role inside are not followed:
    /// a session that is not masked may read the real values anyway.
    static func relayedEffects<Bytes: Collection>(_ bytes: Bytes, mayRevert: Bool) -> MaskingRewriter.Effects where Bytes.Element == UInt8 {
        guard changeWords.matches(bytes) || (mayRevert && transactionEndWords.matches(bytes)) else { return [] }
        // A long text is not parsed on the event loop: taken to change everything.
        guard bytes.count <= synchronousParseLimit else { return .all }
        guard let statements = try? PostgresParser.parse(String(decoding: bytes, as: UTF8.self)) else { return [] }
        return statements.reduce(into: []) { $0.formUnion(MaskingRewriter.effects(of: $1)) }
    }

    /// Something may revert at the end of the transaction (statements that end one are then read).
    var mayRevert: Bool { mayRevertAtTransactionEnd || mayRevertReading }

    /// Whether a statement before the last of a text changes the role (the statements after it
    /// would run under a role the proxy has not read).
    /// With `currentUserOnly` (a superuser's session, which no membership masks), statements
    /// that make, change or drop roles or grant memberships do not count: only those that change
    /// who the session is (SET ROLE, SET SESSION AUTHORIZATION, RESET, DISCARD, set_config, DO...).
    static func changesRoleBeforeLast<Bytes: Collection>(_ bytes: Bytes, currentUserOnly: Bool = false) -> Bool where Bytes.Element == UInt8 {
        guard bytes.count <= synchronousParseLimit, roleWords.matches(bytes), TransactionControl.hasSeveralStatements(bytes),
              let statements = try? PostgresParser.parse(String(decoding: bytes, as: UTF8.self)), statements.count > 1 else { return false }
        return statements.dropLast().contains { statement in
            if currentUserOnly, let (kind, _) = statement.node.tagged, roleDefinitions.contains(kind) { return false }
            return MaskingRewriter.effects(of: statement).contains(.role)
        }
    }

    /// CREATE/ALTER/DROP ROLE (USER, GROUP) and GRANT/REVOKE of a role.
    static let roleDefinitions: Set<String> = ["CreateRoleStmt", "AlterRoleStmt", "AlterRoleSetStmt", "DropRoleStmt", "GrantRoleStmt"]

    /// What a statement changes in the session (read in full for a masked session, from
    /// `relayedEffects` otherwise).
    mutating func note(_ effects: MaskingRewriter.Effects) {
        if !effects.isDisjoint(with: [.role, .names]) {
            epoch += 1
            // Statements prepared before would be planned again under the new role or names
            // (PostgreSQL re-plans a prepared statement when search_path changes): where the
            // policies rely on the rewrite alone they must be prepared again under what the proxy
            // reads next. Where the server refuses the sensitive columns, a re-planned statement
            // reads nothing it should not: it stands.
            if preparedStatementsNeedTheRewrite { generation += 1 }
            cache.removeAll()
            knowledge = knowledge == .current ? .stale : knowledge
            inFlightChange = true
            mayRevertAtTransactionEnd = true
            // The statements after it are read as if the settings were changing too.
            reading.uncertain = true
        }
        if effects.contains(.reading) {
            inFlightChange = true
            reading.uncertain = true
            mayRevertReading = true
        }
        if effects.contains(.transactionEnd) {
            if mayRevertAtTransactionEnd {
                knowledge = knowledge == .current ? .stale : knowledge
                inFlightChange = true
            }
            if mayRevertReading {
                inFlightChange = true
                reading.uncertain = true
            }
        }
    }

    /// The server says a transaction ended (ReadyForQuery went from in-transaction to idle): what
    /// was changed inside it may have reverted, whatever statement ended it (COMMIT, ROLLBACK,
    /// a procedure's own COMMIT).
    mutating func transactionEnded() {
        if mayRevertAtTransactionEnd, knowledge == .current { knowledge = .stale }
        mayRevertAtTransactionEnd = false
        mayRevertReading = false
    }

    /// The masked form of `sql` under `context`, with what it changes in the session.
    /// What reading a statement found: its analysis under the context it was judged by, and,
    /// when a statement in it changes the role or the names for those after it, the analysis of
    /// the whole text under the worst case. Made off the event loop (`Analysis.make`) for a
    /// statement the cache does not know.
    struct Analysis: Sendable {
        var sql: String
        var generation: Int
        var underWorstCase: Bool
        var analysis: MaskingRewriter.Analysis
        var worstCaseAnalysis: MaskingRewriter.Analysis?

        /// Parses and plans `sql` (this is the part that may take long: run it on a parser thread).
        static func make(_ sql: String, context: MaskingContext, worstCase: MaskingContext?, builtinFunctions: Set<String>?, generation: Int) -> Analysis {
            let bytes = Array(sql.utf8)
            let analysis = MaskingRewriter(context: context, builtinFunctions: builtinFunctions).analyze(sql, bytes: bytes)
            var worst: MaskingRewriter.Analysis?
            if !context.isWorstCase, !analysis.effectsBeforeLast.isDisjoint(with: [.role, .names]), let worstCase {
                worst = MaskingRewriter(context: worstCase, builtinFunctions: builtinFunctions).analyze(sql, bytes: bytes)
            }
            return Analysis(sql: sql, generation: generation, underWorstCase: context.isWorstCase, analysis: analysis, worstCaseAnalysis: worst)
        }
    }

    /// What `rewrite` gives: the outcome, or that the statement must be analysed first.
    enum Rewrite {
        case done(MaskingRewriter.Result, MaskingRewriter.Effects)
        case needsAnalysis
    }

    /// An analysis made off the event loop, waiting for its statement to be judged again.
    private var pendingAnalysis: Analysis?

    mutating func analyzed(_ analysis: Analysis) {
        pendingAnalysis = analysis
    }

    /// The masked form of `sql` under `context`, with what it changes in the session; the
    /// statement is analysed here (tests, admin results) or, with `deferred`, asked for.
    mutating func rewrite(_ sql: String, under context: MaskingContext, builtinFunctions: Set<String>?) -> (MaskingRewriter.Result, MaskingRewriter.Effects) {
        if case .done(let result, let effects) = rewrite(sql, under: context, builtinFunctions: builtinFunctions, deferred: false) {
            return (result, effects)
        }
        preconditionFailure("an analysis made here is never deferred")
    }

    mutating func rewrite(_ sql: String, under context: MaskingContext, builtinFunctions: Set<String>?, deferred: Bool) -> Rewrite {
        let bytes = Array(sql.utf8)
        let shape = StatementShape(bytes)
        // The cache holds rewrites under the current context only.
        // (Nor under a snapshot-pinned read: its statements are judged each time, see below.)
        let cacheable = !context.isWorstCase && !snapshotPinned
        if cacheable, let cached = cache[shape.key] {
            cacheHits &+= 1
            justRead = false
            guard let template = cached.template else { return .done(.unchanged, cached.effects) }
            return .done(.rewritten(String(decoding: template.apply(to: bytes, constants: shape.constants), as: UTF8.self)), cached.effects)
        }
        let made: Analysis
        if let pending = pendingAnalysis, pending.sql == sql, pending.generation == generation, pending.underWorstCase == context.isWorstCase {
            made = pending
            pendingAnalysis = nil
        } else if deferred {
            return .needsAnalysis
        } else {
            made = Analysis.make(sql, context: context, worstCase: worstCase, builtinFunctions: builtinFunctions, generation: generation)
        }
        cacheMisses &+= 1
        let fresh = justRead
        justRead = false
        if let worst = made.worstCaseAnalysis {
            // A statement changes the role or the names for the statements after it in the same
            // text: all of them are read under the worst case.
            if worst.uses.contains(where: { if case .execute = $0 { true } else { false } }) {
                return .done(.refused(AdminError("42501", "pgclone: EXECUTE after a change of role or search_path in the same query string would be planned again under names pgclone has not read; send it separately")), worst.effects)
            }
            // What it prepares is not recorded (an EXECUTE of it is refused), but the names must
            // be free first all the same.
            proposedSQLPrepared = nil
            proposedPrepareNames = worst.uses.compactMap { if case .prepare(let name) = $0 { name } else { nil } }
            return .done(result(of: worst, bytes: bytes), worst.effects)
        }
        let analysis = made.analysis
        if let function = analysis.plan.unknownFunction, !fresh {
            knowledge = .stale
            return .done(.needsFreshContext(function: function), analysis.effects)
        }
        if let function = analysis.plan.unknownFunction, snapshotPinned {
            // Unknown even to a fresh read, which could not see past the transaction's snapshot:
            // it may have been made since, with any rights (round 18).
            return .done(.refused(AdminError("42501", "pgclone: function \(function)() is not known to this transaction's snapshot (it may have been created since the transaction began); call it in a new transaction")), analysis.effects)
        }
        if analysis.callsUserFunction, snapshotPinned, context.isMasked {
            // What the snapshot says of a known function may be old too (made SECURITY DEFINER
            // since, or a snapshot imported from long ago: round 19).
            return .done(.refused(AdminError("42501", "pgclone: functions that are not built in cannot be called by a masked role inside a REPEATABLE READ or SERIALIZABLE transaction (pgclone reads their definitions as of its snapshot); call them in a READ COMMITTED transaction")), analysis.effects)
        }
        if case .refused = analysis.plan {} else if let refusal = trackPreparedStatements(analysis.uses) {
            return .done(.refused(refusal), analysis.effects)
        }
        let result = result(of: analysis, bytes: bytes)
        var cached: CachedRewrite?
        switch analysis.plan {
        case .unchanged:
            cached = CachedRewrite(template: nil, effects: analysis.effects)
        case .edits(let edits, _):
            cached = ShapedRewrite(text: bytes, shape: shape, replacements: edits.map { ($0.range, Array($0.replacement.utf8)) })
                .map { CachedRewrite(template: $0, effects: analysis.effects) }
        case .refused:
            // Not cached: a refusal's message may quote the statement.
            cached = nil
        }
        // A statement calling a function still unknown on a fresh context is judged again next
        // time; statements that prepare or execute are judged every time (their names are tracked).
        if !cacheable || analysis.plan.unknownFunction != nil || bytes.count > Self.largestCachedStatement || !analysis.uses.isEmpty { cached = nil }
        if let cached {
            if cache.count >= Self.cacheLimit { cache.removeAll() }
            cache[shape.key] = cached
        }
        return .done(result, analysis.effects)
    }

    private func result(of analysis: MaskingRewriter.Analysis, bytes: [UInt8]) -> MaskingRewriter.Result {
        switch analysis.plan {
        case .unchanged: return .unchanged
        case .refused(let error): return .refused(error)
        case .edits(let edits, _): return .rewritten(String(decoding: MaskingRewriter.apply(edits, to: bytes), as: UTF8.self))
        }
    }

    /// Follows PREPARE / EXECUTE / DEALLOCATE: EXECUTE of a statement not prepared under the
    /// current context (before the session was masked, or before the role or the policies
    /// changed) would run an old rewrite, or none, so it is refused.
    /// Where only readable code may run, a statement may still change how the next one reads
    /// without saying so (a view or default of the role's own calling set_config): until the
    /// server is quiet and has reported its settings, the next statement is read as if they
    /// were changing (no backslash, no non-ASCII text).
    mutating func settingsMayChangeUnseen() {
        reading.uncertain = true
    }

    /// Whether `name` was prepared with SQL PREPARE under the current masking generation.
    func isCurrentSQLPrepared(_ name: String) -> Bool { sqlPrepared[ExactName(name)] == generation }

    /// Whether `name` was prepared with SQL PREPARE under an earlier masking generation.
    func isStaleSQLPrepared(_ name: String) -> Bool { sqlPrepared[ExactName(name)].map { $0 != generation } ?? false }

    /// Follows PREPARE / EXECUTE / DEALLOCATE within one text (in order, as if each ran), as a
    /// proposal: the session applies it (`commitPrepared`) only when the text goes to the
    /// server, after making sure no name it prepares can still hold an older statement (a
    /// PREPARE over a name the server holds fails and keeps the old one).
    private mutating func trackPreparedStatements(_ uses: [MaskingRewriter.Plan.PreparedStatementUse]) -> AdminError? {
        var prepared = sqlPrepared
        var names: [String] = []
        for use in uses {
            switch use {
            case .prepare(let name):
                prepared[ExactName(name)] = generation
                if !names.contains(where: { ExactName($0) == ExactName(name) }) { names.append(name) }
            case .execute(let name):
                guard prepared[ExactName(name)] == generation else {
                    return AdminError("42501", "pgclone: prepared statement \"\(name)\" was prepared before this session's masking last changed (its role or the policies); prepare it again")
                }
            case .deallocate(let name?):
                prepared[ExactName(name)] = nil
            case .deallocate(nil):
                prepared.removeAll()
            }
        }
        proposedSQLPrepared = prepared
        proposedPrepareNames = names
        return nil
    }

    /// What the statement just judged would make of the SQL-prepared names, if it goes on.
    private var proposedSQLPrepared: [ExactName: Int]?
    /// The names the statement just judged prepares with SQL PREPARE.
    private(set) var proposedPrepareNames: [String] = []

    mutating func commitPrepared() {
        if let proposed = proposedSQLPrepared { sqlPrepared = proposed }
        discardPrepared()
    }

    mutating func discardPrepared() {
        proposedSQLPrepared = nil
        proposedPrepareNames = []
    }

    /// A protocol Parse of `name` read under the current masking: SQL EXECUTE may run it too, as
    /// the server allows (asyncpg's prepare(name=) then EXECUTE was refused).
    mutating func noteProtocolPrepared(_ name: String) {
        sqlPrepared[ExactName(name)] = generation
    }

    /// The server no longer holds `name` (the proxy closed it), or holds there something EXECUTE may not run.
    mutating func forgetSQLPrepared(_ name: String) {
        sqlPrepared[ExactName(name)] = nil
    }

    // MARK: - The guard on results

    /// The refusal for a result that would carry a masked column, if any.
    mutating func violation(_ description: RowDescription) -> String? {
        guard !isSuperuser || inFlightChange,
              let context = inFlightChange ? worstCase ?? self.context : self.context, context.isMasked else { return nil }
        // A relation newer than the context could be a view over a masked table that the context
        // does not know; where the server refuses the session every sensitive column, such a view
        // could not have read one (it reads with its owner's rights, and the backstop takes
        // those from views over sensitive columns too).
        for column in description.columns where column.tableOID > context.maximumRelationOID && context.runsOnlyVisibleCode {
            knowledge = knowledge == .current ? .stale : knowledge
            return "pgclone: result column \"\(column.name)\" comes from a relation created after this session's masking context was read; run the statement again"
        }
        for column in description.columns where context.isMaskedOrigin(tableOID: column.tableOID, attribute: column.columnAttributeNumber) {
            let table = context.tables.first { $0.oid == column.tableOID }
            return "pgclone: result column \"\(column.name)\" would carry unmasked values of \(table.map { "\($0.schema).\($0.name)" } ?? "a masked table"); the statement's rows were not sent"
        }
        return nil
    }

    // MARK: - Words

    /// After these the current role may differ: SET ROLE, SET SESSION AUTHORIZATION, RESET,
    /// DISCARD, set_config('role', ...).
    static let roleWords = WordMatcher(["role", "authorization", "reset", "discard", "set_config", "pg_settings"])
    /// After these (or the role words) the next message may read differently.
    static let changeWords = WordMatcher(["role", "authorization", "reset", "discard", "set_config", "pg_settings",
                                          "client_encoding", "names", "standard_conforming_strings"])
    /// These end a transaction or roll back to a savepoint.
    static let transactionEndWords = WordMatcher(["commit", "rollback", "abort", "end", "prepare"])
    static let copyWord = WordMatcher(["copy"])
    /// The longest text parsed on the event loop (parsing a long text takes long: masked
    /// statements are parsed on parser threads, and other checks assume the worst beyond this).
    static let synchronousParseLimit = 64 << 10
}
