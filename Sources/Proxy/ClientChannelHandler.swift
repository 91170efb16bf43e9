import Logging
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
    private var pendingAdmin: AdminStatement?
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
            if pendingAdmin != nil { startAdminIfQuiet() }
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
        // Simple queries are looked at (cheaply) for admin calls once the session is up.
        if type == FrontendMessage.ID.query.rawValue, state == .relaying, length <= proxy.configuration.maximumExaminedMessageLength {
            return .examine
        }
        activity.clientSent(type)
        return .pass
    }

    private func examineClientMessage(_ frame: MessageFrame) throws(WireError) -> FrameScanner.Verdict {
        guard frame.type == FrontendMessage.ID.query.rawValue,
              AdminStatement.mightReferenceAdminAPI(frame.payload.readableBytesView),
              case .query(let sql) = try FrontendMessage.decode(frame)
        else {
            activity.clientSent(frame.type)
            return .relay
        }
        do {
            guard let statement = try AdminStatement.recognize(sql) else {
                activity.clientSent(frame.type)
                return .relay
            }
            pendingAdmin = statement
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
        case .readyForQuery(let status):
            stripNextErrorContext = false
            activity.serverSentReadyForQuery(status)
            if pendingAdmin != nil && adminWaitingForQuiet && activity.isQuiet { internalQueryDone = true }
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
    private struct InternalQuery {
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

    /// Runs the pending admin statement once the server has answered everything before it.
    private func startAdminIfQuiet() {
        guard pendingAdmin != nil, internalQuery == nil, adminTask == nil else { return }
        if activity.isQuiet {
            adminWaitingForQuiet = false
            sendInternalQuery(AdminSQL.roleCheck(adminRoles: proxy.configuration.adminRoles))
        } else {
            adminWaitingForQuiet = true
        }
    }

    private func sendInternalQuery(_ sql: String) {
        guard let backend else { return }
        internalQuery = InternalQuery()
        backend.write(Self.queryMessage(sql))
        backend.flush()
    }

    private func advanceAdmin() {
        if let answer = internalQuery {
            internalQuery = nil
            roleChecked(answer)
        } else if adminWaitingForQuiet {
            startAdminIfQuiet()
        }
    }

    private func roleChecked(_ answer: InternalQuery) {
        guard let statement = pendingAdmin, let context else { return }
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
        let functions = AdminFunctions(serviceConnInfo: proxy.configuration.serviceConnInfo)
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
    private func finishAdmin(sql: String, isError: Bool, notices: [String]) {
        adminTask = nil
        pendingAdmin = nil
        guard state == .relaying, let backend, let context else { return }
        for notice in notices {
            var buffer = ByteBuffer()
            BackendMessage.noticeResponse(ErrorFields(severity: .notice, sqlState: "00000", message: "pgclone: \(notice)")).encode(into: &buffer)
            context.write(wrapOutboundOut(buffer), promise: nil)
        }
        context.flush()
        activity.clientSent(FrontendMessage.ID.query.rawValue)
        if isError { stripNextErrorContext = true }
        backend.write(Self.queryMessage(sql))
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
            startAdminIfQuiet()
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
