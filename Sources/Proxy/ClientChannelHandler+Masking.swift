import CloneEngine
import Foundation
import Logging
import Masking
import NIOCore
import PostgresWire
import SQLParser

/// Masking on a session: the context for the current role, statement rewriting and refusals.
extension ClientChannelHandler {
    // MARK: - Masking

    func startMaskingCheck() {
        guard internalQuery == nil else { return }
        let policies = proxy.policies.current
        if activity.isQuiet {
            sendInternalQuery(MaskingContext.query(for: policies, includeBuiltins: proxy.builtinFunctions.names == nil), purpose: .maskingContext(policies))
        } else {
            maskingWaitingForQuiet = true
        }
    }

    func maskingChecked(_ answer: InternalQuery, policies: PolicySet) {
        if let error = answer.error {
            // E.g. an aborted transaction: nothing but ending it may run until masking is known again.
            maskingCheckError = error
        } else {
            maskingCheckError = nil
            let context = MaskingContext.from(rows: answer.rows, policies: policies)
            if proxy.builtinFunctions.names == nil { proxy.builtinFunctions.store(MaskingContext.builtinFunctions(in: answer.rows)) }
            if context.isMasked != masking.isMasked || context.role != masking.context?.role {
                logger.debug("masking context", metadata: ["role": "\(context.role)", "masked.tables": "\(context.tables.count)"])
            }
            masking.update(context)
            // Statements prepared under an older context must be prepared again (this runs when
            // the server is quiet: no Parse is in flight while the tracked set changes).
            let stale = statementsPreparedMasked.filter { $0.value != masking.generation }
            if !stale.isEmpty {
                statementsRefusedWhileMasked.formUnion(stale.keys)
                for name in stale.keys { statementsPreparedMasked[name] = nil }
            }
        }
        resumeClientInput()
    }

    /// Decides what happens to a statement under masking; `nil` means "go on as usual".
    func maskingVerdict(for frame: MessageFrame, text: ByteBufferView) -> FrameScanner.Verdict? {
        if !proxy.policies.isReady && !serverSaysSuperuser {
            // Nobody knows yet whom to mask: refused, never relayed.
            return refuseStatement(frame, AdminError("57P03", "\(proxy.policies.notReadyReason); statements of roles that could be masked are refused until it has",
                                                     hint: "Check that pgclone's service role can log in to the state database; superusers are not affected."))
        }
        let policies = proxy.policies.current
        guard !policies.isEmpty else { return nil }
        var check = masking.check(policies)
        // A COPY result carries no column origins for the guard to check: judge it on a fresh
        // context, so that a view created moments ago by another session is known.
        if check == .none, isMaskedSession, masking.contextAge > SessionMasking.copyFreshness,
           SessionMasking.mentions(text, SessionMasking.copyWord) {
            check = .required
        }
        if check == .refresh && !activity.isQuiet {
            // Only stale, and the server is busy: keep the current context for now.
        } else if check != .none && maskingCheckError == nil {
            if activity.hasUnsyncedExtendedMessages && internalQuery == nil {
                // Inside an unsynced extended batch the role cannot be asked: fail closed.
                return refuseStatement(frame, AdminError("42501", "pgclone: the session's role or policies changed inside an extended-protocol batch; send Sync before this statement"))
            }
            startMaskingCheck()
            return .pauseBefore
        }
        if let error = maskingCheckError {
            let words = String(decoding: text.prefix(16), as: UTF8.self).lowercased().trimmingCharacters(in: .whitespacesAndNewlines)
            if ["rollback", "abort", "commit", "end"].contains(where: { words.hasPrefix($0) }) {
                masking.noteStatement(Array("rollback".utf8))
                maskingCheckError = nil
                return nil
            }
            return refuseStatement(frame, AdminError(error.sqlState ?? "42501", "pgclone: cannot determine masking for this session: \(error.message ?? "unknown error")"))
        }
        masking.noteStatement(text)
        if frame.type == FrontendMessage.ID.query.rawValue, !isMaskedSession, SessionMasking.mentionsTrigger(text), text.contains(UInt8(ascii: ";")),
           case .query(let sql)? = try? FrontendMessage.decode(frame), SessionMasking.changesRoleAmongOthers(sql) {
            // The statements after the role change would run on a context read before it.
            return refuseStatement(frame, AdminError("0A000", "pgclone: while masking policies are in force, a role change must be sent as a query of its own",
                                                     hint: "Send SET ROLE (or RESET, DISCARD, set_config('role', ...)) separately, then the statements that follow it."))
        }
        return nil
    }

    /// Replaces a Query or Parse with one that fails with `error`, in order, through the server.
    func refuseStatement(_ frame: MessageFrame, _ error: AdminError) -> FrameScanner.Verdict {
        stripNextErrorContext = true
        activity.clientSent(frame.type)
        if frame.type == FrontendMessage.ID.parse.rawValue, case .parse(let parse)? = try? FrontendMessage.decode(frame) {
            // The statement that raises takes the same parameters, so that the client's Bind
            // is accepted and Execute reports the refusal (not "bind message supplies 1
            // parameters, but prepared statement requires 0"). Types the client left open are text.
            let count = min(max(parse.parameterTypes.count, SQLLexer(parse.query).highestParameterNumber()), Int(Int16.max))
            let types = (0..<count).map { index -> UInt32 in
                index < parse.parameterTypes.count && parse.parameterTypes[index] != 0 ? parse.parameterTypes[index] : 25
            }
            var buffer = ByteBuffer()
            FrontendMessage.parse(.init(statementName: parse.statementName, query: AdminSQL.raise(error), parameterTypes: types)).encode(into: &buffer)
            return .replace(buffer)
        }
        return .replace(Self.queryMessage(AdminSQL.raise(error)))
    }

