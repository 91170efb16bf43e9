import CloneEngine
import JSON
import NIOCore
import PostgresWire
import SQLParser

/// Admin calls on a session: recognised in a Query or Parse, the caller's role asked in-band,
/// the call run in async code (`Effect.runAdmin`), and what stands for its result sent to the
/// server in order, so that the server itself answers the client.
extension SessionStateMachine {
    /// A Query that uses the admin API: held while the call runs; nil when the text only
    /// mentions pgclone (a masked session's statement is then read like any other).
    mutating func adminQuery(_ sql: String, frame: MessageFrame) -> FrameScanner.Verdict? {
        do {
            guard let statement = try AdminStatement.recognize(sql) else { return nil }
            pendingAdmin = .simple(statement)
            startPendingAdmin()
            return .consumeAndPause
        } catch {
            // A malformed admin call fails in the server's own error path, in order.
            return refuse(frame, error)
        }
    }

    /// A Parse of an admin statement: the server gets a same-shaped placeholder under the
    /// client's name (so that Describe answers), and the call runs at Bind.
    mutating func adminParse(_ parse: FrontendMessage.Parse, frame: MessageFrame) -> FrameScanner.Verdict? {
        let statement: AdminStatement
        do {
            guard let recognized = try AdminStatement.recognize(parse.query) else { return nil }
            statement = recognized
        } catch {
            // Execution of this statement reports the error, in order, through the server.
            let broken = AdminStatement(text: "SELECT NULL::pg_catalog.text AS pgclone", references: [])
            return forwardAdminParse(name: parse.statementName, prepared: AdminPrepared(statement: broken, caller: .failure(error), parameterTypes: parse.parameterTypes), declaredTypes: [])
        }
        guard activity.isQuiet else {
            let error = AdminError("0A000", "a pgclone call over the extended protocol must start a new batch (send Sync before it)")
            return forwardAdminParse(name: parse.statementName, prepared: AdminPrepared(statement: statement, caller: .failure(error), parameterTypes: statement.parameterTypes(declared: parse.parameterTypes)), declaredTypes: parse.parameterTypes)
        }
        pendingAdmin = .parse(name: parse.statementName, statement: statement, types: parse.parameterTypes)
        startPendingAdmin()
        return .consumeAndPause
    }

    /// Puts the placeholder under the client's statement name on the server.
    mutating func forwardAdminParse(name: String, prepared: AdminPrepared, declaredTypes: [UInt32]) -> FrameScanner.Verdict {
        adminPrepared[ExactName(name)] = prepared
        parseAnswers.client(batch: activity.sentRequests)
        activity.clientSent(FrontendMessage.ID.parse.rawValue)
        // The name is used like any other: a later Parse or PREPARE of it frees it first. (It was
        // not: the server refused that second Parse with 42P05, kept the placeholder, and the
        // proxy took the name for the new statement: its Bind reached the placeholder.) Only the
        // admin path may bind it: once the proxy lets go of the admin statement (a Close, a
        // refused Parse of the name), a masked session's Bind of it is refused.
        if !name.isEmpty {
            statementNamesUsed.insert(ExactName(name))
            statementNamesFreed.remove(ExactName(name))
        }
        statementsPreparedMasked[ExactName(name)] = nil
        statementsRefusedWhileMasked.insert(ExactName(name))
        masking.forgetSQLPrepared(name)
        let (text, effects) = adminPlaceholder(prepared.statement)
        // In the session's client_encoding, as the server reads it; what it cannot carry is the
        // neutral statement (ASCII, no effects).
        let encoded = StatementText.encode(text, settings: masking.reading)
        statementEffects[ExactName(name)] = encoded == nil || effects.isEmpty ? nil : effects
        return .replace(Self.parseMessage(name: name, query: encoded ?? Array(prepared.statement.neutralPlaceholder.utf8), parameterTypes: declaredTypes))
    }

