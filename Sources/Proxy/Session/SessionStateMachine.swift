import CloneEngine
import JSON
import Masking
import NIOCore
import PostgresWire
import SQLParser

/// One client session's protocol logic: events in, decisions and effects out, no channel
/// inside (PostgresNIO's ConnectionStateMachine is the model).
///
/// The handler scans each direction's byte stream with a `FrameScanner`; for each message
/// header it asks the machine whether to look at the message (`clientHeader`,
/// `serverHeader`), and for each message it looks at, what to do with it (`clientMessage`,
/// `serverMessage`): relay, replace, consume, or stop the client's input until the machine
/// says to resume. What must happen besides (a query of the proxy's own to the server, an
/// admin call to run, a notice to the client, closing) is queued as effects, which the
/// handler takes with `takeEffects()` and runs in order.
///
/// The machine owns the startup phase, the extended-protocol pipeline (what is in flight,
/// which ParseComplete and CloseComplete answers are the proxy's own), admin-call
/// interception and the session's masking (`MaskingState`).
struct SessionStateMachine {
    enum Phase: Equatable {
        /// Encryption negotiation and the startup packet.
        case startup
        /// Connecting to the server.
        case connecting
        /// Authentication is relayed; the client may send nothing but its answers.
        case authenticating
        /// The session is open.
        case ready
        case closed
    }

    /// Something the handler must do, in order, besides relaying.
    enum Effect {
        /// Write to the server (the proxy's own query, or what stands for an admin call).
        case sendToServer(ByteBuffer)
        /// Write to the client (notices).
        case sendToClient(ByteBuffer)
        /// Go on with the client input held by the scanner.
        case resumeClientInput
        /// Run an admin call; its outcome comes back through `adminFinished`.
        case runAdmin(AdminRun)
        /// Parse and plan a masked statement off the event loop; the outcome comes back through
        /// `analysisFinished`, and the statement is judged again.
        case analyze(AnalysisJob)
        /// The server's cancel key and the one the client gets in its place.
        case registerCancelKey(server: BackendKey, client: BackendKey)
        /// The built-in function names, read with the first context of the process.
        case storeBuiltinFunctions(Set<String>)
        /// A pass of the server backstop on the session's database would help (a stale view).
        case nudgeBackstop
        /// Send this FATAL error to the client and close.
        case closeWithError(ErrorFields, reason: String)
        /// Shut down an idle session: Terminate to the server, 57P01 to the client.
        case terminateIdle
        /// The session is open (first ReadyForQuery after authentication).
        case sessionOpened
        /// A result column would have carried a masked column's values (the rewrite missed it).
        case guardRefused(role: String)
        /// Run this console command text; the answer goes to the client, then `consoleFinished`.
        case runConsole(String)
        /// The console session passed its role check.
        case consoleOpened
    }

    /// A session on the database `pgclone`: the admin console, answered by the proxy.
    enum ConsoleMode: Equatable {
        case off
        /// Authenticated against the target; the role is being checked.
        case checking
        case ready
    }

    /// An admin call to run in async code.
    struct AdminRun {
        enum Kind {
            /// A simple Query: the result goes to the server as a Query.
            case simple(AdminStatement)
            /// A Bind of a prepared admin statement: the result is bound to the client's portal.
            case bind(FrontendMessage.Bind, AdminPrepared)
        }
        var kind: Kind
        var caller: AdminCaller?
    }

    /// A statement to analyse on a parser thread.
    struct AnalysisJob: Sendable {
        var sql: String
        var context: MaskingContext
        var worstCase: MaskingContext?
        var builtinFunctions: Set<String>?
        var generation: Int

        func run() -> MaskingState.Analysis {
            MaskingState.Analysis.make(sql, context: context, worstCase: worstCase, builtinFunctions: builtinFunctions, generation: generation)
        }
    }

    /// A query the proxy runs on the session for itself.
    struct InternalQuery {
        enum Purpose {
            case adminRoleCheck
            /// May this role use the console?
            case consoleRoleCheck
            /// The masking context, read under `policies` while the session was `status`.
            case maskingContext(PolicySet, status: BackendMessage.TransactionStatus)
            /// Putting the session back after a failed context read, then reporting `error`.
            case restore(failure: AdminError)
            /// The proxy's Close of statement names a Parse or PREPARE is about to use.
            case freeStatementNames([String])
            /// CLOSE ALL after the session's masking changed.
            case closeCursors
        }
        var purpose: Purpose
        var rows: [[String?]] = []
        var error: ErrorFields?
    }

    // MARK: - State

    private(set) var phase = Phase.startup
    /// What the session did, for statistics and metrics (the handler takes the deltas).
    var counters = SessionCounters()
    private(set) var consoleMode = ConsoleMode.off
    /// A console command is running: the client's next messages wait.
    private var consoleBusy = false
    /// An extended-protocol message came to the console: its Sync answers with an error.
    private var consoleRefusedExtended = false
    /// What the console's role check found: a superuser keeps the console whatever RELOAD does
    /// to --admin-roles; a member keeps it only while the list it was admitted under stands.
    private(set) var consoleSuperuser = false
    /// The console user's role (current_user at login): a console user that is not a
    /// superuser sees only its own role's jobs, as with the job functions.
    private(set) var consoleRole = ""
    private(set) var consoleAdmittedUnder: [String] = []
    private var startup: StartupStateMachine
    var activity = SessionActivity()
    var masking = MaskingState()
    var effects: [Effect] = []

    // What the session shares with the proxy, as last observed by the handler.
    private(set) var policies = PolicySet.empty {
        didSet { maskingInPlay = !policies.isEmpty || policiesNotReady != nil }
    }
    /// Why the policies are not known yet (nil: they are).
    private(set) var policiesNotReady: String? {
        didSet { maskingInPlay = !policies.isEmpty || policiesNotReady != nil }
    }
    /// Whether the session's statements must be read at all: policies in force (or not known
    /// yet). Stored, not computed: a computed property of this large struct, called from its
    /// mutating methods, copied the whole machine at each call (seen in perf, per message).
    private(set) var maskingInPlay = false
    private(set) var builtinFunctions: Set<String>?
    /// Who may call the admin API and use the console (RELOAD may change it).
    var adminRoles: [String]
    let maximumExaminedLength: Int

    /// The proxy's own query in flight, if any.
    private(set) var internalQuery: InternalQuery?
    /// A masked statement is being analysed off the event loop: client input waits.
    private(set) var analysisRunning = false
    /// Client input waits until authentication is over.
    private var heldUntilReady = false
    /// A query of the proxy's own waits for the server to be quiet.
    var adminWaitingForQuiet = false
    private(set) var quiescing = false
    private(set) var clientSentTerminate = false
    /// The server sent a FATAL (or PANIC) error and is closing the session.
    private(set) var serverEndedSession = false
    /// The server offered SCRAM-SHA-256-PLUS and the proxy withheld it.
    private var withheldChannelBinding = false
    /// The next ErrorResponse stands for a refusal or admin error: drop its PL/pgSQL context.
    var stripNextErrorContext = false

    // Admin API state.
    var pendingAdmin: PendingAdmin?
    var adminRunning = false
    /// Prepared statements (by name) whose text is an admin call; the server holds a
    /// same-shaped placeholder under the same name.
    var adminPrepared: [ExactName: AdminPrepared] = [:]
    /// The ParseComplete and CloseComplete answers due, the client's and the proxy's own (to
    /// swallow), in order.
    var parseAnswers = OwnAnswers()
    var closeAnswers = OwnAnswers()
    /// The masking epoch each protocol portal was bound in (portals end with their transaction).
    var portalEpochs: [ExactName: Int] = [:]
    /// A Query or Parse went to the server unread under masking (no policies yet, an unmasked
    /// role...): which statement names it prepared is unknown.
    var unseenEra = false {
        // What the proxy did not read may have prepared any name: none is known free, or known
        // to hold a statement of the present masking, any more (round 40: a name freed at a
        // Close, filled by an unread SQL PREPARE, was taken for free and its statement ran).
        didSet {
            if unseenEra {
                statementNamesFreed.removeAll()
                statementsClosedWhileCurrent.removeAll()
            }
        }
    }
    /// Statement names the session's Parses and SQL PREPAREs used (the server may hold them).
    var statementNamesUsed: Set<ExactName> = []
    /// Names the proxy's own Close has freed on the server, for the Parse or PREPARE that waited.
    var statementNamesFreed: Set<ExactName> = []
    /// Names whose freeing failed: the statement that needs them is refused.
    var statementNamesNotFreed: Set<ExactName> = []
    /// Names the client closed while they held a statement prepared under the masking of that
    /// moment (with nothing that changes settings when it runs), by that masking's generation.
    /// A Parse of the name under the same masking needs no Close of the proxy's: whether the
    /// server ran the client's Close and the Parse, or an error skipped them, the name holds
    /// a statement prepared under this masking, or nothing (npgsql's and pgx's statement
    /// caches close and prepare a name in one batch). Nothing here depends on counting the
    /// server's answers (counting them let stale statements run: rounds 32 to 39).
    var statementsClosedWhileCurrent: [ExactName: Int] = [:]
    var internalStatementCounter = 0

