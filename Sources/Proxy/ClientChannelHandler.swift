import Foundation
import Logging
import Masking
import NIOCore
import NIOPosix
import NIOSSL
import PostgresWire

/// One client session: the startup phase, then a relay to its own backend connection.
///
/// Sessions that need no rewriting pay only for a header walk: bytes move as
/// slices of the read buffer, written to the other side and flushed once per
/// read burst. The backend's cancel key is replaced by a proxy-issued one, and
/// SCRAM-SHA-256-PLUS is withheld because channel binding cannot survive a
/// proxy that terminates TLS (the client would bind to the proxy's certificate).
final class ClientChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        case startup
        case connecting
        case authenticating
        case relaying
        case closed
    }

    private let proxy: ProxyContext
    private var logger: Logger
    private var state = State.startup
    private var startup: StartupStateMachine
    private var context: ChannelHandlerContext?
    private var backend: BackendChannelHandler?
    private var clientScanner: FrameScanner
    private var backendScanner: FrameScanner
    private var activity = SessionActivity()
    private var readPending = false
    private var proxyKey: BackendKey?
    /// Startup packet and early client bytes waiting for the backend connection.
    private var pendingToBackend = ByteBuffer()
    private var quiescing = false
    private var closeWhenFlushed = false

    // Admin API state: a statement waiting for its turn, an internal query
    // whose answer is for the proxy, and the running call.
    private var pendingAdmin: PendingAdmin?
    /// Prepared statements (by name) whose text is an admin call; the server holds a
    /// same-shaped placeholder under the same name.
    private var adminPrepared: [String: AdminPrepared] = [:]
    /// While admin statements exist: client Parse/Close not yet answered, so that the
    /// answers to the proxy's own Parse/Close can be told apart and swallowed.
    private var clientParsesInFlight = 0
    private var clientClosesInFlight = 0
    /// The proxy's own ParseComplete/CloseComplete to swallow: each entry is how many
    /// of the client's answers come before it (counted from the previous entry).
    private var swallowParses: [Int] = []
    private var swallowCloses: [Int] = []
    private var internalStatementCounter = 0

    // Masking: the session's context, and a check waiting for the server to be quiet.
    private var masking = SessionMasking() {
        // Plain flags for the hot path, so that classifying a message never copies the masking state.
        didSet {
            isMaskedSession = masking.isMasked
            isSuppressingRows = masking.suppressingRows
        }
    }
    private var isMaskedSession = false
    private var isSuppressingRows = false
    /// Whether the client's Parse/Close answers are counted, so that the proxy's own can be swallowed.
    private var tracksParseAnswers: Bool { !adminPrepared.isEmpty || !statementsPreparedUnmasked.isEmpty }

    /// Statements prepared while the session was not masked (with policies in force): if the
    /// session becomes masked, binding them would run unrewritten text, so it is refused.
    private var statementsPreparedUnmasked: Set<String> = []
    private var maskingWaitingForQuiet = false
    private var maskingCheckError: ErrorFields?
    private var adminWaitingForQuiet = false
    private var internalQuery: InternalQuery?
    private var internalQueryDone = false
    private var adminTask: Task<Void, Never>?
    private var stripNextErrorContext = false

    private let openedAt = ContinuousClock.now
    private var bytesFromClient = 0
    private var bytesFromServer = 0
    private var closeReason = "client disconnected"

    init(proxy: ProxyContext, connectionID: Int) {
        self.proxy = proxy
        self.logger = proxy.logger
        self.logger[metadataKey: "connection.id"] = "\(connectionID)"
        self.startup = StartupStateMachine(tlsAvailable: proxy.clientTLS != nil)
        self.clientScanner = FrameScanner(maximumExaminedLength: proxy.configuration.maximumExaminedMessageLength)
        self.backendScanner = FrameScanner()
    }

    // MARK: - Client channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelActive(context: ChannelHandlerContext) {
        if let peer = context.channel.remoteAddress {
            logger[metadataKey: "peer"] = "\(peer)"
        }
        proxy.sessions.add(context.channel)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        switch state {
        case .startup:
            bytesFromClient += buffer.readableBytes
            handleStartup(startup.bytesReceived(buffer), context: context)
        case .connecting:
            bytesFromClient += buffer.readableBytes
            relayClientBytes(buffer)
        case .authenticating, .relaying:
            bytesFromClient += buffer.readableBytes
            relayClientBytes(buffer)
        case .closed:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        backend?.flush()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if state != .closed {
            state = .closed
        }
        backend?.close()
        backend = nil
        adminTask?.cancel()
        if let proxyKey { proxy.cancelRegistry.unregister(proxyKey) }
        proxy.sessions.remove(context.channel)
        logClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if case .closed = state { return }
        closeReason = "client connection error: \(error)"
        logger.debug("client connection error", metadata: ["error": "\(error)"])
        close(context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is QuiesceEvent {
            quiescing = true
            switch state {
            case .startup, .connecting:
                closeReason = "proxy shutting down"
                close(context)
            case .authenticating:
                break // closes at its first ReadyForQuery
            case .relaying:
                if activity.isIdle { terminateIdleSession(context) }
            case .closed:
                break
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            backend?.resumeReadingIfPending()
        }
        context.fireChannelWritabilityChanged()
    }

    /// Reads from the client only while the backend can take more.
    func read(context: ChannelHandlerContext) {
        switch state {
        case .startup:
            context.read()
        case .connecting:
            readPending = true
        case .authenticating, .relaying:
            if backend?.isWritable ?? false, !clientScanner.isPaused {
                context.read()
            } else {
                readPending = true
            }
        case .closed:
            break
        }
    }

    // MARK: - Startup

    private func handleStartup(_ action: StartupStateMachine.Action, context: ChannelHandlerContext) {
        switch action {
        case .wait:
            return
        case .acceptTLS:
            var answer = ByteBuffer()
            answer.writeInteger(UInt8(ascii: "S"))
            context.writeAndFlush(wrapOutboundOut(answer), promise: nil)
            do {
                let handler = NIOSSLServerHandler(context: proxy.clientTLS!)
                try context.pipeline.syncOperations.addHandler(handler, position: .first)
                logger[metadataKey: "tls"] = "on"
            } catch {
                closeReason = "could not start TLS: \(error)"
                close(context)
            }
        case .refuseEncryption:
            var answer = ByteBuffer()
            answer.writeInteger(UInt8(ascii: "N"))
            context.writeAndFlush(wrapOutboundOut(answer), promise: nil)
            handleStartup(startup.bytesReceived(ByteBuffer()), context: context)
        case .cancel(let key):
            closeReason = "cancel request"
            if let backendKey = proxy.cancelRegistry.backend(for: key) {
                CancelForwarder.send(backendKey, to: proxy.configuration.backend, on: context.eventLoop)
            }
            close(context)
        case .connectBackend(var packet, let user, let database, let applicationName, var leftover):
            logger[metadataKey: "user"] = "\(user)"
            logger[metadataKey: "database"] = "\(database)"
            if let applicationName { logger[metadataKey: "application_name"] = "\(applicationName)" }
            state = .connecting
            pendingToBackend.writeBuffer(&packet)
            pendingToBackend.writeBuffer(&leftover)
            connectBackend(context)
        case .reject(let fields):
            closeReason = "rejected at startup: \(fields.message ?? "")"
            sendFatalAndClose(fields, context)
        }
    }

    private func connectBackend(_ context: ChannelHandlerContext) {
        let endpoint = proxy.configuration.backend
        let session = NIOLoopBound(self, eventLoop: context.eventLoop)
        let tlsContext = proxy.backendTLS
        var bootstrap = ClientBootstrap(group: context.eventLoop)
            .connectTimeout(.nanoseconds(Int64(proxy.configuration.backendConnectTimeout.components.seconds) * 1_000_000_000))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = BackendChannelHandler(
                        session: session.value,
                        tlsContext: tlsContext,
                        tlsRequired: endpoint.tlsMode.requiresTLS,
                        serverHostname: endpoint.serverHostname)
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
        let connected: EventLoopFuture<any Channel>
        switch endpoint.address {
        case .tcp(let host, let port):
            bootstrap = bootstrap.channelOption(.socketOption(.tcp_nodelay), value: 1)
            connected = bootstrap.connect(host: host, port: port)
        case .unixSocket(let path):
            connected = bootstrap.connect(unixDomainSocketPath: path)
        }
        connected.whenFailure { error in
            session.value.backendFailed(reason: "\(error)")
        }
    }

    // MARK: - Backend events (same event loop)

    var clientIsWritable: Bool { context?.channel.isWritable ?? false }

    func backendReady(_ backend: BackendChannelHandler) {
        guard state == .connecting, let context else {
            backend.close()
            return
        }
        self.backend = backend
        state = .authenticating
        let pending = pendingToBackend
        pendingToBackend = ByteBuffer()
        // The startup packet goes verbatim; anything the client sent after it is
        // scanned like every later client byte.
        let startupLength = Int(pending.getInteger(at: pending.readerIndex, as: Int32.self)!)
        backend.write(pending.getSlice(at: pending.readerIndex, length: startupLength)!)
        let rest = pending.getSlice(at: pending.readerIndex + startupLength, length: pending.readableBytes - startupLength)!
        if rest.readableBytes > 0 { relayClientBytes(rest) }
        backend.flush()
        if readPending {
            readPending = false
            context.read()
        }
    }

    func backendRead(_ buffer: ByteBuffer) {
        guard let context else { return }
        bytesFromServer += buffer.readableBytes
        do {
            try backendScanner.process(
                buffer,
                classify: { type, _ throws(WireError) in try self.classifyServerMessage(type) },
                forward: { context.write(self.wrapOutboundOut($0), promise: nil) },
                examine: { frame throws(WireError) in try self.examineServerMessage(frame) }
            )
            if internalQueryDone {
                internalQueryDone = false
                advanceAdmin()
            }
        } catch {
            closeReason = "protocol violation by server: \(error)"
            logger.warning("protocol violation by server", metadata: ["error": "\(error)"])
            context.write(wrapOutboundOut(.errorResponse(ErrorFields(
                severity: .fatal, sqlState: "08P01", message: "pgclone: invalid message from server: \(error)"))), promise: nil)
            flushAndClose(context)
        }
    }

    func backendReadComplete() {
        guard let context else { return }
        context.flush()
        if closeWhenFlushed {
            closeWhenFlushed = false
            terminateIdleSession(context)
        }
    }

    func backendBecameWritable() {
        guard readPending, let context else { return }
        readPending = false
        context.read()
    }

    func backendClosed() {
        guard state != .closed, let context else { return }
        if state == .relaying || state == .authenticating {
            closeReason = "server closed the connection"
        }
        flushAndClose(context)
    }

    func backendFailed(reason: String) {
        guard state != .closed, let context else { return }
        switch state {
        case .connecting:
            closeReason = "could not connect to server"
            logger.warning("could not connect to the backend", metadata: ["backend": "\(proxy.configuration.backend)", "error": "\(reason)"])
            sendFatalAndClose(ErrorFields(
                severity: .fatal, sqlState: "08006",
                message: "pgclone could not connect to the PostgreSQL server at \(proxy.configuration.backend): \(reason)"), context)
        default:
            closeReason = "server connection error: \(reason)"
            context.write(wrapOutboundOut(.errorResponse(ErrorFields(
                severity: .fatal, sqlState: "08006", message: "pgclone lost the connection to the PostgreSQL server: \(reason)"))), promise: nil)
            flushAndClose(context)
        }
    }

    // MARK: - Relay

    private func relayClientBytes(_ buffer: ByteBuffer) {
        guard let backend else {
            // Still connecting: hold a little; a well-behaved client sends nothing here.
            var buffer = buffer
            pendingToBackend.writeBuffer(&buffer)
            if pendingToBackend.readableBytes > WireLimits.maximumStartupPacketLength * 2, let context {
                closeReason = "client sent data before authentication"
                sendFatalAndClose(StartupStateMachine.violation("unexpected data before authentication"), context)
            }
            return
        }
        do {
            try clientScanner.process(
                buffer,
                classify: { type, length throws(WireError) in try self.classifyClientMessage(type, length: length) },
                forward: { backend.write($0) },
                examine: { frame throws(WireError) in try self.examineClientMessage(frame) }
            )
            if pendingAdmin != nil { startPendingAdmin() }
        } catch {
            guard let context else { return }
            closeReason = "protocol violation by client: \(error)"
            logger.info("protocol violation by client", metadata: ["error": "\(error)"])
            sendFatalAndClose(ErrorFields(severity: .fatal, sqlState: "08P01", message: "invalid frontend message: \(error)"), context)
        }
    }

    private func classifyClientMessage(_ type: UInt8, length: Int) throws(WireError) -> FrameScanner.Disposition {
        guard FrontendMessage.ID(rawValue: type) != nil else {
            throw WireError(.unknownMessageType(type))
        }
        // Queries and Parse are looked at (cheaply) for admin calls once the session is up;
        // Bind and Close only while admin statements are prepared.
        if state == .relaying, length <= proxy.configuration.maximumExaminedMessageLength {
            switch type {
            case FrontendMessage.ID.query.rawValue, FrontendMessage.ID.parse.rawValue:
                return .examine
            case FrontendMessage.ID.bind.rawValue where !adminPrepared.isEmpty || (isMaskedSession && !statementsPreparedUnmasked.isEmpty):
                return .examine
            case FrontendMessage.ID.functionCall.rawValue where isMaskedSession:
                return .examine
            case FrontendMessage.ID.close.rawValue where tracksParseAnswers:
                activity.clientSent(type)
                clientClosesInFlight += 1
                return .examine
            default:
                break
            }
        }
        activity.clientSent(type)
        return .pass
    }

    private func examineClientMessage(_ frame: MessageFrame) throws(WireError) -> FrameScanner.Verdict {
        if frame.type == FrontendMessage.ID.query.rawValue || frame.type == FrontendMessage.ID.parse.rawValue,
           let verdict = maskingVerdict(for: frame, text: frame.payload.readableBytesView) {
            return verdict
        }
        // A Bind of a statement prepared while unmasked is judged on a fresh context when one is due
        // (RESET ROLE may have made the session unmasked again); mid-batch the last context stands.
        if frame.type == FrontendMessage.ID.bind.rawValue, isMaskedSession, masking.check(proxy.policies.current) != .none,
           activity.isQuiet, internalQuery == nil {
            startMaskingCheck()
            return .pauseBefore
        }
        switch frame.type {
        case FrontendMessage.ID.functionCall.rawValue:
            // The fast-path function call names a function by OID: nothing to rewrite, so masked sessions may not use it.
            return refuseStatement(frame, AdminError("42501", "pgclone: the FunctionCall protocol message is not allowed for role \"\(masking.context?.role ?? "")\", which is masked by a policy"))
        case FrontendMessage.ID.parse.rawValue:
            return try examineParse(frame)
        case FrontendMessage.ID.bind.rawValue:
            return try examineBind(frame)
        case FrontendMessage.ID.close.rawValue:
            if case .close(.statement(let name)) = try FrontendMessage.decode(frame) { adminPrepared[name] = nil }
            return .relay
        default:
            break
        }
        guard frame.type == FrontendMessage.ID.query.rawValue,
              masking.isMasked || AdminStatement.mightReferenceAdminAPI(frame.payload.readableBytesView),
              case .query(let sql) = try FrontendMessage.decode(frame)
        else {
            activity.clientSent(frame.type)
            return .relay
        }
        if masking.isMasked && !AdminStatement.mightReferenceAdminAPI(frame.payload.readableBytesView) {
            switch maskedStatement(sql) {
            case .success(nil):
                activity.clientSent(frame.type)
                return .relay
            case .success(let text?):
                activity.clientSent(frame.type)
                return .replace(Self.queryMessage(text))
            case .failure(let error):
                return refuseStatement(frame, error)
            }
        }
        do {
            guard let statement = try AdminStatement.recognize(sql) else {
                activity.clientSent(frame.type)
                return .relay
            }
            pendingAdmin = .simple(statement)
            return .consumeAndPause
        } catch {
            // A malformed admin call fails in the server's own error path, in order.
            activity.clientSent(frame.type)
            stripNextErrorContext = true
            return .replace(Self.queryMessage(AdminSQL.raise(error)))
        }
    }

    static func queryMessage(_ sql: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        FrontendMessage.query(sql).encode(into: &buffer)
        return buffer
    }

    private func classifyServerMessage(_ type: UInt8) throws(WireError) -> FrameScanner.Disposition {
        guard let id = BackendMessage.ID(rawValue: type) else {
            throw WireError(.unknownMessageType(type))
        }
        if internalQuery != nil { return .examine }
        if stripNextErrorContext && id == .errorResponse { return .examine }
        if (!swallowParses.isEmpty || !swallowCloses.isEmpty || tracksParseAnswers)
            && (id == .parseComplete || id == .closeComplete) {
            return .examine
        }
        if isMaskedSession && (id == .rowDescription || (isSuppressingRows && (id == .dataRow || id == .commandComplete || id == .errorResponse))) {
            return .examine
        }
        if id == .parameterStatus && state == .relaying && !proxy.policies.current.isEmpty {
            return .examine
        }
        switch id {
        case .readyForQuery:
            return .examine
        case .authentication, .backendKeyData:
            return state == .authenticating ? .examine : .pass
        default:
            return .pass
        }
    }

    private func examineServerMessage(_ frame: MessageFrame) throws(WireError) -> FrameScanner.Verdict {
        let message = try BackendMessage.decode(frame)
        if internalQuery != nil {
            return examineInternalAnswer(message)
        }
        switch message {
        case .errorResponse(var fields) where stripNextErrorContext:
            // The error raised for an admin call: drop the PL/pgSQL context and source location.
            fields.fields.removeAll { [UInt8(ascii: "W"), UInt8(ascii: "F"), UInt8(ascii: "L"), UInt8(ascii: "R")].contains($0.code) }
            var replacement = ByteBuffer()
            BackendMessage.errorResponse(fields).encode(into: &replacement)
            return .replace(replacement)
        case .rowDescription(let description):
            guard let refusal = masking.violation(description) else { return .relay }
            // Last line of defence: the rewrite missed a masked column; drop the rows.
            logger.warning("masked column in a result refused", metadata: ["role": "\(masking.context?.role ?? "")"])
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
        case .parameterStatus(let name, _):
            masking.noteParameter(name)
            return .relay
        case .parseComplete:
            return countAnswer(&clientParsesInFlight, swallow: &swallowParses)
        case .closeComplete:
            return countAnswer(&clientClosesInFlight, swallow: &swallowCloses)
        case .readyForQuery(let status):
            stripNextErrorContext = false
            masking.suppressingRows = false
            // After a Sync nothing of the batch is outstanding (an error skips the rest).
            clientParsesInFlight = 0
            clientClosesInFlight = 0
            swallowParses = []
            swallowCloses = []
            activity.serverSentReadyForQuery(status)
            if (pendingAdmin != nil && adminWaitingForQuiet || maskingWaitingForQuiet) && activity.isQuiet { internalQueryDone = true }
            if state == .authenticating {
                state = .relaying
                logger.info("session opened")
            }
            if quiescing && activity.isIdle { closeWhenFlushed = true }
            return .relay
        case .authentication(.sasl(let mechanisms)) where mechanisms.contains("SCRAM-SHA-256-PLUS"):
            var replacement = ByteBuffer()
            BackendMessage.authentication(.sasl(mechanisms: mechanisms.filter { $0 != "SCRAM-SHA-256-PLUS" }))
                .encode(into: &replacement)
            return .replace(replacement)
        case .backendKeyData(let serverKey):
            if let old = proxyKey { proxy.cancelRegistry.unregister(old) }
            let key = proxy.cancelRegistry.register(backend: serverKey)
            proxyKey = key
            var replacement = ByteBuffer()
            BackendMessage.backendKeyData(key).encode(into: &replacement)
            return .replace(replacement)
        default:
            return .relay
        }
    }

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

    private func examineInternalAnswer(_ message: BackendMessage) -> FrameScanner.Verdict {
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
    private func startPendingAdmin() {
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

    private func sendInternalQuery(_ sql: String, purpose: InternalQuery.Purpose = .adminRoleCheck) {
        guard let backend else { return }
        internalQuery = InternalQuery(purpose: purpose)
        backend.write(Self.queryMessage(sql))
        backend.flush()
    }

    private func advanceAdmin() {
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

    // MARK: - Masking

    private func startMaskingCheck() {
        guard internalQuery == nil else { return }
        let policies = proxy.policies.current
        if activity.isQuiet {
            sendInternalQuery(MaskingContext.query(for: policies), purpose: .maskingContext(policies))
        } else {
            maskingWaitingForQuiet = true
        }
    }

    private func maskingChecked(_ answer: InternalQuery, policies: PolicySet) {
        if let error = answer.error {
            // E.g. an aborted transaction: nothing but ending it may run until masking is known again.
            maskingCheckError = error
        } else {
            maskingCheckError = nil
            let context = MaskingContext.from(rows: answer.rows, policies: policies)
            if context.isMasked != masking.isMasked || context.role != masking.context?.role {
                logger.debug("masking context", metadata: ["role": "\(context.role)", "masked.tables": "\(context.tables.count)"])
            }
            masking.update(context)
        }
        resumeClientInput()
    }

    /// Decides what happens to a statement under masking; `nil` means "go on as usual".
    private func maskingVerdict(for frame: MessageFrame, text: ByteBufferView) -> FrameScanner.Verdict? {
        let policies = proxy.policies.current
        guard !policies.isEmpty else { return nil }
        let check = masking.check(policies)
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
    private func refuseStatement(_ frame: MessageFrame, _ error: AdminError) -> FrameScanner.Verdict {
        stripNextErrorContext = true
        activity.clientSent(frame.type)
        if frame.type == FrontendMessage.ID.parse.rawValue, case .parse(let parse)? = try? FrontendMessage.decode(frame) {
            var buffer = ByteBuffer()
            FrontendMessage.parse(.init(statementName: parse.statementName, query: AdminSQL.raise(error), parameterTypes: [])).encode(into: &buffer)
            return .replace(buffer)
        }
        return .replace(Self.queryMessage(AdminSQL.raise(error)))
    }

    /// What remains of an admin statement once its calls are replaced is an ordinary
    /// statement: a masked session gets it masked (or refused) like any other.
    private func maskedAdminResult(_ sql: String, isError: Bool) -> (String, Bool) {
        guard !isError, masking.isMasked else { return (sql, isError) }
        switch maskedStatement(sql) {
        case .success(let text): return (text ?? sql, false)
        case .failure(let error): return (AdminSQL.raise(error), true)
        }
    }

    /// The masked form of a statement for a masked session, or its refusal.
    private func maskedStatement(_ sql: String) -> Result<String?, AdminError> {
        switch masking.rewrite(sql) {
        case .unchanged: return .success(nil)
        case .rewritten(let text): return .success(text)
        case .refused(let error): return .failure(error)
        }
    }

    private func roleChecked(_ answer: InternalQuery) {
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
        let caller = AdminCaller(role: role, database: database)
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
    private func finishAdmin(sql original: String, isError originalIsError: Bool, notices: [String]) {
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

    // MARK: - Admin API over the extended protocol

    private func examineParse(_ frame: MessageFrame) throws(WireError) -> FrameScanner.Verdict {
        guard case .parse(let parse) = try FrontendMessage.decode(frame) else { return .relay }
        func relay() -> FrameScanner.Verdict {
            if adminPrepared.removeValue(forKey: parse.statementName) != nil || tracksParseAnswers {
                clientParsesInFlight += 1
            }
            if !isMaskedSession && !proxy.policies.current.isEmpty {
                statementsPreparedUnmasked.insert(parse.statementName)
            } else {
                statementsPreparedUnmasked.remove(parse.statementName)
            }
            activity.clientSent(frame.type)
            return .relay
        }
        guard AdminStatement.mightReferenceAdminAPI(frame.payload.readableBytesView) else {
            guard masking.isMasked else { return relay() }
            switch maskedStatement(parse.query) {
            case .success(nil):
                return relay()
            case .success(let text?):
                _ = relay()
                var buffer = ByteBuffer()
                FrontendMessage.parse(.init(statementName: parse.statementName, query: text, parameterTypes: parse.parameterTypes)).encode(into: &buffer)
                return .replace(buffer)
            case .failure(let error):
                adminPrepared.removeValue(forKey: parse.statementName)
                return refuseStatement(frame, error)
            }
        }
        let statement: AdminStatement
        do {
            guard let recognized = try AdminStatement.recognize(parse.query) else { return relay() }
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
    private func forwardAdminParse(name: String, prepared: AdminPrepared, declaredTypes: [UInt32]) -> FrameScanner.Verdict {
        adminPrepared[name] = prepared
        clientParsesInFlight += 1
        activity.clientSent(FrontendMessage.ID.parse.rawValue)
        var buffer = ByteBuffer()
        FrontendMessage.parse(.init(statementName: name, query: prepared.statement.placeholder, parameterTypes: declaredTypes)).encode(into: &buffer)
        return .replace(buffer)
    }

    private func examineBind(_ frame: MessageFrame) throws(WireError) -> FrameScanner.Verdict {
        if isMaskedSession, case .bind(let bind) = try FrontendMessage.decode(frame), statementsPreparedUnmasked.contains(bind.statementName) {
            // Bind a statement that fails in order instead: the client sees the error at Execute.
            activity.clientSent(frame.type)
            stripNextErrorContext = true
            internalStatementCounter += 1
            let name = "pgclone_internal_\(internalStatementCounter)"
            var buffer = ByteBuffer()
            let error = AdminError("42501", "pgclone: prepared statement \"\(bind.statementName)\" was prepared before role \"\(masking.context?.role ?? "")\" was masked by a policy; prepare it again")
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
    private func countAnswer(_ inFlight: inout Int, swallow: inout [Int]) -> FrameScanner.Verdict {
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

    private static func enqueueSwallow(_ swallow: inout [Int], clientInFlight: Int) {
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
        return .success(AdminCaller(role: role, database: database))
    }

    private func finishAdminParse(name: String, statement: AdminStatement, types: [UInt32], caller: Result<AdminCaller, AdminError>) {
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
    private func runBoundAdmin(_ bind: FrontendMessage.Bind, _ prepared: AdminPrepared) {
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

    private func finishAdminBind(_ bind: FrontendMessage.Bind, sql original: String, isError originalIsError: Bool, notices: [String]) {
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

    private func writeNotices(_ notices: [String], _ context: ChannelHandlerContext) {
        for notice in notices {
            var buffer = ByteBuffer()
            BackendMessage.noticeResponse(ErrorFields(severity: .notice, sqlState: "00000", message: "pgclone: \(notice)")).encode(into: &buffer)
            context.write(wrapOutboundOut(buffer), promise: nil)
        }
        context.flush()
    }

    /// Goes on with client input held while admin work ran.
    private func resumeClientInput() {
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

    // MARK: - Closing

    /// Graceful shutdown of an idle session: tell the client why, end the server session cleanly.
    private func terminateIdleSession(_ context: ChannelHandlerContext) {
        closeReason = "proxy shutting down"
        if let backend {
            var terminate = ByteBuffer()
            FrontendMessage.terminate.encode(into: &terminate)
            backend.write(terminate)
            backend.flush()
        }
        sendFatalAndClose(ErrorFields(
            severity: .fatal, sqlState: "57P01",
            message: "terminating connection due to administrator command",
            detail: "The pgclone proxy is shutting down."), context)
    }

    private func sendFatalAndClose(_ fields: ErrorFields, _ context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.errorResponse(fields)), promise: nil)
        flushAndClose(context)
    }

    /// Closes after everything already written has reached the socket.
    private func flushAndClose(_ context: ChannelHandlerContext) {
        guard state != .closed else { return }
        state = .closed
        backend?.close()
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(ByteBuffer())).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    private func close(_ context: ChannelHandlerContext) {
        state = .closed
        backend?.close()
        context.close(promise: nil)
    }

    private func logClosed() {
        let elapsed = ContinuousClock.now - openedAt
        let milliseconds = elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
        logger.info("session closed", metadata: [
            "reason": "\(closeReason)",
            "duration_ms": "\(milliseconds)",
            "bytes.from_client": "\(bytesFromClient)",
            "bytes.from_server": "\(bytesFromServer)",
        ])
    }
}