    /// The text prepared on the server under the client's name, with what running it would
    /// change: the client's statement with its calls replaced, so that Describe answers as the
    /// call's result will. It is prepared only when it is one plain SELECT (a PREPARE, a write,
    /// DECLARE... in it would outlive the call: round 16 prepared a statement the proxy never
    /// saw), masked for a session that may be masked; anything else is a statement of the same
    /// parameters that reads nothing (Describe then shows one column).
    mutating func adminPlaceholder(_ statement: AdminStatement) -> (String, MaskingRewriter.Effects) {
        let text = statement.placeholder
        let neutral = (statement.neutralPlaceholder, MaskingRewriter.Effects())
        guard let parsed = try? PostgresParser.parse(text), parsed.count == 1, let (kind, body) = parsed[0].node.tagged,
              kind == "SelectStmt", body["intoClause"] == nil
        else { return neutral }
        guard maskingInPlay, !masking.isSuperuser, !isKnownUnmasked else {
            // Prepared unread (the session may read what it names): what it changes is noted if
            // it ever runs, and names prepared from here on are freed first.
            if maskingInPlay, !masking.isSuperuser { unseenEra = true }
            return (text, maskingInPlay ? MaskingState.relayedEffects(Array(text.utf8), mayRevert: true) : [])
        }
        guard let context = masking.inFlightChange ? masking.worstCase ?? masking.context : masking.context, context.isMasked,
              masking.knowledge == .current || masking.inFlightChange
        else { return neutral }
        let (result, effects) = masking.rewrite(text, under: context, builtinFunctions: builtinFunctions)
        let prepares = !masking.proposedPrepareNames.isEmpty
        masking.discardPrepared()
        guard effects.isEmpty, !prepares else { return neutral }
        switch result {
        case .unchanged: return (text, [])
        case .rewritten(let masked): return (masked, [])
        case .refused, .needsFreshContext: return neutral
        }
    }

    /// Starts the pending admin work: a call prepared by Bind runs at once; a statement first
    /// needs the caller's role, asked once the server has answered everything before it.
    mutating func startPendingAdmin() {
        guard let pending = pendingAdmin, internalQuery == nil, !adminRunning else { return }
        if case .bind(let bind, let prepared) = pending {
            adminRunning = true
            effects.append(.runAdmin(AdminRun(kind: .bind(bind, prepared), caller: nil)))
            return
        }
        if activity.isQuiet {
            sendInternalQuery(AdminSQL.roleCheck(adminRoles: adminRoles), purpose: .adminRoleCheck)
        } else {
            adminWaitingForQuiet = true
        }
    }

    mutating func roleChecked(_ answer: InternalQuery) {
        guard let pending = pendingAdmin else { return }
        switch pending {
        case .parse(let name, let statement, let types):
            pendingAdmin = nil
            let prepared = AdminPrepared(statement: statement, caller: Self.caller(from: answer, adminRoles: adminRoles, statement: statement),
                                         parameterTypes: statement.parameterTypes(declared: types))
            if case .replace(let buffer) = forwardAdminParse(name: name, prepared: prepared, declaredTypes: types) {
                effects.append(.sendToServer(buffer))
            }
            effects.append(.resumeClientInput)
        case .simple(let statement):
            switch Self.caller(from: answer, adminRoles: adminRoles, statement: statement) {
            case .success(let caller):
                adminRunning = true
                effects.append(.runAdmin(AdminRun(kind: .simple(statement), caller: caller)))
            case .failure(let error) where answer.error == nil:
                finishAdmin(sql: AdminSQL.raise(error), isError: true, notices: [])
            case .failure:
                // E.g. an aborted transaction: the server answers the original statement as it would anyway.
                finishAdmin(sql: statement.text, isError: false, notices: [])
            }
        case .bind:
            break
        }
    }

