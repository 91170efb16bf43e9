import CloneEngine
import Foundation
import Logging
import Masking
import NIOCore
import PostgresWire

/// The admin API on a session: the caller's role is asked in-band, the call runs in
/// async code, and what stands for its result goes to the server in order.
extension ClientChannelHandler {
    // MARK: - Admin API

    /// Rows and error of a query the proxy ran on the client's session for itself.
    struct InternalQuery {
        enum Purpose {
            case adminRoleCheck
            case maskingContext(PolicySet)
        }
        var purpose: Purpose
        var rows: [[String?]] = []
        var error: ErrorFields?
    }

    func examineInternalAnswer(_ message: BackendMessage) -> FrameScanner.Verdict {
        switch message {
        case .dataRow(let row):
            internalQuery?.rows.append(row.values.map { $0.map { String(buffer: $0) } })
        case .errorResponse(let fields):
            internalQuery?.error = fields
        case .readyForQuery(let status):
            activity.observe(status)
            internalQueryDone = true
        case .parameterStatus, .noticeResponse, .notificationResponse:
            // Asynchronous messages belong to the client whenever they arrive.
            return .relay
        default:
            break
        }
        return .consume
    }

    /// Starts the pending admin work: a call prepared by Bind runs at once; a statement
    /// first needs the caller's role, asked once the server has answered everything before it.
    func startPendingAdmin() {
        guard let pending = pendingAdmin, internalQuery == nil, adminTask == nil else { return }
        if case .bind(let bind, let prepared) = pending {
            runBoundAdmin(bind, prepared)
            return
        }
        if activity.isQuiet {
            adminWaitingForQuiet = false
            sendInternalQuery(AdminSQL.roleCheck(adminRoles: proxy.configuration.adminRoles))
        } else {
            adminWaitingForQuiet = true
        }
    }

    func sendInternalQuery(_ sql: String, purpose: InternalQuery.Purpose = .adminRoleCheck) {
        guard let backend else { return }
        internalQuery = InternalQuery(purpose: purpose)
        backend.write(Self.queryMessage(sql))
        backend.flush()
    }

    func advanceAdmin() {
        if let answer = internalQuery {
            internalQuery = nil
            switch answer.purpose {
            case .adminRoleCheck:
                roleChecked(answer)
            case .maskingContext(let policies):
                maskingChecked(answer, policies: policies)
            }
        } else if maskingWaitingForQuiet {
            maskingWaitingForQuiet = false
            startMaskingCheck()
        } else if adminWaitingForQuiet {
            startPendingAdmin()
        }
    }


    // MARK: - Admin API over the extended protocol