    /// Statements that may not run while the session is masked: prepared while it was not
    /// masked (with policies in force), or under an older masking context.
    var statementsRefusedWhileMasked: Set<ExactName> = []
    /// Statements prepared (protocol level) while masked, with the masking generation.
    var statementsPreparedMasked: [ExactName: Int] = [:]
    /// What running a prepared statement changes in the session (SET, set_config...), by name.
    var statementEffects: [ExactName: MaskingRewriter.Effects] = [:]

    init(tlsAvailable: Bool, adminRoles: [String], maximumExaminedLength: Int) {
        self.startup = StartupStateMachine(tlsAvailable: tlsAvailable)
        self.adminRoles = adminRoles
        self.maximumExaminedLength = maximumExaminedLength
    }

    /// The effects queued since the last call, in order.
    mutating func takeEffects() -> [Effect] {
        defer { effects.removeAll(keepingCapacity: true) }
        return effects
    }

    /// What the proxy shares, as it stands now (read by the handler once per read burst).
    mutating func observe(policies: PolicySet, notReady: String?, builtinFunctions: Set<String>?) {
        if policies.version != self.policies.version, activity.transactionStatus != .idle || !activity.isQuiet, !masking.isSuperuser {
            // Portals opened before may hold rows read unmasked: they are not read on. (In an
            // extended-protocol batch left open with Flush too: its implicit transaction keeps
            // them, and the last ReadyForQuery said idle; round 18.)
            guardPortals()
        }
        self.policies = policies
        policiesNotReady = notReady
        if self.builtinFunctions == nil { self.builtinFunctions = builtinFunctions }
    }

    /// Set while the session's masking changed inside the current transaction: the portals
    /// bound since. A portal opened before (suspended by an Execute with a row limit) would go
    /// on returning rows read before the change, which no RowDescription announces again.
    var portalsBoundSinceMaskingChanged: Set<ExactName>?

    mutating func guardPortals() {
        if portalsBoundSinceMaskingChanged == nil { portalsBoundSinceMaskingChanged = [] }
    }

    var tracksParseAnswers: Bool { !adminPrepared.isEmpty || !statementsRefusedWhileMasked.isEmpty }
    var isMaskedSession: Bool { masking.isMasked }

    /// Known not to be masked under the current policies (statements pass unread).
    var isKnownUnmasked: Bool {
        if masking.isSuperuser { return true }
        guard masking.knowledge == .current, let version = masking.contextPolicyVersion else { return false }
        return !masking.contextIsMasked && version == policies.version && !masking.inFlightChange
    }

    // MARK: - Startup

    mutating func startupBytes(_ buffer: ByteBuffer) -> StartupStateMachine.Action {
        let action = startup.bytesReceived(buffer)
        if case .connectBackend = action { phase = .connecting }
        return action
    }

    mutating func backendConnected() {
        guard phase == .connecting else { return }
        phase = .authenticating
    }

    mutating func closed() {
        phase = .closed
    }

    /// This session is the admin console (the client asked for the database `pgclone`).
    mutating func enterConsole() {
        consoleMode = .checking
    }

    /// A console command's answer has been written.
    mutating func consoleFinished() {
        consoleBusy = false
        effects.append(.resumeClientInput)
    }

    /// The console answers simple queries itself; extended-protocol messages get one error at
    /// their Sync, as PgBouncer's console does.
    private mutating func consoleMessage(_ frame: MessageFrame) throws(WireError) -> FrameScanner.Verdict {
        guard consoleMode == .ready, !consoleBusy else { return .pauseBefore }
        switch frame.type {
        case FrontendMessage.ID.query.rawValue:
            var payload = frame.payload
            let text = try payload.readCString()
            consoleBusy = true
            effects.append(.runConsole(text))
            return .consumeAndPause
        case FrontendMessage.ID.sync.rawValue, FrontendMessage.ID.functionCall.rawValue:
            var answer = ByteBuffer()
            if consoleRefusedExtended || frame.type == FrontendMessage.ID.functionCall.rawValue {
                BackendMessage.errorResponse(Self.consoleExtendedError).encode(into: &answer)
            }
            consoleRefusedExtended = false
            BackendMessage.readyForQuery(.idle).encode(into: &answer)
            effects.append(.sendToClient(answer))
            return .consume
        case FrontendMessage.ID.flush.rawValue:
            return .consume
        default:
            consoleRefusedExtended = true
            return .consume
        }
    }

    static let consoleExtendedError = ErrorFields(severity: .error, sqlState: "0A000",
                                                  message: "the pgclone console takes simple queries only (as PgBouncer's console does)",
                                                  hint: "Send console commands as plain queries, e.g. psql -c 'SHOW CLIENTS'.")

    /// Graceful shutdown: close now, after the session's first ReadyForQuery, or once idle.
    mutating func quiesce() -> Effect? {
        quiescing = true
        switch phase {
        case .startup, .connecting:
            return .closeWithError(ErrorFields(severity: .fatal, sqlState: "57P01", message: "terminating connection due to administrator command"),
                                   reason: "proxy shutting down")
        case .ready where activity.isIdle && internalQuery == nil && !adminRunning && !analysisRunning:
            return .terminateIdle
        case .authenticating, .ready, .closed:
            return nil
        }
    }

    // MARK: - Client messages

    private static func isStatement(_ type: UInt8) -> Bool {
        type == FrontendMessage.ID.query.rawValue || type == FrontendMessage.ID.parse.rawValue || type == FrontendMessage.ID.functionCall.rawValue
    }


    mutating func clientHeader(type: UInt8, length: Int) throws(WireError) -> FrameScanner.Disposition {
        guard let id = FrontendMessage.ID(rawValue: type) else {
            throw WireError(.unknownMessageType(type))
        }
        // Messages without contents have none: a Flush with a byte made the server fail and skip
        // to the next Sync, a simple query after it too, unseen by the proxy's counts (round 39).
        if length != 4 {
            switch id {
            case .flush, .sync, .terminate, .copyDone: throw WireError(.invalidLength(length), messageType: type)
            default: break
            }
        }
        if type == FrontendMessage.ID.terminate.rawValue { clientSentTerminate = true }
        if consoleMode != .off && phase == .ready {
            return type == FrontendMessage.ID.terminate.rawValue ? .pass : .examine
        }
        if phase == .authenticating {
            // Only the answers to the server's authentication requests go now: a statement
            // pipelined behind them would run before the proxy knows how to read it.
            if type == FrontendMessage.ID.authenticationResponse.rawValue || type == FrontendMessage.ID.terminate.rawValue { return .pass }
            return .examine
        }
        guard phase == .ready else { return .pass }
        let mustRead = mustExamine(type)
        if length > maximumExaminedLength {
            // Too long to hold and read. A statement of a session no policy masks goes unread (it
            // can read what it sends anyway); anything else the proxy must read is refused:
            // relaying it unread could hand a masked role real values (a Bind whose statement
            // changes settings, a portal opened before the masking changed...).
            if Self.isStatement(type) ? (maskingInPlay && !isKnownUnmasked) : mustRead {
                throw WireError(.invalidField("\(Self.isStatement(type) ? "statement" : "message"): longer than the \(maximumExaminedLength) bytes pgclone reads while masking policies are in force"), messageType: type)
            }
            activity.clientSent(type)
            return .pass
        }
        if mustRead { return .examine }
        activity.clientSent(type)
        return .pass
    }

    /// Whether a client message of `type` must be read before it goes on.
    private func mustExamine(_ type: UInt8) -> Bool {
        switch type {
        case FrontendMessage.ID.query.rawValue, FrontendMessage.ID.parse.rawValue:
            return true
        case FrontendMessage.ID.execute.rawValue:
            // (A superuser's too: ALTER ROLE ... NOSUPERUSER reports nothing, so its standing is
            // read again when old, at a Bind or an Execute as at a statement.)
            return portalsBoundSinceMaskingChanged != nil || maskingInPlay
        case FrontendMessage.ID.bind.rawValue:
            // Every Bind of a session that may be masked: the statement it names may have been
            // prepared unread or under other masking, by a Parse or by SQL PREPARE.
            return !adminPrepared.isEmpty || portalsBoundSinceMaskingChanged != nil || maskingInPlay
        case FrontendMessage.ID.functionCall.rawValue:
            return maskingInPlay && !isKnownUnmasked
        case FrontendMessage.ID.close.rawValue:
            // (Counted whenever the proxy may add Closes of its own: their answers are told
            // apart from the client's by the count.)
            return maskingInPlay || tracksParseAnswers || !statementsPreparedMasked.isEmpty || !statementEffects.isEmpty
        default:
            return false
        }
    }

