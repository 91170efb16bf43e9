import CloneEngine
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

    enum State {
        case startup
        case connecting
        case authenticating
        case relaying
        case closed
    }

    let proxy: ProxyContext
    var logger: Logger
    var state = State.startup
    var startup: StartupStateMachine
    var context: ChannelHandlerContext?
    var backend: BackendChannelHandler?
    var clientScanner: FrameScanner
    var backendScanner: FrameScanner
    var activity = SessionActivity()
    var readPending = false
    var proxyKey: BackendKey?
    /// Startup packet and early client bytes waiting for the backend connection.
    var pendingToBackend = ByteBuffer()
    var quiescing = false
    var closeWhenFlushed = false

    // Admin API state: a statement waiting for its turn, an internal query
    // whose answer is for the proxy, and the running call.
    var pendingAdmin: PendingAdmin?
    /// Prepared statements (by name) whose text is an admin call; the server holds a
    /// same-shaped placeholder under the same name.
    var adminPrepared: [String: AdminPrepared] = [:]
    /// While admin statements exist: client Parse/Close not yet answered, so that the
    /// answers to the proxy's own Parse/Close can be told apart and swallowed.
    var clientParsesInFlight = 0
    var clientClosesInFlight = 0
    /// The proxy's own ParseComplete/CloseComplete to swallow: each entry is how many
    /// of the client's answers come before it (counted from the previous entry).
    var swallowParses: [Int] = []
    var swallowCloses: [Int] = []
    var internalStatementCounter = 0

    // Masking: the session's context, and a check waiting for the server to be quiet.
    var masking = SessionMasking() {
        // Plain flags for the hot path, so that classifying a message never copies the masking state.
        didSet {
            isMaskedSession = masking.isMasked
            isSuppressingRows = masking.suppressingRows
        }
    }
    var isMaskedSession = false
    /// The session's role is known, under the current policies, not to be masked.
    var isKnownUnmaskedSession: Bool {
        guard let context = masking.context else { return false }
        return !context.isMasked && context.policyVersion == proxy.policies.current.version
    }
    var isSuppressingRows = false
    /// Whether the client's Parse/Close answers are counted, so that the proxy's own can be swallowed.
    var tracksParseAnswers: Bool { !adminPrepared.isEmpty || !statementsRefusedWhileMasked.isEmpty }

    /// Statements that may not run while the session is masked: prepared while it was not
    /// masked (with policies in force), or under an older masking context (another role,
    /// other policies). Binding them would run unrewritten or outdated text: refused.
    var statementsRefusedWhileMasked: Set<String> = []
    /// Statements prepared (protocol level) while masked, with the masking generation.
    var statementsPreparedMasked: [String: Int] = [:]
    var maskingWaitingForQuiet = false
    var maskingCheckError: ErrorFields?
    var adminWaitingForQuiet = false
    var internalQuery: InternalQuery?
    var internalQueryDone = false
    var adminTask: Task<Void, Never>?
    var stripNextErrorContext = false

    /// The session's settings as the server reports them (ParameterStatus).
    var serverParameters: [String: String] = [:]
    /// The server says the current role is a superuser: never masked.
    var serverSaysSuperuser: Bool { serverParameters["is_superuser"] == "on" }

    let openedAt = ContinuousClock.now
    var bytesFromClient = 0
    var bytesFromServer = 0
    var closeReason = "client disconnected"
    /// The client sent Terminate: the server closing right after is the goodbye it asked for.
    var clientSentTerminate = false

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

    func handleStartup(_ action: StartupStateMachine.Action, context: ChannelHandlerContext) {
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

    func connectBackend(_ context: ChannelHandlerContext) {
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
        if (state == .relaying || state == .authenticating) && !clientSentTerminate {
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

    func relayClientBytes(_ buffer: ByteBuffer) {
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

    func classifyClientMessage(_ type: UInt8, length: Int) throws(WireError) -> FrameScanner.Disposition {
        guard FrontendMessage.ID(rawValue: type) != nil else {
            throw WireError(.unknownMessageType(type))
        }
        if type == FrontendMessage.ID.terminate.rawValue { clientSentTerminate = true }
        if state == .relaying, length > proxy.configuration.maximumExaminedMessageLength, !proxy.policies.current.isEmpty,
           [FrontendMessage.ID.query.rawValue, FrontendMessage.ID.parse.rawValue, FrontendMessage.ID.functionCall.rawValue].contains(type),
           !isKnownUnmaskedSession {
            // Too long to hold and read: relaying it unread could hand a masked role real values.
            throw WireError(.invalidField("statement: longer than the \(proxy.configuration.maximumExaminedMessageLength) bytes pgclone reads while masking policies are in force"), messageType: type)
        }
        // Queries and Parse are looked at (cheaply) for admin calls once the session is up;
        // Bind and Close only while admin statements are prepared.
        if state == .relaying, length <= proxy.configuration.maximumExaminedMessageLength {
            switch type {
            case FrontendMessage.ID.query.rawValue, FrontendMessage.ID.parse.rawValue:
                return .examine
            case FrontendMessage.ID.bind.rawValue where !adminPrepared.isEmpty || (isMaskedSession && !statementsRefusedWhileMasked.isEmpty)
                || (isMaskedSession && !statementsPreparedMasked.isEmpty && masking.check(proxy.policies.current) == .required):
                // (The last case: the policies changed; a driver that only binds and executes must
                // not run a statement prepared under the old ones.)
                return .examine
            case FrontendMessage.ID.functionCall.rawValue where !isKnownUnmaskedSession && !serverSaysSuperuser
                && (!proxy.policies.current.isEmpty || !proxy.policies.isReady):
                return .examine
            case FrontendMessage.ID.close.rawValue where tracksParseAnswers:
                activity.clientSent(type)
                clientClosesInFlight += 1
                return .examine
            case FrontendMessage.ID.close.rawValue where !statementsPreparedMasked.isEmpty:
                // Only to forget the statement (a driver's statement cache closes many).
                activity.clientSent(type)
                return .examine
            default:
                break
            }
        }
        activity.clientSent(type)
        return .pass
    }

    func examineClientMessage(_ frame: MessageFrame) throws(WireError) -> FrameScanner.Verdict {
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
        if frame.type == FrontendMessage.ID.bind.rawValue, isMaskedSession, masking.check(proxy.policies.current) == .required,
           case .bind(let bind) = try FrontendMessage.decode(frame), statementsPreparedMasked[bind.statementName] != nil, let context {
            // The policies changed in the middle of an extended-protocol batch: the statement may
            // carry the old rewrite and the context cannot be read now. Fail closed.
            closeReason = "masking policies changed during an extended-protocol batch"
            sendFatalAndClose(ErrorFields(severity: .fatal, sqlState: "57P01",
                                          message: "pgclone: the masking policies changed while prepared statements were in use; reconnect"), context)
            return .consume
        }
        switch frame.type {
        case FrontendMessage.ID.functionCall.rawValue:
            // The fast-path function call names a function by OID: nothing to rewrite, so masked
            // sessions may not use it; before the session's masking is known, it waits for it.
            if !proxy.policies.isReady {
                return refuseStatement(frame, AdminError("57P03", "\(proxy.policies.notReadyReason); statements of roles that could be masked are refused until it has"))
            }
            if masking.check(proxy.policies.current) == .required || maskingCheckError != nil {
                guard activity.isQuiet, internalQuery == nil, maskingCheckError == nil else {
                    return refuseStatement(frame, AdminError("42501", "pgclone: the FunctionCall protocol message cannot run before this session's masking is known"))
                }
                startMaskingCheck()
                return .pauseBefore
            }
            guard isMaskedSession else {
                activity.clientSent(frame.type)
                return .relay
            }
            return refuseStatement(frame, AdminError("42501", "pgclone: the FunctionCall protocol message is not allowed for role \"\(masking.context?.role ?? "")\", which is masked by a policy"))
        case FrontendMessage.ID.parse.rawValue:
            return try examineParse(frame)
        case FrontendMessage.ID.bind.rawValue:
            return try examineBind(frame)
        case FrontendMessage.ID.close.rawValue:
            if case .close(.statement(let name)) = try FrontendMessage.decode(frame) {
                adminPrepared[name] = nil
                statementsPreparedMasked[name] = nil
            }
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
            case .unchanged:
                activity.clientSent(frame.type)
                return .relay
            case .rewritten(let text):
                activity.clientSent(frame.type)
                return .replace(Self.queryMessage(text))
            case .refused(let error):
                return refuseStatement(frame, error)
            case .needsFreshContext(let function):
                return pauseForFreshContext(frame, function: function)
            }
        }
        do {
            guard let statement = try AdminStatement.recognize(sql) else {
                // Mentioning pgclone (in a comment, an alias, a string) changes nothing about how
                // a masked session's statement is read.
                if masking.isMasked {
                    switch maskedStatement(sql) {
                    case .unchanged: break
                    case .rewritten(let text):
                        activity.clientSent(frame.type)
                        return .replace(Self.queryMessage(text))
                    case .refused(let error):
                        return refuseStatement(frame, error)
                    case .needsFreshContext(let function):
                        return pauseForFreshContext(frame, function: function)
                    }
                }
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

    func classifyServerMessage(_ type: UInt8) throws(WireError) -> FrameScanner.Disposition {
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
        if id == .parameterStatus {
            // Rare, and what the server reports about the session (is_superuser, client_encoding,
            // standard_conforming_strings) decides how its statements are read.
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

    func examineServerMessage(_ frame: MessageFrame) throws(WireError) -> FrameScanner.Verdict {
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
        case .parameterStatus(let name, let value):
            serverParameters[name] = value
            if state == .relaying { masking.noteParameter(name) }
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

    // MARK: - Closing

    /// Graceful shutdown of an idle session: tell the client why, end the server session cleanly.
    func terminateIdleSession(_ context: ChannelHandlerContext) {
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

    func sendFatalAndClose(_ fields: ErrorFields, _ context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.errorResponse(fields)), promise: nil)
        flushAndClose(context)
    }

    /// Closes after everything already written has reached the socket.
    func flushAndClose(_ context: ChannelHandlerContext) {
        guard state != .closed else { return }
        state = .closed
        backend?.close()
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(ByteBuffer())).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    func close(_ context: ChannelHandlerContext) {
        state = .closed
        backend?.close()
        context.close(promise: nil)
    }

    func logClosed() {
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
