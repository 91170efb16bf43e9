import Logging
import Masking
import NIOCore
import NIOEmbedded
import PostgresWire
@testable import Proxy
import Testing

/// The client handler on EmbeddedChannels: one for the client, one for its server connection
/// on the same loop. Typed messages at the edges, bytes in between.
@Suite struct ClientChannelHandlerTests {
    /// Counts the reads the handler lets through to the client socket.
    final class ReadCountingHandler: ChannelOutboundHandler, @unchecked Sendable {
        typealias OutboundIn = Any
        var reads = 0
        func read(context: ChannelHandlerContext) {
            reads += 1
            context.read()
        }
    }

    struct Session {
        let client: EmbeddedChannel
        var backend: EmbeddedChannel { backendBox.channel! }
        let backendBox: BackendBox
        let reads: ReadCountingHandler
        let handler: ClientChannelHandler
    }

    final class BackendBox: @unchecked Sendable {
        var channel: EmbeddedChannel?
    }

    static func makeSession(policies: PolicyStore? = nil) throws -> Session {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let configuration = ProxyConfiguration(listenPort: 0, backend: BackendEndpoint(address: .tcp(host: "127.0.0.1", port: 1)))
        let store = policies ?? PolicyStore(directory: nil, logger: logger)
        let proxy = try ProxyContext(configuration: configuration, policies: store, backstop: nil, logger: logger)
        let loop = EmbeddedEventLoop()
        let handler = ClientChannelHandler(proxy: proxy, connectionID: 1)
        let box = BackendBox()
        handler.backendConnector = { session, _ in
            let backend = EmbeddedChannel(handler: BackendChannelHandler(session: session, tlsContext: nil, tlsRequired: false, serverHostname: nil), loop: loop)
            box.channel = backend
            // Connecting makes the channel active: the handler hands itself to the session.
            _ = try? backend.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 5432)).wait()
        }
        let reads = ReadCountingHandler()
        let client = EmbeddedChannel(handlers: [reads, handler], loop: loop)
        _ = try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 6432)).wait()
        return Session(client: client, backendBox: box, reads: reads, handler: handler)
    }

    static func bytes(_ message: BackendMessage) -> ByteBuffer {
        var buffer = ByteBuffer()
        message.encode(into: &buffer)
        return buffer
    }

    static func bytes(_ message: FrontendMessage) -> ByteBuffer {
        var buffer = ByteBuffer()
        message.encode(into: &buffer)
        return buffer
    }

    /// Everything the handler wrote to `channel`, decoded.
    static func backendMessages(_ channel: EmbeddedChannel) throws -> [BackendMessage] {
        var all = ByteBuffer()
        while var chunk = try channel.readOutbound(as: ByteBuffer.self) { all.writeBuffer(&chunk) }
        var messages: [BackendMessage] = []
        while let frame = try MessageFrame.read(from: &all) { messages.append(try BackendMessage.decode(frame)) }
        return messages
    }

    static func frontendMessages(_ channel: EmbeddedChannel) throws -> [FrontendMessage] {
        var all = ByteBuffer()
        while var chunk = try channel.readOutbound(as: ByteBuffer.self) { all.writeBuffer(&chunk) }
        var messages: [FrontendMessage] = []
        while let frame = try MessageFrame.read(from: &all) { messages.append(try FrontendMessage.decode(frame)) }
        return messages
    }

    /// Startup through to the first ReadyForQuery.
    static func open(_ session: Session, superuser: Bool = true) throws {
        var packet = ByteBuffer()
        StartupPacket.startup(protocolVersion: .v3_0, parameters: [("user", "alice"), ("database", "db")]).encode(into: &packet)
        try session.client.writeInbound(packet)
        // The startup packet reached the server verbatim.
        let sent = try #require(try session.backend.readOutbound(as: ByteBuffer.self))
        #expect(sent == packet)
        for message: BackendMessage in [.authentication(.ok), .parameterStatus(name: "is_superuser", value: superuser ? "on" : "off"),
                                        .backendKeyData(BackendKey(processID: 777, secretKey: 1)), .readyForQuery(.idle)] {
            try session.backend.writeInbound(bytes(message))
        }
        session.backend.pipeline.fireChannelReadComplete()
        let answered = try backendMessages(session.client)
        #expect(answered.count == 4)
        guard case .backendKeyData(let key) = answered[2] else { throw Failure("no key") }
        #expect(key.processID == 777 && key.secretKey != 1)
    }

    struct Failure: Error {
        var message: String
        init(_ message: String) { self.message = message }
    }

    @Test func aSessionRelaysBothWays() throws {
        let session = try Self.makeSession()
        try Self.open(session)
        try session.client.writeInbound(Self.bytes(.query("SELECT 1")))
        #expect(try Self.frontendMessages(session.backend) == [.query("SELECT 1")])
        try session.backend.writeInbound(Self.bytes(.commandComplete(tag: "SELECT 1")))
        try session.backend.writeInbound(Self.bytes(.readyForQuery(.idle)))
        session.backend.pipeline.fireChannelReadComplete()
        #expect(try Self.backendMessages(session.client) == [.commandComplete(tag: "SELECT 1"), .readyForQuery(.idle)])
    }

    /// A closed session leaves nothing behind: its handlers (and with them the machine, the
    /// buffers and the pipeline) are freed, not kept alive by a handler-context cycle.
    @Test func aClosedSessionFreesItsHandlers() throws {
        weak var client: ClientChannelHandler?
        weak var backend: BackendChannelHandler?
        try {
            let session = try Self.makeSession()
            try Self.open(session)
            client = session.handler
            backend = try session.backend.pipeline.syncOperations.handler(type: BackendChannelHandler.self)
            _ = try session.client.finish()
            _ = try? session.backend.finish()
        }()
        #expect(client == nil, "the client handler outlived its connection")
        #expect(backend == nil, "the server connection's handler outlived it")
    }

    /// The client is read only while its server connection can take more.
    @Test func readsFromTheClientWaitForTheServersWritability() throws {
        let session = try Self.makeSession()
        try Self.open(session)
        let before = session.reads.reads
        session.client.read()
        #expect(session.reads.reads == before + 1)
        session.backend.isWritable = false
        session.client.read()
        #expect(session.reads.reads == before + 1, "a read while the server cannot take more")
        session.backend.isWritable = true
        session.backend.pipeline.fireChannelWritabilityChanged()
        #expect(session.reads.reads == before + 2, "the held read goes once the server can take more")
    }

    /// Shutdown asks an idle session to close at once, and a busy one once it is idle.
    @Test func quiesceClosesIdleSessionsAtOnceAndBusyOnesWhenIdle() throws {
        let idle = try Self.makeSession()
        try Self.open(idle)
        idle.client.pipeline.fireUserInboundEventTriggered(QuiesceEvent())
        #expect(try Self.frontendMessages(idle.backend) == [.terminate])
        guard case .errorResponse(let fields)? = try Self.backendMessages(idle.client).first else { throw Failure("no goodbye") }
        #expect(fields.sqlState == "57P01")

        let busy = try Self.makeSession()
        try Self.open(busy)
        try busy.client.writeInbound(Self.bytes(.query("SELECT pg_sleep(1)")))
        _ = try Self.frontendMessages(busy.backend)
        busy.client.pipeline.fireUserInboundEventTriggered(QuiesceEvent())
        #expect(try Self.frontendMessages(busy.backend).isEmpty, "a running statement is not cut")
        try busy.backend.writeInbound(Self.bytes(.commandComplete(tag: "SELECT 1")))
        try busy.backend.writeInbound(Self.bytes(.readyForQuery(.idle)))
        busy.backend.pipeline.fireChannelReadComplete()
        #expect(try Self.frontendMessages(busy.backend) == [.terminate])
        let answered = try Self.backendMessages(busy.client)
        #expect(answered.first == .commandComplete(tag: "SELECT 1"))
        guard case .errorResponse(let fields)? = answered.last else { throw Failure("no goodbye") }
        #expect(fields.sqlState == "57P01")
    }

    /// An admin call keeps its session busy: shutdown waits for its answer, then closes.
    @Test func quiesceWaitsForARunningAdminCall() async throws {
        let session = try Self.makeSession()
        try Self.open(session)
        try session.client.writeInbound(Self.bytes(.query("SELECT pgclone.version()")))
        // The proxy asks who the caller is, on the session itself.
        guard case .query(let check)? = try Self.frontendMessages(session.backend).first else { throw Failure("no role check") }
        #expect(check.contains("current_user"))
        session.client.pipeline.fireUserInboundEventTriggered(QuiesceEvent())
        for message: BackendMessage in [.dataRow(DataRow(values: ["alice", "db", "t", "f"].map { ByteBuffer(string: $0) })),
                                        .commandComplete(tag: "SELECT 1"), .readyForQuery(.idle)] {
            try session.backend.writeInbound(Self.bytes(message))
        }
        session.backend.pipeline.fireChannelReadComplete()
        #expect(session.client.isActive, "closed while the admin call runs")
        // The call runs in async code and comes back on the loop with the statement standing for its result.
        var result: [FrontendMessage] = []
        for _ in 0..<200 where result.isEmpty {
            try await Task.sleep(for: .milliseconds(10))
            session.client.embeddedEventLoop.run()
            result = try Self.frontendMessages(session.backend)
        }
        guard case .query(let answer)? = result.first else { throw Failure("the admin call did not finish: \(result)") }
        #expect(answer.contains("pgclone \(PgcloneVersion.number)"), "\(answer)")
        #expect(session.client.isActive)
        try session.backend.writeInbound(Self.bytes(.readyForQuery(.idle)))
        session.backend.pipeline.fireChannelReadComplete()
        #expect(try Self.frontendMessages(session.backend) == [.terminate])
    }
}