    mutating func clientMessage(_ frame: MessageFrame, now: ContinuousClock.Instant) throws(WireError) -> FrameScanner.Verdict {
        if phase == .authenticating {
            heldUntilReady = true
            return .pauseBefore
        }
        if consoleMode != .off { return try consoleMessage(frame) }
        switch frame.type {
        case FrontendMessage.ID.query.rawValue:
            // (An SQL PREPARE or DEALLOCATE may reuse the name: what the Close left is not known.)
            if !statementsClosedWhileCurrent.isEmpty { statementsClosedWhileCurrent.removeAll() }
            return try query(frame, now: now)
        case FrontendMessage.ID.parse.rawValue:
            return try parse(frame, now: now)
        case FrontendMessage.ID.bind.rawValue:
            return try bind(frame, now: now)
        case FrontendMessage.ID.execute.rawValue:
            if internalQuery != nil || adminRunning || analysisRunning { return .pauseBefore }
            guard case .execute(let portal, _) = try FrontendMessage.decode(frame) else {
                activity.clientSent(frame.type)
                return .relay
            }
            // An Execute on its own (a cursor's name) when the masking may have changed: the
            // context is read first (a change closes what was opened under the old one).
            if maskingInPlay, masking.needsFreshRead(policies: policies, now: now), canRead(beforeTransactionControl: false) {
                startContextRead()
                return .pauseBefore
            }
            // A portal bound while the session was not masked, read on in a batch kept open past
            // the time a standing is trusted without a read (round 19: real rows at 65 s after a
            // revoked exemption): the session ends.
            if maskingInPlay, !masking.isMasked, masking.isUnconfirmed(now: now), !canRead(beforeTransactionControl: false) {
                effects.append(.closeWithError(ErrorFields(severity: .fatal, sqlState: "57P01",
                                                           message: "pgclone: this session's masking has not been read for \(MaskingState.unreadableLimit.components.seconds) s and cannot be while its batch is open; reconnect"),
                                               reason: "masking not read for too long in an open batch"))
                return .consume
            }
            if maskingInPlay, !masking.isSuperuser {
                // A session that may be masked reads only portals its own Binds opened under
                // what it may read now (not a cursor declared before, not a Bind the server
                // refused over an older portal of that name).
                if !isKnownUnmasked, portalEpochs[ExactName(portal)] != masking.epoch {
                    effects.append(.closeWithError(ErrorFields(severity: .fatal, sqlState: "57P01",
                                                               message: "pgclone: portal \"\(portal)\" was not opened under this session's current masking; it cannot be read, reconnect"),
                                                   reason: "a portal not opened under the current masking"))
                    return .consume
                }
            }
            if let bound = portalsBoundSinceMaskingChanged, !bound.contains(ExactName(portal)) {
                effects.append(.closeWithError(ErrorFields(severity: .fatal, sqlState: "57P01",
                                                           message: "pgclone: this session's masking changed while portal \"\(portal)\" was open; it cannot be read on, reconnect"),
                                               reason: "masking changed while a portal was open"))
                return .consume
            }
            activity.clientSent(frame.type)
            return .relay
        case FrontendMessage.ID.functionCall.rawValue:
            return functionCall(frame, now: now)
        case FrontendMessage.ID.close.rawValue:
            if internalQuery != nil || adminRunning || analysisRunning { return .pauseBefore }
            // A Close opening a batch when the masking may have changed (a reload): the context is
            // read first, as for a Bind (after it the session is in a batch, and a statement
            // prepared under the old policies could only be refused by ending the session).
            if maskingInPlay, masking.needsFreshRead(policies: policies, now: now), canRead(beforeTransactionControl: false) {
                startContextRead()
                return .pauseBefore
            }
            if case .close(let target) = try FrontendMessage.decode(frame) {
                // A name that may hold a statement of another masking, closed where the session
                // is between requests: the proxy frees it first (its own Close and Sync), so that
                // the client's Parse of it after this Close finds it free whatever the batch does
                // (statement caches replacing a statement after a reload).
                if case .statement(let name) = target, maskingInPlay, !masking.isSuperuser,
                   mayHoldOlderStatement(name, current: statementsPreparedMasked[ExactName(name)] == masking.generation),
                   canRead(beforeTransactionControl: false) {
                    return freeNames([name], frame: frame)
                }
                closeAnswers.client(batch: activity.sentRequests)
                if case .statement(let name) = target {
                    let exact = ExactName(name)
                    let current = !name.isEmpty && maskingInPlay && statementsPreparedMasked[exact] == masking.generation && statementEffects[exact] == nil
                        && adminPrepared[exact] == nil && !statementsRefusedWhileMasked.contains(exact)
                    statementsClosedWhileCurrent[exact] = current ? masking.generation : nil
                    adminPrepared[ExactName(name)] = nil
                    masking.forgetSQLPrepared(name)
                    statementsPreparedMasked[ExactName(name)] = nil
                    // (Else every later Bind would be examined for a statement that is gone.)
                    statementEffects[ExactName(name)] = nil
                }
            }
            activity.clientSent(frame.type)
            return .relay
        default:
            activity.clientSent(frame.type)
            return .relay
        }
    }

    /// Whether the proxy may run a query of its own on the session now: nothing in flight, not
    /// in a failed transaction, not in front of a statement that ends one.
    /// (Mutating only so that calling it does not copy the machine: see `maskingInPlay`.)
    private mutating func canRead(beforeTransactionControl: Bool) -> Bool {
        activity.isQuiet && internalQuery == nil && !adminRunning && !analysisRunning && pendingAdmin == nil
            && activity.transactionStatus != .failed && !beforeTransactionControl
    }

    private mutating func query(_ frame: MessageFrame, now: ContinuousClock.Instant) throws(WireError) -> FrameScanner.Verdict {
        if internalQuery != nil || adminRunning || analysisRunning { return .pauseBefore }
        // The text without its terminating NUL, read in place (no copy on the unmasked path).
        let bytes = frame.payload.readableBytesView.dropLast()
        let control = maskingInPlay && TransactionControl.only(bytes)
        if control, maskingInPlay {
            // ROLLBACK, COMMIT, SAVEPOINT...: they read nothing, and a failed transaction must be
            // able to end whatever the proxy knows.
            masking.note(.transactionEnd)
            activity.clientSent(frame.type)
            return .relay
        }
        // Admin calls are short; a long text is never parsed on the event loop to look for one.
        let mentionsAdmin = bytes.count <= MaskingState.synchronousParseLimit && AdminStatement.mightReferenceAdminAPI(bytes)
        switch masking.treatment(policies: policies, notReady: policiesNotReady, canRead: canRead(beforeTransactionControl: control),
                                 isCopy: MaskingState.copyWord.matches(bytes), now: now) {
        case .refuse(let error):
            return refuse(frame, error)
        case .readFirst:
            startContextRead()
            return .pauseBefore
        case .relay:
            if mentionsAdmin, let verdict = adminQuery(String(decoding: bytes, as: UTF8.self), frame: frame) { return verdict }
            if maskingInPlay && !masking.isSuperuser {
                if MaskingState.changesRoleBeforeLast(bytes) {
                    return refuse(frame, AdminError("0A000", "pgclone: while masking policies are in force, a change of role or of role memberships must be sent as a query of its own",
                                                    hint: "Send SET ROLE (or RESET, DISCARD, set_config('role', ...), CREATE/ALTER/DROP ROLE, GRANT/REVOKE of a role) separately, then the statements that follow it."))
                }
                masking.note(MaskingState.relayedEffects(bytes, mayRevert: masking.mayRevert))
            } else if maskingInPlay, MaskingState.changesRoleBeforeLast(bytes, currentUserOnly: true) {
                return refuse(frame, AdminError("0A000", "pgclone: while masking policies are in force, a role change must be sent as a query of its own",
                                                hint: "Send SET ROLE (or RESET, DISCARD, set_config('role', ...)) separately, then the statements that follow it."))
            }
            unseenEra = true
            activity.clientSent(frame.type)
            return .relay
        case .mask(let context):
            counters.maskedStatements &+= 1
            let text: String
            switch StatementText.decode(Array(bytes), settings: masking.reading) {
            case .success(let decoded): text = decoded
            case .failure where !context.runsOnlyVisibleCode:
                // Unreadable here, but the server refuses this session every sensitive column:
                // the text goes as written, and anything may have changed after it.
                masking.note(.all)
                unseenEra = true
                activity.clientSent(frame.type)
                return .relay
            case .failure(let error): return refuse(frame, error)
            }
            if mentionsAdmin, let verdict = adminQuery(text, frame: frame) { return verdict }
            guard case .done(let result, let changes) = masking.rewrite(text, under: context, builtinFunctions: builtinFunctions, deferred: true) else {
                return analyze(text, under: context)
            }
            // The names it prepares must hold nothing older first.
            let refused: Bool
            if case .refused = result { refused = true } else { refused = false }
            let preparing = masking.proposedPrepareNames.filter { mayHoldOlderStatement($0, current: masking.isCurrentSQLPrepared($0)) }
            if refused || !preparing.isEmpty {
                masking.discardPrepared()
                if !refused { return freeNames(preparing, frame: frame) }
            } else {
                for name in masking.proposedPrepareNames {
                    statementNamesUsed.insert(ExactName(name))
                    statementNamesFreed.remove(ExactName(name))
                }
                masking.commitPrepared()
            }
            switch result {
            case .unchanged:
                masking.note(changes)
                if context.runsOnlyVisibleCode { masking.settingsMayChangeUnseen() }
                activity.clientSent(frame.type)
                return .relay
            case .rewritten(let rewritten):
                counters.rewrites &+= 1
                guard let encoded = StatementText.encode(rewritten, settings: masking.reading) else {
                    return refuse(frame, AdminError("42501", "pgclone: the masked statement has characters that client_encoding \(masking.reading.clientEncoding) cannot carry"))
                }
                masking.note(changes)
                if context.runsOnlyVisibleCode { masking.settingsMayChangeUnseen() }
                activity.clientSent(frame.type)
                return .replace(Self.queryMessage(bytes: encoded))
            case .refused(let error):
                if error.message.contains("is being brought up to date") { effects.append(.nudgeBackstop) }
                return refuse(frame, error)
            case .needsFreshContext(let function):
                return freshContext(frame, function: function)
            }
        }
    }