    /// What remains of an admin statement once its calls are replaced is an ordinary
    /// statement: a masked session gets it masked (or refused) like any other.
    func maskedAdminResult(_ sql: String, isError: Bool) -> (String, Bool) {
        guard !isError, masking.isMasked else { return (sql, isError) }
        switch maskedStatement(sql) {
        case .unchanged: return (sql, false)
        case .rewritten(let text): return (text, false)
        case .refused(let error): return (AdminSQL.raise(error), true)
        case .needsFreshContext(let function):
            return (AdminSQL.raise(Self.unknownFunctionError(function)), true)
        }
    }

    /// The masked form of a statement for a masked session, or its refusal.
    func maskedStatement(_ sql: String) -> MaskingRewriter.Result {
        masking.rewrite(sql, builtinFunctions: proxy.builtinFunctions.names)
    }

    static func unknownFunctionError(_ function: String) -> AdminError {
        AdminError("42501", "pgclone: function \(function)() is newer than this session's masking context; run the statement again")
    }

    /// A statement that calls a function the masking context does not know waits for a
    /// fresh context (the function may read a masked table), then is judged again.
    func pauseForFreshContext(_ frame: MessageFrame, function: String) -> FrameScanner.Verdict {
        guard !activity.hasUnsyncedExtendedMessages || internalQuery != nil else {
            // Inside an unsynced extended batch the context cannot be read: fail closed.
            return refuseStatement(frame, Self.unknownFunctionError(function))
        }
        startMaskingCheck()
        return .pauseBefore
    }

    func roleChecked(_ answer: InternalQuery) {
        guard let pending = pendingAdmin, let context else { return }
        let statement: AdminStatement
        switch pending {
        case .simple(let simple):
            statement = simple
        case .parse(let name, let parsed, let types):
            finishAdminParse(name: name, statement: parsed, types: types, caller: Self.caller(from: answer, adminRoles: proxy.configuration.adminRoles, statement: parsed))
            return
        case .bind:
            return
        }
        guard answer.error == nil, answer.rows.count == 1, answer.rows[0].count == 4,
              let role = answer.rows[0][0], let database = answer.rows[0][1]
        else {
            // E.g. an aborted transaction: the server answers the original statement as it would anyway.
            finishAdmin(sql: statement.text, isError: false, notices: [])
            return
        }
        let superuser = answer.rows[0][2] == "t"
        let member = answer.rows[0][3] == "t"
        let functionNames = statement.references.map { "pgclone.\($0.function)" }
        guard superuser || member else {
            logger.info("admin call refused", metadata: ["role": "\(role)", "functions": "\(functionNames)"])
            let roles = proxy.configuration.adminRoles
            finishAdmin(sql: AdminSQL.raise(AdminError(
                "42501", "permission denied for \(functionNames.joined(separator: ", ")): role \"\(role)\" is not a superuser\(roles.isEmpty ? "" : " or a member of an admin role")",
                hint: roles.isEmpty ? "Only superusers may call the pgclone admin API; the proxy's --admin-roles names roles whose members may too."
                    : "Members of \(roles.joined(separator: ", ")) may call the pgclone admin API.")), isError: true, notices: [])
            return
        }
        logger.info("admin call", metadata: ["role": "\(role)", "functions": "\(functionNames)"])
        let caller = AdminCaller(role: role, database: database, isSuperuser: superuser)
        let functions = proxy.adminFunctions
        let session = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        adminTask = Task {
            var notices: [String] = []
            var results: [AdminResult] = []
            var failure: AdminError?
            for reference in statement.references {
                do {
                    let arguments = ArgumentList(function: reference.function, values: reference.arguments, parameters: [])
                    results.append(try await functions.run(reference, arguments: arguments, caller: caller, notices: &notices))
                } catch let error as AdminError {
                    failure = error
                    break
                } catch {
                    failure = AdminError("XX000", "pgclone.\(reference.function) failed: \(error)")
                    break
                }
            }
            let sql = failure.map(AdminSQL.raise) ?? statement.rewritten(with: results)
            let isError = failure != nil
            let collected = notices
            eventLoop.execute {
                session.value.finishAdmin(sql: sql, isError: isError, notices: collected)
            }
        }
    }

    /// Sends the statement that stands for the admin call (its result, or the error) and goes on with the client's input.
    func finishAdmin(sql original: String, isError originalIsError: Bool, notices: [String]) {
        adminTask = nil
        pendingAdmin = nil
        let (sql, isError) = maskedAdminResult(original, isError: originalIsError)
        guard state == .relaying, let backend, let context else { return }
        writeNotices(notices, context)
        activity.clientSent(FrontendMessage.ID.query.rawValue)
        if isError { stripNextErrorContext = true }
        backend.write(Self.queryMessage(sql))
        resumeClientInput()
    }
}