    /// The outcome of `Effect.runAdmin`: what stands for the call's result goes to the server.
    mutating func adminFinished(_ run: AdminRun, sql: String, isError: Bool, notices: [String]) {
        adminRunning = false
        switch run.kind {
        case .simple:
            finishAdmin(sql: sql, isError: isError, notices: notices)
        case .bind(let bind, _):
            pendingAdmin = nil
            let (masked, failed) = maskedAdminResult(sql, isError: isError)
            sendNotices(notices)
            if failed { stripNextErrorContext = true }
            guard phase == .ready else { return }
            // The server prepares the result under an internal name, binds the client's portal
            // to it with the client's result formats, and drops the name.
            effects.append(.sendToServer(internalStatement(masked, portal: bind.portalName, resultFormats: bind.resultFormats, bindSent: true)))
            effects.append(.resumeClientInput)
        }
    }

    /// Sends the statement that stands for the admin call (its result, or the error) and goes
    /// on with the client's input.
    private mutating func finishAdmin(sql original: String, isError originalIsError: Bool, notices: [String]) {
        pendingAdmin = nil
        let (sql, isError) = maskedAdminResult(original, isError: originalIsError)
        guard phase == .ready else { return }
        sendNotices(notices)
        activity.clientSent(FrontendMessage.ID.query.rawValue)
        if isError { stripNextErrorContext = true }
        effects.append(.sendToServer(Self.queryMessage(sql)))
        effects.append(.resumeClientInput)
    }

    /// What remains of an admin statement once its calls are replaced is an ordinary statement:
    /// a masked session gets it masked (or refused) like any other.
    private mutating func maskedAdminResult(_ sql: String, isError: Bool) -> (String, Bool) {
        guard !isError, maskingInPlay, !masking.isSuperuser, !isKnownUnmasked else { return (sql, isError) }
        guard let context = masking.context else {
            // Never read (or not readable): the statement cannot be judged, so it does not run.
            return (AdminSQL.raise(AdminError("42501", "pgclone: this session's masking is not known yet; the statement around the pgclone call cannot run", hint: "Run it again.")), true)
        }
        guard context.isMasked || masking.inFlightChange else { return (sql, isError) }
        let (result, _) = masking.rewrite(sql, under: masking.inFlightChange ? masking.worstCase ?? context : context, builtinFunctions: builtinFunctions)
        switch result {
        case .unchanged: return (sql, false)
        case .rewritten(let text): return (text, false)
        case .refused(let error): return (AdminSQL.raise(error), true)
        case .needsFreshContext(let function): return (AdminSQL.raise(Self.unknownFunctionError(function)), true)
        }
    }

    private mutating func sendNotices(_ notices: [String]) {
        for notice in notices {
            var buffer = ByteBuffer()
            BackendMessage.noticeResponse(ErrorFields(severity: .notice, sqlState: "00000", message: "pgclone: \(notice)")).encode(into: &buffer)
            effects.append(.sendToClient(buffer))
        }
    }

    static func caller(from answer: InternalQuery, adminRoles: [String], statement: AdminStatement) -> Result<AdminCaller, AdminError> {
        guard answer.error == nil, answer.rows.count == 1, answer.rows[0].count == 4,
              let role = answer.rows[0][0], let database = answer.rows[0][1]
        else {
            return .failure(AdminError(answer.error?.sqlState ?? "XX000", answer.error?.message ?? "could not determine the calling role"))
        }
        guard answer.rows[0][2] == "t" || answer.rows[0][3] == "t" else {
            let names = statement.references.map { "pgclone.\($0.function)" }.joined(separator: ", ")
            return .failure(AdminError(
                "42501", "permission denied for \(names): role \"\(role)\" is not a superuser\(adminRoles.isEmpty ? "" : " or a member of an admin role")",
                hint: adminRoles.isEmpty ? "Only superusers may call the pgclone admin API; the proxy's --admin-roles names roles whose members may too."
                    : "Members of \(adminRoles.joined(separator: ", ")) may call the pgclone admin API."))
        }
        return .success(AdminCaller(role: role, database: database, isSuperuser: answer.rows[0][2] == "t"))
    }
}