    func examineParse(_ frame: MessageFrame) throws(WireError) -> FrameScanner.Verdict {
        // Hot path (extended protocol without admin calls or policies): no decoding at all.
        if adminPrepared.isEmpty, statementsRefusedWhileMasked.isEmpty, !isMaskedSession,
           !AdminStatement.mightReferenceAdminAPI(frame.payload.readableBytesView), proxy.policies.current.isEmpty {
            activity.clientSent(frame.type)
            return .relay
        }
        guard case .parse(let parse) = try FrontendMessage.decode(frame) else { return .relay }
        func relay() -> FrameScanner.Verdict {
            if adminPrepared.removeValue(forKey: parse.statementName) != nil || tracksParseAnswers {
                clientParsesInFlight += 1
            }
            if !isMaskedSession && !proxy.policies.current.isEmpty {
                statementsRefusedWhileMasked.insert(parse.statementName)
                statementsPreparedMasked[parse.statementName] = nil
            } else {
                statementsRefusedWhileMasked.remove(parse.statementName)
                if isMaskedSession { statementsPreparedMasked[parse.statementName] = masking.generation }
            }
            activity.clientSent(frame.type)
            return .relay
        }
        func masked() -> FrameScanner.Verdict {
            guard masking.isMasked else { return relay() }
            switch maskedStatement(parse.query) {
            case .unchanged:
                return relay()
            case .rewritten(let text):
                _ = relay()
                var buffer = ByteBuffer()
                FrontendMessage.parse(.init(statementName: parse.statementName, query: text, parameterTypes: parse.parameterTypes)).encode(into: &buffer)
                return .replace(buffer)
            case .refused(let error):
                adminPrepared.removeValue(forKey: parse.statementName)
                return refuseStatement(frame, error)
            case .needsFreshContext(let function):
                return pauseForFreshContext(frame, function: function)
            }
        }
        guard AdminStatement.mightReferenceAdminAPI(frame.payload.readableBytesView) else { return masked() }
        let statement: AdminStatement
        do {
            // Mentioning pgclone changes nothing about how a masked session's statement is read.
            guard let recognized = try AdminStatement.recognize(parse.query) else { return masked() }
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
        return .consumeAndPause
    }

    /// Puts the placeholder under the client's statement name on the server.
    func forwardAdminParse(name: String, prepared: AdminPrepared, declaredTypes: [UInt32]) -> FrameScanner.Verdict {
        adminPrepared[name] = prepared
        clientParsesInFlight += 1
        activity.clientSent(FrontendMessage.ID.parse.rawValue)
        var buffer = ByteBuffer()
        FrontendMessage.parse(.init(statementName: name, query: prepared.statement.placeholder, parameterTypes: declaredTypes)).encode(into: &buffer)
        return .replace(buffer)
    }

    func examineBind(_ frame: MessageFrame) throws(WireError) -> FrameScanner.Verdict {
        if isMaskedSession, case .bind(let bind) = try FrontendMessage.decode(frame), statementsRefusedWhileMasked.contains(bind.statementName) {
            // Bind a statement that fails in order instead: the client sees the error at Execute.
            activity.clientSent(frame.type)
            stripNextErrorContext = true
            internalStatementCounter += 1
            let name = "pgclone_internal_\(internalStatementCounter)"
            var buffer = ByteBuffer()
            let error = AdminError("42501", "pgclone: prepared statement \"\(bind.statementName)\" was prepared before role \"\(masking.context?.role ?? "")\" was masked by the current policies; prepare it again")
            FrontendMessage.parse(.init(statementName: name, query: AdminSQL.raise(error), parameterTypes: [])).encode(into: &buffer)
            FrontendMessage.bind(.init(portalName: bind.portalName, statementName: name, parameterFormats: [], parameters: [], resultFormats: [])).encode(into: &buffer)
            FrontendMessage.close(.statement(name)).encode(into: &buffer)
            Self.enqueueSwallow(&swallowParses, clientInFlight: clientParsesInFlight)
            Self.enqueueSwallow(&swallowCloses, clientInFlight: clientClosesInFlight)
            for type in [FrontendMessage.ID.parse, .close] { activity.clientSent(type.rawValue) }
            return .replace(buffer)
        }
        guard case .bind(let bind) = try FrontendMessage.decode(frame), let prepared = adminPrepared[bind.statementName] else {
            activity.clientSent(frame.type)
            return .relay
        }
        pendingAdmin = .bind(bind, prepared)
        return .consumeAndPause
    }

    /// Lets the client's own ParseComplete/CloseComplete through and swallows the proxy's.
    func countAnswer(_ inFlight: inout Int, swallow: inout [Int]) -> FrameScanner.Verdict {
        if let first = swallow.first {
            if first == 0 {
                swallow.removeFirst()
                return .consume
            }
            swallow[0] = first - 1
        }
        inFlight = max(0, inFlight - 1)
        return .relay
    }

    static func enqueueSwallow(_ swallow: inout [Int], clientInFlight: Int) {
        swallow.append(max(0, clientInFlight - swallow.reduce(0, +)))
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

    func finishAdminParse(name: String, statement: AdminStatement, types: [UInt32], caller: Result<AdminCaller, AdminError>) {
        pendingAdmin = nil
        guard let backend else { return }
        let prepared = AdminPrepared(statement: statement, caller: caller, parameterTypes: statement.parameterTypes(declared: types))
        if case .replace(let buffer) = forwardAdminParse(name: name, prepared: prepared, declaredTypes: types) {
            backend.write(buffer)
        }
        resumeClientInput()
    }

    /// Runs a bound admin call, then gives the client's portal the computed result:
    /// the server prepares the result statement under an internal name, binds the
    /// client's portal to it with the client's result formats, and drops the name.
    func runBoundAdmin(_ bind: FrontendMessage.Bind, _ prepared: AdminPrepared) {
        guard let context else { return }
        let functions = proxy.adminFunctions
        let session = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        logger.info("admin call", metadata: ["functions": "\(prepared.statement.references.map { "pgclone.\($0.function)" })", "protocol": "extended"])
        adminTask = Task {
            var notices: [String] = []
            let sql: String
            let isError: Bool
            do {
                let caller = try prepared.caller.get()
                let parameters = try AdminParameters.decode(bind, types: prepared.parameterTypes)
                var results: [AdminResult] = []
                for reference in prepared.statement.references {
                    let arguments = ArgumentList(function: reference.function, values: reference.arguments, parameters: parameters)
                    results.append(try await functions.run(reference, arguments: arguments, caller: caller, notices: &notices))
                }
                sql = prepared.statement.rewritten(with: results)
                isError = false
            } catch let error as AdminError {
                sql = AdminSQL.raise(error)
                isError = true
            } catch {
                sql = AdminSQL.raise(AdminError("XX000", "pgclone call failed: \(error)"))
                isError = true
            }
            let collected = notices
            eventLoop.execute {
                session.value.finishAdminBind(bind, sql: sql, isError: isError, notices: collected)
            }
        }
    }

    func finishAdminBind(_ bind: FrontendMessage.Bind, sql original: String, isError originalIsError: Bool, notices: [String]) {
        adminTask = nil
        pendingAdmin = nil
        let (sql, isError) = maskedAdminResult(original, isError: originalIsError)
        guard state == .relaying, let backend, let context else { return }
        writeNotices(notices, context)
        internalStatementCounter += 1
        let name = "pgclone_internal_\(internalStatementCounter)"
        var buffer = ByteBuffer()
        FrontendMessage.parse(.init(statementName: name, query: sql, parameterTypes: [])).encode(into: &buffer)
        FrontendMessage.bind(.init(portalName: bind.portalName, statementName: name, parameterFormats: [], parameters: [], resultFormats: bind.resultFormats)).encode(into: &buffer)
        FrontendMessage.close(.statement(name)).encode(into: &buffer)
        Self.enqueueSwallow(&swallowParses, clientInFlight: clientParsesInFlight)
        Self.enqueueSwallow(&swallowCloses, clientInFlight: clientClosesInFlight)
        for type in [FrontendMessage.ID.parse, .bind, .close] { activity.clientSent(type.rawValue) }
        if isError { stripNextErrorContext = true }
        backend.write(buffer)
        resumeClientInput()
    }

    func writeNotices(_ notices: [String], _ context: ChannelHandlerContext) {
        for notice in notices {
            var buffer = ByteBuffer()
            BackendMessage.noticeResponse(ErrorFields(severity: .notice, sqlState: "00000", message: "pgclone: \(notice)")).encode(into: &buffer)
            context.write(wrapOutboundOut(buffer), promise: nil)
        }
        context.flush()
    }

    /// Goes on with client input held while admin work ran.
    func resumeClientInput() {
        guard let backend, let context else { return }
        do {
            try clientScanner.resume(
                classify: { type, length throws(WireError) in try self.classifyClientMessage(type, length: length) },
                forward: { backend.write($0) },
                examine: { frame throws(WireError) in try self.examineClientMessage(frame) }
            )
        } catch {
            closeReason = "protocol violation by client: \(error)"
            sendFatalAndClose(ErrorFields(severity: .fatal, sqlState: "08P01", message: "invalid frontend message: \(error)"), context)
            return
        }
        backend.flush()
        if pendingAdmin != nil {
            startPendingAdmin()
        } else if readPending && backend.isWritable {
            readPending = false
            context.read()
        }
    }
}