    /// Parsing a statement can take long (a big IN list, a deep expression): it happens on a
    /// parser thread while the client's input waits, never on the event loop.
    private mutating func analyze(_ sql: String, under context: MaskingContext) -> FrameScanner.Verdict {
        analysisRunning = true
        effects.append(.analyze(AnalysisJob(sql: sql, context: context, worstCase: masking.worstCase,
                                            builtinFunctions: builtinFunctions, generation: masking.generation)))
        return .pauseBefore
    }

    /// The analysis of `analyze` is ready: the statement is judged again with it.
    mutating func analysisFinished(_ analysis: MaskingState.Analysis) {
        analysisRunning = false
        masking.analyzed(analysis)
        effects.append(.resumeClientInput)
    }

    /// A statement naming a function the context does not know (created since it was read, and
    /// perhaps reading a masked table) waits for a fresh context, then is judged again.
    private mutating func freshContext(_ frame: MessageFrame, function: String) -> FrameScanner.Verdict {
        guard canRead(beforeTransactionControl: false) else {
            return refuse(frame, Self.unknownFunctionError(function))
        }
        startContextRead()
        return .pauseBefore
    }

    static func unknownFunctionError(_ function: String) -> AdminError {
        AdminError("42501", "pgclone: function \(function)() is newer than this session's masking context; run the statement again")
    }

    private mutating func parse(_ frame: MessageFrame, now: ContinuousClock.Instant) throws(WireError) -> FrameScanner.Verdict {
        // Hot path (extended protocol without admin calls or policies): no decoding at all.
        if !maskingInPlay, adminPrepared.isEmpty, !AdminStatement.mightReferenceAdminAPI(frame.payload.readableBytesView) {
            unseenEra = true
            activity.clientSent(frame.type)
            return .relay
        }
        if internalQuery != nil || adminRunning || analysisRunning { return .pauseBefore }
        guard case .parse(let parse) = try FrontendMessage.decode(frame) else { return .relay }
        let bytes = Self.rawQuery(of: frame) ?? Array(parse.query.utf8)
        let control = maskingInPlay && TransactionControl.only(bytes)
        let treatment = control ? .relay : masking.treatment(
            policies: policies, notReady: policiesNotReady, canRead: canRead(beforeTransactionControl: false),
            isCopy: MaskingState.copyWord.matches(bytes), now: now)
        switch treatment {
        case .refuse(let error):
            adminPrepared[ExactName(parse.statementName)] = nil
            return refuse(frame, error)
        case .readFirst:
            startContextRead()
            return .pauseBefore
        case .relay:
            if bytes.count <= MaskingState.synchronousParseLimit, AdminStatement.mightReferenceAdminAPI(bytes),
               let verdict = adminParse(parse, frame: frame) { return verdict }
            var noted: MaskingRewriter.Effects = []
            if maskingInPlay && !masking.isSuperuser {
                noted = control ? .transactionEnd : MaskingState.relayedEffects(bytes, mayRevert: masking.mayRevert)
                masking.note(noted)
            }
            return relayParse(parse, frame: frame, effects: noted)
        case .mask(let context):
            counters.maskedStatements &+= 1
            if let refusal = nameRefusal(parse.statementName) { return refuse(frame, refusal) }
            let text: String
            switch StatementText.decode(bytes, settings: masking.reading) {
            case .success(let decoded): text = decoded
            case .failure where !context.runsOnlyVisibleCode:
                // As for a simple Query: the server's privileges decide.
                masking.note(.all)
                unseenEra = true
                return relayParse(parse, frame: frame, effects: .all)
            case .failure(let error):
                adminPrepared[ExactName(parse.statementName)] = nil
                return refuse(frame, error)
            }
            if bytes.count <= MaskingState.synchronousParseLimit, AdminStatement.mightReferenceAdminAPI(bytes),
               let verdict = adminParse(parse, frame: frame) { return verdict }
            if context.runsOnlyVisibleCode, let type = parse.parameterTypes.first(where: { $0 >= 16384 }) {
                // A parameter of a type of a role's own runs its input function and domain checks.
                adminPrepared[ExactName(parse.statementName)] = nil
                return refuse(frame, AdminError("42501", "pgclone: a parameter of type \(type), which is not built in, is not allowed: its functions and checks run code pgclone cannot read, and \(MaskingRewriter.whyOnlyVisibleCode(context))"))
            }
            guard case .done(let result, let changes) = masking.rewrite(text, under: context, builtinFunctions: builtinFunctions, deferred: true) else {
                return analyze(text, under: context)
            }
            if !masking.proposedPrepareNames.isEmpty {
                // It would run at each Execute, whenever that is: not followed.
                masking.discardPrepared()
                return refuse(frame, AdminError("0A000", "pgclone: PREPARE through the extended protocol is not allowed for a role masked by a policy; send it as a simple query"))
            }
            if case .refused = result {
                masking.discardPrepared()
            } else {
                // (A DEALLOCATE it holds forgets the name; a PREPARE was refused above.)
                masking.commitPrepared()
            }
            // The name must hold nothing older first.
            if case .refused = result {} else if mayHoldOlderStatement(parse.statementName, current: statementsPreparedMasked[ExactName(parse.statementName)] == masking.generation,
                                                                        protocolParse: true) {
                return freeNames([parse.statementName], frame: frame)
            }
            switch result {
            case .unchanged:
                // The statement was read masked (under the session's context or the worst case,
                // whatever its own effects make of the session); it is recorded under the
                // generation its own change starts.
                masking.note(changes)
                return relayParse(parse, frame: frame, effects: changes, readMasked: true)
            case .rewritten(let rewritten):
                counters.rewrites &+= 1
                guard let encoded = StatementText.encode(rewritten, settings: masking.reading) else {
                    return refuse(frame, AdminError("42501", "pgclone: the masked statement has characters that client_encoding \(masking.reading.clientEncoding) cannot carry"))
                }
                masking.note(changes)
                return relayParse(parse, frame: frame, effects: changes, readMasked: true,
                                  outgoing: Self.parseMessage(name: parse.statementName, query: encoded, parameterTypes: parse.parameterTypes))
            case .refused(let error):
                adminPrepared[ExactName(parse.statementName)] = nil
                if error.message.contains("is being brought up to date") { effects.append(.nudgeBackstop) }
                return refuse(frame, error)
            case .needsFreshContext(let function):
                return freshContext(frame, function: function)
            }
        }
    }

