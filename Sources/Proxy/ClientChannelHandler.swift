import CloneEngine
import CoreMetrics
import Foundation
import Logging
import Masking
import NIOCore
import NIOPosix
import NIOSSL
import PostgresWire
import SQLParser
import Synchronization

/// One client session's channel: bytes in, one `SessionStateMachine` call per message, its
/// decisions and effects run here. The machine decides; this handler does I/O.
///
/// Sessions that need no rewriting pay only for a header walk: bytes move as slices of the
/// read buffer, written to the other side and flushed once per read burst. Reads are gated
/// by the other side's writability.
final class ClientChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let proxy: ProxyContext
    var logger: Logger
    var machine: SessionStateMachine
    var context: ChannelHandlerContext?
    var backend: BackendChannelHandler?
    var clientScanner: FrameScanner
    var backendScanner: FrameScanner
    var readPending = false
    var clientKey: BackendKey?
    /// Startup packet and early client bytes waiting for the backend connection.
    var pendingToBackend = ByteBuffer()
    var closeWhenFlushed = false
    var adminTask: Task<Void, Never>? {
        didSet { adminCalls.running(adminTask) }
    }
    /// Lets a CancelRequest on another connection reach `adminTask`.
    let adminCalls = AdminCallCanceller()
    /// Closes the client if startup and authentication take too long.
    var loginTimer: Scheduled<Void>?
    /// What the message being held took from the proxy's buffer budget.
    var reservedBytes = 0
    /// The policy version the machine last saw (observing costs a lock: once per read burst).
    var observedPolicyVersion = -1
    /// Opens the server connection instead of a socket (tests put an EmbeddedChannel there);
    /// it must end in `backendReady` or `backendFailed`.
    var backendConnector: ((ClientChannelHandler, ChannelHandlerContext) -> Void)?

    let openedAt = ContinuousClock.now
    var bytesFromClient = 0
    var bytesFromServer = 0
    /// What the console shows about this session.
    let info: SessionInfo
    /// What was last added to the proxy's statistics (they take deltas once per read burst).
    var reported = Reported()
    /// A request has been in flight since then (for the statement time).
    var busySince: ContinuousClock.Instant?
    /// The state last written to `info`.
    var shownState = "login"
    /// The live settings generation the machine last saw.
    var observedLiveGeneration = 0

    struct Reported {
        var requests = 0
        var transactions = 0
        var bytesFromClient = 0
        var bytesFromServer = 0
        var counters = SessionCounters()
        var cacheHits = 0
        var cacheMisses = 0
    }
    var closeReason = "client disconnected"
    var database = ""

    init(proxy: ProxyContext, connectionID: Int) {
        self.proxy = proxy
        self.logger = proxy.logger
        self.logger[metadataKey: "connection.id"] = "\(connectionID)"
        self.info = SessionInfo(id: connectionID)
        self.machine = SessionStateMachine(tlsAvailable: proxy.clientTLS != nil, adminRoles: proxy.adminRoles,
                                           maximumExaminedLength: proxy.configuration.maximumExaminedMessageLength)
        self.clientScanner = FrameScanner(maximumExaminedLength: proxy.configuration.maximumExaminedMessageLength)
        self.backendScanner = FrameScanner()
    }

    // MARK: - Client channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    /// The context holds the handler and the handler its context: the cycle is broken here, or
    /// every session (its machine, buffers, logger and pipeline) would outlive its connection.
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        loginTimer?.cancel()
        loginTimer = nil
        backend = nil
        backendConnector = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        if let peer = context.channel.remoteAddress {
            logger[metadataKey: "peer"] = "\(peer)"
            info.update { state in
                state.clientAddress = peer.ipAddress ?? peer.pathname ?? "\(peer)"
                state.clientPort = peer.port ?? 0
            }
        }
        let open = proxy.sessions.add(context.channel, info: info)
        context.fireChannelActive()
        if open > proxy.configuration.maximumClientConnections {
            closeReason = "too many clients"
            sendFatalAndClose(ErrorFields(severity: .fatal, sqlState: "53300", message: "sorry, too many clients already",
                                          detail: "pgclone accepts at most \(proxy.configuration.maximumClientConnections) client connections (--max-client-conn)."), context)
            return
        }
        // A client that does not finish startup and authentication in time is closed, as
        // PostgreSQL does: sockets that never send a startup packet are not kept forever.
        let session = NIOLoopBound(self, eventLoop: context.eventLoop)
        let timeout = proxy.configuration.clientLoginTimeout
        loginTimer = context.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)) {
            let handler = session.value
            guard handler.machine.phase != .ready, handler.machine.phase != .closed, let context = handler.context else { return }
            handler.closeReason = "startup and authentication did not finish in time"
            handler.sendFatalAndClose(ErrorFields(severity: .fatal, sqlState: "57014", message: "canceling authentication due to timeout",
                                                  detail: "pgclone closes a client that has not finished startup and authentication within \(timeout.components.seconds) seconds (--client-login-timeout)."), context)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        bytesFromClient += buffer.readableBytes
        switch machine.phase {
        case .startup:
            handleStartup(machine.startupBytes(buffer), context: context)
        case .connecting, .authenticating, .ready:
            relayClientBytes(buffer)
        case .closed:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        backend?.flush()
        if busySince == nil, machine.phase == .ready, !machine.activity.isQuiet {
            busySince = .now
            show("active", requestTime: Date())
        }
        context.fireChannelReadComplete()
    }

    /// Adds what the session did since the last report to the proxy's statistics and metrics:
    /// once per read burst that finished something, never per message.
    func reportStatistics() {
        let activity = machine.activity
        let requests = activity.answeredRequests - reported.requests
        let fromClient = bytesFromClient - reported.bytesFromClient
        let fromServer = bytesFromServer - reported.bytesFromServer
        guard requests > 0 || fromClient > 0 || fromServer > 0 || machine.counters != reported.counters else { return }
        var totals = DatabaseStats.Totals()
        totals.requests = requests
        totals.transactions = activity.endedTransactions - reported.transactions
        totals.bytesReceived = fromClient
        totals.bytesSent = fromServer
        totals.maskedStatements = machine.counters.maskedStatements - reported.counters.maskedStatements
        totals.rewrites = machine.counters.rewrites - reported.counters.rewrites
        totals.refusals = machine.counters.totalRefusals - reported.counters.totalRefusals
        let metrics = proxy.metrics
        if activity.isQuiet, let since = busySince {
            let elapsed = ContinuousClock.now - since
            let nanoseconds = elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000
            totals.requestMicroseconds = Int(nanoseconds / 1000)
            metrics.statementDuration.recordNanoseconds(nanoseconds)
            busySince = nil
            show(activity.transactionStatus == .idle ? "idle" : "idle in transaction", requestTime: nil)
        }
        if !database.isEmpty { proxy.stats.add(totals, database: database) }
        if fromClient > 0 { metrics.bytesFromClients.increment(by: fromClient) }
        if fromServer > 0 { metrics.bytesFromServers.increment(by: fromServer) }
        if requests > 0 { metrics.statements.increment(by: requests) }
        if totals.transactions > 0 { metrics.transactions.increment(by: totals.transactions) }
        let hits = machine.masking.cacheHits, misses = machine.masking.cacheMisses
        metrics.add(machine.counters, since: reported.counters, cacheHits: hits - reported.cacheHits, cacheMisses: misses - reported.cacheMisses)
        reported = Reported(requests: activity.answeredRequests, transactions: activity.endedTransactions, bytesFromClient: bytesFromClient,
                            bytesFromServer: bytesFromServer, counters: machine.counters, cacheHits: hits, cacheMisses: misses)
    }

    /// Writes the session's state for the console when it changed.
    func show(_ state: String, requestTime: Date?) {
        guard state != shownState else { return }
        shownState = state
        // Through the stored `masking`: a computed property of the machine copied the whole
        // machine here, twice per transaction (seen in perf).
        let masked = machine.masking.isMasked
        let generation = machine.masking.generation
        info.update { info in
            info.state = state
            if let requestTime { info.requestTime = requestTime }
            info.masked = masked
            info.policyGeneration = generation
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        machine.closed()
        backend?.close()
        backend = nil
        adminTask?.cancel()
        loginTimer?.cancel()
        proxy.bufferBudget.stopWaiting(ObjectIdentifier(self))
        proxy.bufferBudget.release(reservedBytes)
        reservedBytes = 0
        if let clientKey { proxy.cancelRegistry.unregister(clientKey) }
        proxy.pauseGate.stopWaiting(ObjectIdentifier(self))
        reportStatistics()
        proxy.sessions.remove(context.channel)
        logClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard machine.phase != .closed else { return }
        closeReason = "client connection error: \(error)"
        logger.debug("client connection error", metadata: ["error": "\(error)"])
        close(context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is KillEvent {
            guard machine.phase != .closed else { return }
            closeReason = "killed by the console (KILL_CLIENT)"
            // The statement it may be running stops too (a closed socket goes unnoticed by a busy backend).
            if let clientKey, let serverKey = proxy.cancelRegistry.backend(for: clientKey), !machine.activity.isQuiet {
                _ = CancelForwarder.send(serverKey, to: proxy.configuration.backend, on: context.eventLoop)
            }
            sendFatalAndClose(ErrorFields(severity: .fatal, sqlState: "57P01", message: "terminating connection due to pgclone console command KILL_CLIENT"), context)
            return
        }
        guard event is QuiesceEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        switch machine.quiesce() {
        case .terminateIdle?: terminateIdleSession(context)
        case let effect?: run([effect])
        case nil: break
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            backend?.resumeReadingIfPending()
        }
        context.fireChannelWritabilityChanged()
    }

    /// Reads from the client only while the backend can take more.
    func read(context: ChannelHandlerContext) {
        switch machine.phase {
        case .startup:
            context.read()
        case .connecting:
            readPending = true
        case .authenticating, .ready:
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
            handleStartup(machine.startupBytes(ByteBuffer()), context: context)
        case .cancel(let key):
            closeReason = "cancel request"
            machine.closed()
            let channel = context.channel
            // The cancel reaches the server before the client's cancel connection closes, as
            // when a client cancels directly (a query sent right after must not be the one hit).
            if let (serverKey, admin) = proxy.cancelRegistry.entry(for: key) {
                admin?.cancel()
                CancelForwarder.send(serverKey, to: proxy.configuration.backend, on: context.eventLoop).whenComplete { _ in
                    channel.close(promise: nil)
                }
            } else {
                channel.close(promise: nil)
            }
        case .connectBackend(var packet, let user, let database, let applicationName, var leftover):
            logger[metadataKey: "user"] = "\(user)"
            logger[metadataKey: "database"] = "\(database)"
            self.database = database
            let console = database == Self.consoleDatabase
            info.update { state in
                state.user = user
                state.database = database
                state.applicationName = applicationName ?? ""
                state.console = console
            }
            if console {
                // The console authenticates against the target as any session does, in the state database.
                machine.enterConsole()
                packet = Self.startupPacket(packet, database: proxy.configuration.stateDatabase)
            }
            if let applicationName { logger[metadataKey: "application_name"] = "\(applicationName)" }
            pendingToBackend.writeBuffer(&packet)
            pendingToBackend.writeBuffer(&leftover)
            connectBackend(context)
        case .reject(let fields):
            closeReason = "rejected at startup: \(fields.message ?? "")"
            sendFatalAndClose(fields, context)
        }
    }

    func connectBackend(_ context: ChannelHandlerContext) {
        if let backendConnector {
            backendConnector(self, context)
            return
        }
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
            bootstrap = bootstrap.channelOption(.tcpOption(.tcp_nodelay), value: 1)
            connected = bootstrap.connect(host: host, port: port)
        case .unixSocket(let path):
            connected = bootstrap.connect(unixDomainSocketPath: path)
        }
        connected.whenComplete { result in
            switch result {
            case .success(let channel):
                // The client may have gone while connecting: nothing else would close this one.
                if session.value.machine.phase == .closed { channel.close(promise: nil) }
            case .failure(let error):
                session.value.backendFailed(reason: "\(error)")
            }
        }
    }

    // MARK: - Backend events (same event loop)

    var clientIsWritable: Bool { context?.channel.isWritable ?? false }

    func backendReady(_ backend: BackendChannelHandler) {
        guard machine.phase == .connecting, let context else {
            backend.close()
            return
        }
        self.backend = backend
        machine.backendConnected()
        info.update { state in
            state.serverConnected = true
            state.serverConnectTime = Date()
        }
        let pending = pendingToBackend
        pendingToBackend = ByteBuffer()
        // The startup packet goes verbatim; anything the client sent after it is scanned like
        // every later client byte.
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
        observeProxyState()
        let now = ContinuousClock.now
        do {
            try backendScanner.process(
                buffer,
                classify: { type, _ throws(WireError) in try self.machine.serverHeader(type: type) },
                forward: { context.write(self.wrapOutboundOut($0), promise: nil) },
                examine: { frame throws(WireError) in try self.machine.serverMessage(frame, now: now) }
            )
        } catch {
            closeReason = "protocol violation by server: \(error)"
            logger.warning("protocol violation by server", metadata: ["error": "\(error)"])
            sendFatalAndClose(ErrorFields(severity: .fatal, sqlState: "08P01", message: "pgclone: invalid message from server: \(error)"), context)
            return
        }
        run(machine.takeEffects())
    }

    func backendReadComplete() {
        guard let context else { return }
        context.flush()
        reportStatistics()
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
        guard machine.phase != .closed, let context else { return }
        if (machine.phase == .ready || machine.phase == .authenticating) && !machine.clientSentTerminate {
            closeReason = "server closed the connection"
        }
        flushAndClose(context)
    }

    func backendFailed(reason: String) {
        guard machine.phase != .closed, let context else { return }
        if machine.serverEndedSession {
            // The server said why it ended the session; a reset after that adds nothing.
            backendClosed()
            return
        }
        switch machine.phase {
        case .connecting:
            closeReason = "could not connect to server"
            logger.warning("could not connect to the backend", metadata: ["backend": "\(proxy.configuration.backend)", "error": "\(reason)"])
            sendFatalAndClose(ErrorFields(
                severity: .fatal, sqlState: "08006",
                message: "pgclone could not connect to the PostgreSQL server at \(proxy.configuration.backend): \(reason)"), context)
        default:
            closeReason = "server connection error: \(reason)"
            sendFatalAndClose(ErrorFields(severity: .fatal, sqlState: "08006", message: "pgclone lost the connection to the PostgreSQL server: \(reason)"), context)
        }
    }

    // MARK: - Relay

    /// Lets the machine see the policies (a lock) only when their version moved.
    func observeProxyState() {
        // RELOAD may have changed who is an admin: one more atomic load.
        let generation = proxy.liveGeneration.load(ordering: .acquiring)
        if generation != observedLiveGeneration {
            observedLiveGeneration = generation
            machine.adminRoles = proxy.adminRoles
        }
        // Two atomic loads on the hot path; the lock only when something changed.
        let ready = proxy.policies.isReadyNow
        guard proxy.policies.version != observedPolicyVersion || !ready else { return }
        let policies = proxy.policies.current
        observedPolicyVersion = ready ? policies.version : -1
        machine.observe(policies: policies, notReady: ready ? nil : proxy.policies.notReadyReason, builtinFunctions: proxy.builtinFunctions.names)
    }

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
        if machine.serverEndedSession {
            // What the client sends after the server's FATAL goes nowhere, as with a direct
            // connection whose server has gone.
            return
        }
        observeProxyState()
        let now = ContinuousClock.now
        logger.trace("client bytes", metadata: ["bytes": "\(buffer.readableBytes)"])
        do {
            try clientScanner.process(
                buffer,
                classify: { type, length throws(WireError) in
                    if self.heldByPause(type) { return .wait }
                    return try self.budgeted(self.machine.clientHeader(type: type, length: length), type: type, length: length)
                },
                forward: { backend.write($0) },
                examine: { frame throws(WireError) in
                    self.releaseReservation()
                    return try self.machine.clientMessage(frame, now: now)
                }
            )
        } catch {
            clientProtocolViolation(error)
            return
        }
        run(machine.takeEffects())
    }

    /// The console's PAUSE: a session that would start a new transaction on a paused database
    /// waits (its input is held) until RESUME; statements inside a transaction go on.
    func heldByPause(_ type: UInt8) -> Bool {
        guard machine.phase == .ready, machine.consoleMode == .off, type != FrontendMessage.ID.terminate.rawValue,
              machine.activity.isIdle, proxy.pauseGate.isPaused(database), let context else { return false }
        let session = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        info.update { $0.waitingOnPause = true }
        proxy.pauseGate.wait(ObjectIdentifier(self)) {
            eventLoop.execute {
                let handler = session.value
                handler.info.update { $0.waitingOnPause = false }
                handler.resumeClientInput()
            }
        }
        return true
    }

    /// Runs a console command off the event loop; its answer and ReadyForQuery go to the client.
    func runConsole(_ text: String, context: ChannelHandlerContext) {
        observeProxyState()
        guard machine.consoleSuperuser || machine.consoleAdmittedUnder == machine.adminRoles else {
            // RELOAD changed --admin-roles since this console was opened: its role is checked again on reconnecting.
            closeReason = "console closed: the admin roles changed"
            sendFatalAndClose(ErrorFields(severity: .fatal, sqlState: "42501", message: "the pgclone console's admin roles changed (RELOAD); reconnect"), context)
            return
        }
        let console = Console(proxy: proxy, sessionID: info.id, jobsOf: machine.consoleSuperuser ? nil : machine.consoleRole)
        let session = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        logger.info("console command", metadata: ["command": "\(text.prefix(80))"])
        Task {
            let replies = await console.run(text)
            eventLoop.execute {
                let handler = session.value
                guard handler.machine.phase != .closed, let context = handler.context else { return }
                var answer = ByteBuffer()
                if replies.isEmpty { BackendMessage.emptyQueryResponse.encode(into: &answer) }
                for reply in replies { reply.encode(into: &answer) }
                BackendMessage.readyForQuery(.idle).encode(into: &answer)
                context.writeAndFlush(handler.wrapOutboundOut(answer), promise: nil)
                handler.machine.consoleFinished()
                handler.run(handler.machine.takeEffects())
            }
        }
    }

    /// The database name a client asks for to reach the console (as PgBouncer's `pgbouncer`).
    static let consoleDatabase = "pgclone"

    /// The startup packet with another database.
    static func startupPacket(_ packet: ByteBuffer, database: String) -> ByteBuffer {
        var copy = packet
        guard case .startup(let version, let parameters)? = try? StartupPacket.decode(from: &copy) else { return packet }
        var out = ByteBuffer()
        StartupPacket.startup(protocolVersion: version, parameters: parameters.map { $0.0 == "database" ? ($0.0, database) : $0 }).encode(into: &out)
        return out
    }

    /// Goes on with client input held while the proxy's own work ran.
    func resumeClientInput() {
        guard let backend, let context, !machine.serverEndedSession else { return }
        let now = ContinuousClock.now
        do {
            try clientScanner.resume(
                classify: { type, length throws(WireError) in
                    if self.heldByPause(type) { return .wait }
                    return try self.budgeted(self.machine.clientHeader(type: type, length: length), type: type, length: length)
                },
                forward: { backend.write($0) },
                examine: { frame throws(WireError) in
                    self.releaseReservation()
                    return try self.machine.clientMessage(frame, now: now)
                }
            )
        } catch {
            clientProtocolViolation(error)
            return
        }
        backend.flush()
        run(machine.takeEffects())
        if readPending && backend.isWritable && !clientScanner.isPaused {
            readPending = false
            context.read()
        }
    }

    /// A long message to hold whole first takes its length from the buffer budget: when that
    /// is spent, the session waits (it stops reading its client) until another message is done.
    func budgeted(_ disposition: FrameScanner.Disposition, type: UInt8, length: Int) throws(WireError) -> FrameScanner.Disposition {
        guard disposition == .examine, length > BufferBudget.uncountedLength, reservedBytes == 0 else { return disposition }
        let budget = proxy.bufferBudget
        guard length <= budget.limit else {
            throw WireError(.invalidField("message of \(length) bytes: larger than pgclone's buffer budget of \(budget.limit) bytes (--max-buffer-memory)"), messageType: type)
        }
        if budget.reserve(length) {
            reservedBytes = length
            return .examine
        }
        guard let context else { return .wait }
        let session = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        budget.wait(ObjectIdentifier(self), for: length) {
            eventLoop.execute { session.value.resumeClientInput() }
        }
        return .wait
    }

    func releaseReservation() {
        guard reservedBytes > 0 else { return }
        let bytes = reservedBytes
        reservedBytes = 0
        proxy.bufferBudget.release(bytes)
    }

    func clientProtocolViolation(_ error: WireError) {
        guard let context else { return }
        closeReason = "protocol violation by client: \(error)"
        logger.info("protocol violation by client", metadata: ["error": "\(error)"])
        sendFatalAndClose(ErrorFields(severity: .fatal, sqlState: "08P01", message: "invalid frontend message: \(error)"), context)
    }

    // MARK: - Effects

    /// Runs the machine's effects in order.
    func run(_ effects: [SessionStateMachine.Effect]) {
        guard let context else { return }
        for effect in effects {
            switch effect {
            case .sendToServer(let buffer):
                backend?.write(buffer)
                backend?.flush()
            case .sendToClient(let buffer):
                context.write(wrapOutboundOut(buffer), promise: nil)
                context.flush()
            case .resumeClientInput:
                resumeClientInput()
            case .runAdmin(let run):
                runAdmin(run, context: context)
            case .analyze(let job):
                let session = NIOLoopBound(self, eventLoop: context.eventLoop)
                let eventLoop = context.eventLoop
                ParserThreads.shared.submit({ job.run() }, completion: { analysis in
                    eventLoop.execute {
                        let handler = session.value
                        guard handler.machine.phase != .closed else { return }
                        handler.machine.analysisFinished(analysis)
                        handler.run(handler.machine.takeEffects())
                    }
                })
            case .registerCancelKey(let server, let client):
                if let old = clientKey { proxy.cancelRegistry.unregister(old) }
                proxy.cancelRegistry.register(client: client, server: server, admin: adminCalls)
                clientKey = client
                info.update { $0.serverPID = server.processID }
            case .storeBuiltinFunctions(let names):
                proxy.builtinFunctions.store(names)
            case .nudgeBackstop:
                proxy.backstop?.nudge(database)
            case .closeWithError(let fields, let reason):
                closeReason = reason
                sendFatalAndClose(fields, context)
            case .terminateIdle:
                // After the ReadyForQuery that made the session idle has been flushed.
                closeWhenFlushed = true
            case .sessionOpened:
                loginTimer?.cancel()
                loginTimer = nil
                show("idle", requestTime: nil)
                logger.info("session opened")
            case .consoleOpened:
                logger.info("console session opened")
            case .runConsole(let text):
                runConsole(text, context: context)
            case .guardRefused(let role):
                logger.warning("masked column in a result refused", metadata: ["role": "\(role)"])
            }
        }
    }

    /// Runs an admin call in async code; its outcome goes back to the machine on the event loop.
    func runAdmin(_ run: SessionStateMachine.AdminRun, context: ChannelHandlerContext) {
        let services = proxy.adminServices
        let session = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let logger = self.logger
        proxy.metrics.adminCalls.increment()
        adminTask = Task {
            var notices: [String] = []
            let sql: String
            let isError: Bool
            var callerRole = ""
            do {
                let caller: AdminCaller
                let statement: AdminStatement
                var parameters: [String?] = []
                switch run.kind {
                case .simple(let simple):
                    statement = simple
                    guard let known = run.caller else { throw AdminError("XX000", "could not determine the calling role") }
                    caller = known
                case .bind(let bind, let prepared):
                    statement = prepared.statement
                    caller = try prepared.caller.get()
                    parameters = try AdminParameters.decode(bind, types: prepared.parameterTypes)
                }
                callerRole = caller.role
                logger.info("admin call", metadata: ["role": "\(caller.role)", "functions": "\(statement.references.map { "pgclone.\($0.function)" })"])
                var results: [AdminResult] = []
                for reference in statement.references {
                    results.append(try await AdminRegistry.run(reference, parameters: parameters, caller: caller, services: services, notices: &notices))
                }
                sql = statement.rewritten(with: results)
                isError = false
            } catch let error as AdminError {
                // (Messages never carry a password: connection errors are libpq's, which omit it.)
                logger.warning("admin call failed", metadata: ["role": "\(callerRole)", "sqlstate": "\(error.sqlState)", "error": "\(error.message)"])
                sql = AdminSQL.raise(error)
                isError = true
            } catch {
                logger.warning("admin call failed", metadata: ["role": "\(callerRole)", "sqlstate": "XX000", "error": "\(error)"])
                sql = AdminSQL.raise(AdminError("XX000", "pgclone call failed: \(error)"))
                isError = true
            }
            let collected = notices
            eventLoop.execute {
                let handler = session.value
                handler.adminTask = nil
                handler.machine.adminFinished(run, sql: sql, isError: isError, notices: collected)
                handler.run(handler.machine.takeEffects())
            }
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
        guard machine.phase != .closed else { return }
        machine.closed()
        backend?.close()
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(ByteBuffer())).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    func close(_ context: ChannelHandlerContext) {
        machine.closed()
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