    /// Bookkeeping of a Parse sent on as the client wrote it (or rewritten).
    private mutating func relayParse(_ parse: FrontendMessage.Parse, frame: MessageFrame, effects noted: MaskingRewriter.Effects = [],
                                     readMasked: Bool? = nil, outgoing: ByteBuffer? = nil) -> FrameScanner.Verdict {
        // What the statement changes happens each time it runs: noted again at every Bind.
        statementEffects[ExactName(parse.statementName)] = noted.isEmpty ? nil : noted
        let isMaskedSession = readMasked ?? self.isMaskedSession
        let name = parse.statementName
        adminPrepared.removeValue(forKey: ExactName(name))
        parseAnswers.client(batch: activity.sentRequests)
        statementsClosedWhileCurrent[ExactName(name)] = nil
        if !name.isEmpty {
            statementNamesUsed.insert(ExactName(name))
            statementNamesFreed.remove(ExactName(name))
        }
        if maskingInPlay && !isMaskedSession {
            // Prepared unread: binding it once the session is masked would run it unrewritten.
            unseenEra = true
            statementsRefusedWhileMasked.insert(ExactName(name))
            statementsPreparedMasked[ExactName(name)] = nil
        } else {
            statementsRefusedWhileMasked.remove(ExactName(name))
            if isMaskedSession { statementsPreparedMasked[ExactName(name)] = masking.generation }
        }
        // SQL EXECUTE may run it too, unless running it changes something (SET, set_config...):
        // a Bind notes that each time, an EXECUTE would not.
        if !name.isEmpty {
            if maskingInPlay, isMaskedSession, noted.isEmpty { masking.noteProtocolPrepared(name) } else { masking.forgetSQLPrepared(name) }
        }
        activity.clientSent(frame.type)
        return outgoing.map { .replace($0) } ?? .relay
    }

    /// Statement and portal names reach the proxy decoded as UTF-8; the server reads them in
    /// the client's encoding. Under another encoding two non-ASCII names could look alike to
    /// the proxy and not to the server: a masked session must use ASCII names there.
    func nameRefusal(_ name: String) -> AdminError? {
        guard name.utf8.contains(where: { $0 >= 0x80 }), masking.reading.clientEncoding.uppercased() != "UTF8" else { return nil }
        return AdminError("0A000", "pgclone: prepared statement and portal names with non-ASCII characters are not allowed for a role masked by a policy while client_encoding is \(masking.reading.clientEncoding)",
                          hint: "Use ASCII names, or client_encoding UTF8.")
    }

    /// Whether preparing `name` (a protocol Parse or an SQL PREPARE) could leave an older
    /// statement under it: the server refuses a name it still holds (42P05) and keeps the old
    /// statement, as it does when the PREPARE fails or a pipeline skips it. `current`: the name
    /// holds a statement prepared under the present masking, or nothing.
    /// `protocolParse`: a Parse, for which a name the client closed while it held a statement of
    /// this masking counts as current (an SQL PREPARE is judged as ever).
    func mayHoldOlderStatement(_ name: String, current: Bool, protocolParse: Bool = false) -> Bool {
        if name.isEmpty || current || statementNamesFreed.contains(ExactName(name)) { return false }
        if protocolParse, let generation = statementsClosedWhileCurrent[ExactName(name)], generation == masking.generation { return false }
        return unseenEra || statementNamesUsed.contains(ExactName(name))
    }

    /// Frees `names` on the server first (the proxy's own Close of each, then Sync; answers
    /// swallowed), then the statement that prepares them is judged again. A session that is
    /// not between requests (a pipeline in flight) cannot be given that exchange: the
    /// statement is refused.
    private mutating func freeNames(_ names: [String], frame: MessageFrame) -> FrameScanner.Verdict {
        guard canRead(beforeTransactionControl: false), statementNamesNotFreed.isDisjoint(with: names.map { ExactName($0) }) else {
            return refuse(frame, AdminError("55000", "pgclone: prepared statement \"\(names[0])\" may still hold a statement prepared before this session's masking changed; prepare it after a Sync, on its own (or under another name)"))
        }
        var buffer = ByteBuffer()
        for name in names { FrontendMessage.close(.statement(name)).encode(into: &buffer) }
        FrontendMessage.sync.encode(into: &buffer)
        internalQuery = InternalQuery(purpose: .freeStatementNames(names))
        effects.append(.sendToServer(buffer))
        return .pauseBefore
    }

    private mutating func bind(_ frame: MessageFrame, now: ContinuousClock.Instant) throws(WireError) -> FrameScanner.Verdict {
        if internalQuery != nil || adminRunning || analysisRunning { return .pauseBefore }
        guard case .bind(let bind) = try FrontendMessage.decode(frame) else {
            activity.clientSent(frame.type)
            return .relay
        }
        // A Bind opening a batch when the session's masking may have changed (a membership taken
        // away makes an unmasked session masked without any reload): the context is read first.
        if maskingInPlay, masking.needsFreshRead(policies: policies, now: now), canRead(beforeTransactionControl: false) {
            startContextRead()
            return .pauseBefore
        }
        portalsBoundSinceMaskingChanged?.insert(ExactName(bind.portalName))
        // Not read for long and not readable now (a batch left open): as if masked, so that a
        // statement prepared unread is refused.
        let unconfirmed = maskingInPlay && masking.isUnconfirmed(now: now) && !canRead(beforeTransactionControl: false)
        let maskedNow = isMaskedSession || (masking.inFlightChange && !masking.isSuperuser) || unconfirmed
        if maskedNow, bind.statementName.utf8.contains(where: { $0 >= 0x80 }) || bind.portalName.utf8.contains(where: { $0 >= 0x80 }),
           let refusal = nameRefusal(bind.statementName) ?? nameRefusal(bind.portalName) {
            activity.clientSent(frame.type)
            stripNextErrorContext = true
            return .replace(internalStatement(AdminSQL.raise(refusal), portal: bind.portalName, resultFormats: [], bindSent: false))
        }
        // An admin statement's Bind runs the call (its result is masked like any statement's);
        // a masked session may bind that name no other way (it holds the placeholder).
        if !adminPrepared.isEmpty, let prepared = adminPrepared[ExactName(bind.statementName)] {
            if maskingInPlay, !masking.isSuperuser { portalEpochs[ExactName(bind.portalName)] = masking.epoch }
            pendingAdmin = .bind(bind, prepared)
            startPendingAdmin()
            return .consumeAndPause
        }
        var preparedEarlier = false
        if !statementsPreparedMasked.isEmpty, let generation = statementsPreparedMasked[ExactName(bind.statementName)] {
            preparedEarlier = generation != masking.generation
        }
        if maskedNow, statementsRefusedWhileMasked.contains(ExactName(bind.statementName)) || preparedEarlier {
            // Bind a statement that fails in order instead: the client sees the error at Execute.
            let error = preparedEarlier
                ? AdminError("42501", "pgclone: prepared statement \"\(bind.statementName)\" was prepared before this session's role, search_path or policies changed; prepare it again")
                : AdminError("42501", "pgclone: prepared statement \"\(bind.statementName)\" was prepared before role \"\(masking.context?.role ?? "")\" was masked by the current policies; prepare it again")
            activity.clientSent(frame.type)
            stripNextErrorContext = true
            return .replace(internalStatement(AdminSQL.raise(error), portal: bind.portalName, resultFormats: [], bindSent: false))
        }
        // (A protocol Parse of a name an SQL PREPARE holds fails on the server: the Bind still
        // reaches the SQL-prepared statement.)
        if maskedNow, !(statementsPreparedMasked[ExactName(bind.statementName)] != nil || statementsRefusedWhileMasked.contains(ExactName(bind.statementName)))
            || masking.isStaleSQLPrepared(bind.statementName), !masking.isCurrentSQLPrepared(bind.statementName) {
            // Not a Parse this session sent while the proxy watched: an SQL PREPARE made before
            // the session's masking last changed (or never read), which would run unrewritten.
            let error = AdminError("42501", "pgclone: prepared statement \"\(bind.statementName)\" was prepared before this session's masking last changed (its role, search_path or the policies); prepare it again")
            activity.clientSent(frame.type)
            stripNextErrorContext = true
            return .replace(internalStatement(AdminSQL.raise(error), portal: bind.portalName, resultFormats: [], bindSent: false))
        }
        // A statement prepared under an older context (another role, other policies) is judged
        // on a fresh one when the session is quiet (a driver that only binds and executes).
        if isMaskedSession, masking.knowledge != .current || masking.contextPolicyVersion != policies.version,
           canRead(beforeTransactionControl: false) {
            startContextRead()
            return .pauseBefore
        }
        if isMaskedSession, statementsPreparedMasked[ExactName(bind.statementName)] != nil, masking.contextPolicyVersion != policies.version {
            // The policies changed in the middle of an extended-protocol batch: the statement
            // carries the old rewrite and the context cannot be read now. Fail closed.
            effects.append(.closeWithError(ErrorFields(severity: .fatal, sqlState: "57P01",
                                                       message: "pgclone: the masking policies changed while prepared statements were in use; reconnect"),
                                           reason: "masking policies changed during an extended-protocol batch"))
            return .consume
        }
        // What running the statement changes (SET, set_config...) happens now, at each run.
        if maskingInPlay, !masking.isSuperuser, !statementEffects.isEmpty, let changes = statementEffects[ExactName(bind.statementName)] {
            masking.note(changes)
        }
        if isMaskedSession, masking.context?.runsOnlyVisibleCode == true { masking.settingsMayChangeUnseen() }
        activity.clientSent(frame.type)
        guard maskingInPlay, !masking.isSuperuser else { return .relay }
        let reused = portalEpochs.updateValue(masking.epoch, forKey: ExactName(bind.portalName)) != nil
        // Only where an older portal of that name could still exist (bound before in this
        // transaction, or statements the proxy did not read): a Close answer the proxy swallows
        // must not cross a Sync of a pipelined client (its bookkeeping ends with each Sync).
        guard !bind.portalName.isEmpty, reused || unseenEra else { return .relay }
        // A named portal that still exists makes the Bind fail and stays: the proxy's own Close
        // of that name goes first (its answer swallowed), so the name holds this Bind's portal
        // or nothing.
        var buffer = ByteBuffer()
        FrontendMessage.close(.portal(bind.portalName)).encode(into: &buffer)
        closeAnswers.own(batch: activity.sentRequests)
        var message = Self.rawMessage(frame)
        buffer.writeBuffer(&message)
        return .replace(buffer)
    }

    /// The fast-path function call names a function by OID: nothing to rewrite, so masked
    /// sessions may not use it; before the session's masking is known, it waits for it.
    private mutating func functionCall(_ frame: MessageFrame, now: ContinuousClock.Instant) -> FrameScanner.Verdict {
        if internalQuery != nil || adminRunning || analysisRunning { return .pauseBefore }
        switch masking.treatment(policies: policies, notReady: policiesNotReady, canRead: canRead(beforeTransactionControl: false), isCopy: false, now: now) {
        case .refuse(let error):
            return refuse(frame, error)
        case .readFirst:
            startContextRead()
            return .pauseBefore
        case .relay:
            activity.clientSent(frame.type)
            return .relay
        case .mask(let context):
            counters.maskedStatements &+= 1
            return refuse(frame, AdminError("42501", "pgclone: the FunctionCall protocol message is not allowed for role \"\(context.role)\", which is masked by a policy"))
        }
    }

    /// Replaces a Query, Parse or FunctionCall with one that fails with `error`, in order,
    /// through the server.
    mutating func refuse(_ frame: MessageFrame, _ error: AdminError) -> FrameScanner.Verdict {
        stripNextErrorContext = true
        counters.refused(error.sqlState)
        if frame.type == FrontendMessage.ID.parse.rawValue, case .parse(let parse)? = try? FrontendMessage.decode(frame) {
            activity.clientSent(frame.type)
            parseAnswers.client(batch: activity.sentRequests)
            // The statement that raises may be bound (its Execute reports the refusal): the
            // unnamed one always replaces what it held; a named one only where no older
            // statement can stay under the name.
            defer { statementsClosedWhileCurrent[ExactName(parse.statementName)] = nil }
            if !mayHoldOlderStatement(parse.statementName, current: false, protocolParse: true) {
                statementsRefusedWhileMasked.remove(ExactName(parse.statementName))
                statementsPreparedMasked[ExactName(parse.statementName)] = masking.generation
            }
            if !parse.statementName.isEmpty {
                statementNamesUsed.insert(ExactName(parse.statementName))
                statementNamesFreed.remove(ExactName(parse.statementName))
            }
            // The statement that raises takes the same parameters, so that the client's Bind
            // is accepted and Execute reports the refusal. Types the client left open are text, and
            // so are types that are not built in (Bind would run their input function and domain
            // checks: code pgclone cannot read).
            let count = min(max(parse.parameterTypes.count, SQLLexer(parse.query).highestParameterNumber()), Int(Int16.max))
            let types = (0..<count).map { index -> UInt32 in
                let type = index < parse.parameterTypes.count ? parse.parameterTypes[index] : 0
                return type != 0 && type < 16384 ? type : 25
            }
            var buffer = ByteBuffer()
            FrontendMessage.parse(.init(statementName: parse.statementName, query: AdminSQL.raise(error), parameterTypes: types)).encode(into: &buffer)
            return .replace(buffer)
        }
        activity.clientSent(FrontendMessage.ID.query.rawValue)
        return .replace(Self.queryMessage(AdminSQL.raise(error)))
    }

    // MARK: - The proxy's own queries

    /// Reads the masking context on the session (it is quiet: nothing else is in flight).
    /// The query goes in the session's client_encoding, as the server reads it (a policy's
    /// non-ASCII table name sent as UTF-8 to a LATIN1 session would name no table, and leave it
    /// unmasked); where a name has no form in that encoding, the read fails and statements are refused.
    private mutating func startContextRead() {
        let status = activity.transactionStatus
        let sql = InBandRead.wrap(MaskingContext.query(for: policies, includeBuiltins: builtinFunctions == nil), status: status)
        guard let bytes = StatementText.encode(sql, settings: masking.reading) else {
            let failure = AdminError("42501", "pgclone: cannot determine masking for this session: a masking policy names a table or column that client_encoding \(masking.reading.clientEncoding) cannot express",
                                     hint: "Set client_encoding to UTF8.")
            sendInternalQuery("SELECT 1", purpose: .restore(failure: failure))
            return
        }
        internalQuery = InternalQuery(purpose: .maskingContext(policies, status: status))
        effects.append(.sendToServer(Self.queryMessage(bytes: bytes)))
    }

    mutating func sendInternalQuery(_ sql: String, purpose: InternalQuery.Purpose) {
        internalQuery = InternalQuery(purpose: purpose)
        effects.append(.sendToServer(Self.queryMessage(sql)))
    }

    private mutating func internalAnswer(_ message: BackendMessage, now: ContinuousClock.Instant) -> FrameScanner.Verdict {
        switch message {
        case .dataRow(let row):
            // Values come in the session's client_encoding.
            let encoding = StatementText.Encoding(clientEncoding: masking.reading.clientEncoding)
            internalQuery?.rows.append(row.values.map { $0.map { StatementText.decodeResult(Array($0.readableBytesView), encoding: encoding) } })
        case .errorResponse(let fields):
            internalQuery?.error = fields
        case .readyForQuery(let status):
            activity.observe(status)
            if let finished = internalQuery {
                internalQuery = nil
                internalQueryFinished(finished, now: now)
            }
        case .parameterStatus(let name, let value):
            // Asynchronous messages belong to the client whenever they arrive.
            masking.parameterReported(name: name, value: value)
            return .relay
        case .noticeResponse, .notificationResponse:
            return .relay
        default:
            break
        }
        return .consume
    }

    private mutating func internalQueryFinished(_ answer: InternalQuery, now: ContinuousClock.Instant) {
        switch answer.purpose {
        case .adminRoleCheck:
            roleChecked(answer)
        case .consoleRoleCheck:
            let row = answer.rows.first ?? []
            let allowed = answer.error == nil && row.count >= 4 && (row[2] == "t" || row[3] == "t")
            guard allowed else {
                let role = row.first.flatMap { $0 } ?? "?"
                let detail = answer.error.map { "pgclone could not check the role: \($0.message ?? "unknown error")" }
                    ?? "Role \"\(role)\" is neither a superuser of the target nor a member of a role named by --admin-roles."
                effects.append(.closeWithError(ErrorFields(severity: .fatal, sqlState: "42501", message: "permission denied for the pgclone console",
                                                           detail: detail),
                                               reason: "console refused"))
                return
            }
            consoleMode = .ready
            consoleSuperuser = row[2] == "t"
            consoleRole = row[0] ?? ""
            consoleAdmittedUnder = adminRoles
            var ready = ByteBuffer()
            BackendMessage.readyForQuery(.idle).encode(into: &ready)
            effects.append(.sendToClient(ready))
            effects.append(.consoleOpened)
            effects.append(.resumeClientInput)
        case .maskingContext(let read, let status):
            if let error = answer.error {
                // The session is put back as it was, then statements are refused until a read works
                // (a cancel that hit the read cancels the statement that waited for it).
                let failure = error.sqlState == "57014"
                    ? AdminError("57014", "canceling statement due to user request")
                    : AdminError(error.sqlState ?? "42501", "pgclone: cannot determine masking for this session: \(error.message ?? "unknown error")")
                sendInternalQuery(InBandRead.restore(status: status), purpose: .restore(failure: failure))
                return
            }
            if builtinFunctions == nil {
                let names = MaskingContext.builtinFunctions(in: answer.rows)
                if !names.isEmpty {
                    builtinFunctions = names
                    effects.append(.storeBuiltinFunctions(names))
                }
            }
            let wasMasked = isMaskedSession
            let hadContext = masking.context != nil
            masking.contextRead(rows: answer.rows, policies: read, at: now, idle: status == .idle)
            if !wasMasked, isMaskedSession, status != .idle { guardPortals() }
            // Cursors (DECLARE, WITH HOLD too) and portals opened under what the session could read
            // before go on returning rows computed then: when what it may read changed, the
            // proxy closes them all (their names then say "does not exist").
            let closeCursors = isMaskedSession && masking.lastReadChangedMasking && (hadContext || unseenEra)
            // Statements prepared under an older context must be prepared again (this runs when
            // the server is quiet: no Parse is in flight while the tracked set changes).
            let stale = statementsPreparedMasked.filter { $0.value != masking.generation }
            if !stale.isEmpty {
                statementsRefusedWhileMasked.formUnion(stale.keys)
                for name in stale.keys { statementsPreparedMasked[name] = nil }
            }
            if case .stale? = masking.context?.tables.first(where: { $0.reads == .stale })?.reads { effects.append(.nudgeBackstop) }
            if closeCursors {
                sendInternalQuery("CLOSE ALL", purpose: .closeCursors)
                return
            }
            effects.append(.resumeClientInput)
        case .restore(let failure):
            masking.contextReadFailed(failure)
            effects.append(.resumeClientInput)
        case .closeCursors:
            if answer.error != nil {
                // Not closed (a failed transaction): the statements that follow are refused until they are.
                masking.contextReadFailed(AdminError("55000", "pgclone: this session's masking changed and its open cursors could not be closed; end the transaction"))
            }
            effects.append(.resumeClientInput)
        case .freeStatementNames(let names):
            if answer.error == nil {
                statementNamesFreed.formUnion(names.map { ExactName($0) })
                for name in names { masking.forgetSQLPrepared(name) }
            } else {
                statementNamesNotFreed.formUnion(names.map { ExactName($0) })
            }
            effects.append(.resumeClientInput)
        }
    }

    // MARK: - Server messages

    mutating func serverHeader(type: UInt8) throws(WireError) -> FrameScanner.Disposition {
        guard let id = BackendMessage.ID(rawValue: type) else {
            throw WireError(.unknownMessageType(type))
        }
        if internalQuery != nil { return .examine }
        switch id {
        case .readyForQuery, .parameterStatus:
            return .examine
        case .errorResponse:
            // Always read (errors are rare): a FATAL one means the server is ending the session.
            return .examine
        // (A `where` clause binds to the last pattern of a case only: one pattern per case here.)
        case .parseComplete where !parseAnswers.isEmpty || tracksParseAnswers:
            return .examine
        case .closeComplete where !closeAnswers.isEmpty || tracksParseAnswers:
            return .examine
        case .rowDescription where isMaskedSession || masking.inFlightChange:
            return .examine
        case .dataRow where masking.suppressingRows:
            return .examine
        case .notificationResponse where isMaskedSession || masking.inFlightChange:
            return .examine
        case .commandComplete where masking.suppressingRows:
            return .examine
        case .authentication where phase == .authenticating:
            return .examine
        case .copyInResponse:
            // (Rare: the requests counted change when an Execute started it.)
            return .examine
        case .backendKeyData where phase == .authenticating:
            return .examine
        default:
            return .pass
        }
    }

    mutating func serverMessage(_ frame: MessageFrame, now: ContinuousClock.Instant) throws(WireError) -> FrameScanner.Verdict {
        let message = try BackendMessage.decode(frame)
        if case .errorResponse(let fields) = message, fields.severity == "FATAL" || fields.severity == "PANIC" {
            // The server closes after this: what the client sends from now on must not reach a
            // dead socket (that would add the proxy's own 'lost the connection' error to the
            // server's one, and a client gets two errors for one statement).
            serverEndedSession = true
        }
        if internalQuery != nil { return internalAnswer(message, now: now) }
        if case .notificationResponse = message, isMaskedSession || masking.inFlightChange {
            // A payload is whatever a trigger or function wrote (a change feed's whole row): a
            // masked session gets none (LISTEN is refused to it; a DO block could still listen).
            return .consume
        }
        switch message {
        case .errorResponse(var fields) where withheldChannelBinding && phase == .authenticating && fields.message == "SCRAM channel binding negotiation error":
            // The client has TLS to the proxy and offered channel binding; the server, over its
            // own TLS connection from the proxy, supports it too and takes the client's "y" for a
            // downgrade. Binding cannot cross a proxy that terminates TLS: say what to change.
            fields.fields.removeAll { $0.code == ErrorFields.Code.hint }
            fields.fields.append((ErrorFields.Code.hint, "pgclone terminates TLS, so SCRAM channel binding cannot reach the server: connect with channel_binding=disable, or let pgclone reach the server without TLS (sslmode=disable in --backend, e.g. over a local socket)."))
            var replacement = ByteBuffer()
            BackendMessage.errorResponse(fields).encode(into: &replacement)
            return .replace(replacement)
        case .errorResponse(var fields) where stripNextErrorContext:
            // The error raised for a refusal or an admin call: drop the PL/pgSQL context and source location.
            masking.suppressingRows = false
            fields.fields.removeAll { [UInt8(ascii: "W"), UInt8(ascii: "F"), UInt8(ascii: "L"), UInt8(ascii: "R")].contains($0.code) }
            var replacement = ByteBuffer()
            BackendMessage.errorResponse(fields).encode(into: &replacement)
            return .replace(replacement)
        case .rowDescription(let description):
            guard let refusal = masking.violation(description) else { return .relay }
            // Last line of defence: the rewrite missed a masked column; drop the rows.
            effects.append(.guardRefused(role: masking.context?.role ?? ""))
            masking.suppressingRows = true
            var replacement = ByteBuffer()
            BackendMessage.errorResponse(ErrorFields(severity: .error, sqlState: "42501", message: refusal)).encode(into: &replacement)
            return .replace(replacement)
        case .dataRow where masking.suppressingRows:
            return .consume
        case .commandComplete where masking.suppressingRows:
            masking.suppressingRows = false
            return .consume
        case .errorResponse where masking.suppressingRows:
            masking.suppressingRows = false
            return .relay
        case .parameterStatus(let name, let value):
            masking.parameterReported(name: name, value: value)
            return .relay
        case .copyInResponse:
            activity.serverStartedCopyIn()
            return .relay
        case .parseComplete:
            return parseAnswers.answered() ? .consume : .relay
        case .closeComplete:
            return closeAnswers.answered() ? .consume : .relay
        case .readyForQuery(let status):
            // A console client hears that the session is ready only once its role passed.
            let consoleChecking = phase == .authenticating && consoleMode == .checking
            readyForQuery(status)
            return consoleChecking ? .consume : .relay
        case .authentication(.sasl(let mechanisms)) where mechanisms.contains("SCRAM-SHA-256-PLUS"):
            withheldChannelBinding = true
            // Channel binding cannot survive a proxy that terminates TLS (the client would bind
            // to the proxy's certificate): the mechanism is withheld.
            var replacement = ByteBuffer()
            BackendMessage.authentication(.sasl(mechanisms: mechanisms.filter { $0 != "SCRAM-SHA-256-PLUS" })).encode(into: &replacement)
            return .replace(replacement)
        case .backendKeyData(let serverKey):
            // The real process ID goes on (clients match it with pg_stat_activity and their own
            // NOTIFYs); the secret is the proxy's, so that cancels come through the proxy.
            let clientKey = BackendKey(processID: serverKey.processID, secretKey: Int32.random(in: Int32.min...Int32.max))
            effects.append(.registerCancelKey(server: serverKey, client: clientKey))
            var replacement = ByteBuffer()
            BackendMessage.backendKeyData(clientKey).encode(into: &replacement)
            return .replace(replacement)
        default:
            return .relay
        }
    }

    private mutating func readyForQuery(_ status: BackendMessage.TransactionStatus) {
        // Portals end with their transaction.
        if status == .idle {
            portalsBoundSinceMaskingChanged = nil
            portalEpochs.removeAll()
        }
        stripNextErrorContext = false
        masking.suppressingRows = false
        let wasInTransaction = activity.transactionStatus != .idle
        activity.serverSentReadyForQuery(status)
        // Nothing of the answered batch is outstanding any more (an error skips the rest).
        parseAnswers.batchEnded(answered: activity.settledRequests)
        closeAnswers.batchEnded(answered: activity.settledRequests)
        if wasInTransaction && status == .idle { masking.transactionEnded() }
        if activity.isQuiet { masking.serverQuiet() }
        if phase == .authenticating {
            phase = .ready
            effects.append(.sessionOpened)
            if heldUntilReady {
                heldUntilReady = false
                effects.append(.resumeClientInput)
            }
            // Read the masking context at once: the first statement then finds it known, even
            // when it comes in the middle of a pipeline.
            if consoleMode == .checking {
                sendInternalQuery(AdminSQL.roleCheck(adminRoles: adminRoles), purpose: .consoleRoleCheck)
            } else if !policies.isEmpty && !masking.isSuperuser && internalQuery == nil {
                startContextRead()
                effects.append(.resumeClientInput)
            }
        }
        if adminWaitingForQuiet && activity.isQuiet {
            adminWaitingForQuiet = false
            startPendingAdmin()
        }
        if quiescing && activity.isIdle && internalQuery == nil && !adminRunning && !analysisRunning { effects.append(.terminateIdle) }
    }

    // MARK: - Building messages

    static func queryMessage(_ sql: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        FrontendMessage.query(sql).encode(into: &buffer)
        return buffer
    }

    /// A Query message carrying exactly these bytes (already in the client's encoding).
    static func queryMessage(bytes: [UInt8]) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(FrontendMessage.ID.query.rawValue)
        buffer.writeInteger(Int32(4 + bytes.count + 1))
        buffer.writeBytes(bytes)
        buffer.writeInteger(UInt8(0))
        return buffer
    }

    /// A Parse message whose query is exactly these bytes (already in the client's encoding).
    static func parseMessage(name: String, query: [UInt8], parameterTypes: [UInt32]) -> ByteBuffer {
        let nameBytes = Array(name.utf8)
        var buffer = ByteBuffer()
        buffer.writeInteger(FrontendMessage.ID.parse.rawValue)
        buffer.writeInteger(Int32(4 + nameBytes.count + 1 + query.count + 1 + 2 + 4 * parameterTypes.count))
        buffer.writeBytes(nameBytes)
        buffer.writeInteger(UInt8(0))
        buffer.writeBytes(query)
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(Int16(parameterTypes.count))
        for type in parameterTypes { buffer.writeInteger(type) }
        return buffer
    }

    /// The query bytes of a Parse message as the client sent them (its encoding, not decoded).
    static func rawQuery(of frame: MessageFrame) -> [UInt8]? {
        let view = frame.payload.readableBytesView
        guard let nameEnd = view.firstIndex(of: 0) else { return nil }
        let queryStart = view.index(after: nameEnd)
        guard let queryEnd = view[queryStart...].firstIndex(of: 0) else { return nil }
        return Array(view[queryStart..<queryEnd])
    }

    /// Parse (under an internal name), Bind to the client's portal, Close: a statement of the
    /// proxy's own whose answers are swallowed, in order with the client's.
    mutating func internalStatement(_ sql: String, portal: String, resultFormats: [Int16], bindSent: Bool) -> ByteBuffer {
        internalStatementCounter += 1
        let name = "pgclone_internal_\(internalStatementCounter)"
        var buffer = ByteBuffer()
        if !portal.isEmpty {
            // As for a client's Bind: an older portal of that name goes first.
            FrontendMessage.close(.portal(portal)).encode(into: &buffer)
            closeAnswers.own(batch: activity.sentRequests)
        }
        portalEpochs[ExactName(portal)] = masking.epoch
        FrontendMessage.parse(.init(statementName: name, query: sql, parameterTypes: [])).encode(into: &buffer)
        FrontendMessage.bind(.init(portalName: portal, statementName: name, parameterFormats: [], parameters: [], resultFormats: resultFormats)).encode(into: &buffer)
        FrontendMessage.close(.statement(name)).encode(into: &buffer)
        parseAnswers.own(batch: activity.sentRequests)
        closeAnswers.own(batch: activity.sentRequests)
        for type in [FrontendMessage.ID.parse, .close] { activity.clientSent(type.rawValue) }
        if bindSent { activity.clientSent(FrontendMessage.ID.bind.rawValue) }
        return buffer
    }

    /// A client message as it came (type, length, payload).
    static func rawMessage(_ frame: MessageFrame) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(frame.type)
        buffer.writeInteger(Int32(frame.payload.readableBytes + 4))
        var payload = frame.payload
        buffer.writeBuffer(&payload)
        return buffer
    }
}

/// Statements that only control the transaction (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ...):
/// they read nothing, so they pass whatever the proxy knows of the session's masking (a failed
/// transaction must always be able to end).
enum TransactionControl {
    private static let words: [[UInt8]] = ["begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release"].map { Array($0.utf8) }

    /// Whether a semicolon is followed by anything but white space and semicolons (a second
    /// statement, or a comment: the parser decides then).
    static func hasSeveralStatements<Bytes: Collection>(_ bytes: Bytes) -> Bool where Bytes.Element == UInt8 {
        guard let semicolon = bytes.firstIndex(of: UInt8(ascii: ";")) else { return false }
        return bytes[semicolon...].contains { byte in
            !(byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D || byte == 0x0C || byte == UInt8(ascii: ";"))
        }
    }

    /// Whether `bytes` holds transaction-control statements and nothing else. The first word is
    /// found without copying; only a text with several statements is parsed.
    static func only<Bytes: Collection>(_ bytes: Bytes) -> Bool where Bytes.Element == UInt8 {
        var index = bytes.startIndex
        // White space and comments before the first word.
        while index < bytes.endIndex {
            let byte = bytes[index]
            if byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D || byte == 0x0C {
                index = bytes.index(after: index)
            } else if byte == UInt8(ascii: "-") || byte == UInt8(ascii: "/") {
                // A comment first is rare: read it properly.
                let array = Array(bytes)
                let start = SQLLexer(bytes: array).skipSpaceAndComments(from: 0)
                return start < array.count && start > 0 && only(array[start...])
            } else {
                break
            }
        }
        let start = index
        while index < bytes.endIndex, (bytes[index] | 0x20) >= UInt8(ascii: "a"), (bytes[index] | 0x20) <= UInt8(ascii: "z") {
            index = bytes.index(after: index)
        }
        let length = bytes.distance(from: start, to: index)
        func isWord(_ word: [UInt8]) -> Bool {
            word.count == length && zip(word, bytes[start..<index]).allSatisfy { $0 == ($1 | 0x20) }
        }
        // SET TRANSACTION must come before any query of its transaction: the proxy's own read
        // must not go first (round 19: BEGIN, then SET TRANSACTION ISOLATION LEVEL after a read,
        // failed with 25001). A SET is parsed to tell it from the others.
        let isSet = isWord(Array("set".utf8))
        guard isSet || words.contains(where: isWord) else { return false }
        // One statement that starts with one of these words is one of these statements ("COMMIT;"
        // too: a semicolon with only white space after it ends the one statement).
        if !isSet, !Self.hasSeveralStatements(bytes[index...]) { return true }
        guard bytes.count <= MaskingState.synchronousParseLimit else { return false }
        guard let statements = try? PostgresParser.parse(String(decoding: bytes, as: UTF8.self)), !statements.isEmpty else { return false }
        return statements.allSatisfy(isTransactionControl)
    }

    /// BEGIN, COMMIT, SAVEPOINT... and SET TRANSACTION (isolation, access mode, deferrable,
    /// snapshot) or SET SESSION CHARACTERISTICS AS TRANSACTION: they read nothing.
    static func isTransactionControl(_ statement: PostgresParser.Statement) -> Bool {
        guard let (kind, body) = statement.node.tagged else { return false }
        if kind == "TransactionStmt" { return true }
        guard kind == "VariableSetStmt", body["kind"]?.string == "VAR_SET_MULTI" else { return false }
        return ["TRANSACTION", "TRANSACTION SNAPSHOT", "SESSION CHARACTERISTICS"].contains(body["name"]?.string ?? "")
    }
}
