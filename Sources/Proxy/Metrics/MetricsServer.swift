import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// Serves `GET /metrics` in Prometheus' text format (what `render` returns) on its own
/// address: a service of `pgclone serve --metrics HOST:PORT`.
public final class MetricsServer: Service, Sendable {
    let host: String
    let port: Int
    let group: any EventLoopGroup
    let logger: Logger
    let render: @Sendable () async -> [UInt8]

    public init(host: String, port: Int, group: any EventLoopGroup, logger: Logger, render: @escaping @Sendable () async -> [UInt8]) {
        self.host = host
        self.port = port
        self.group = group
        self.logger = logger
        self.render = render
    }

    /// Scrapers are few: connections beyond this are closed at once, and each may stay idle
    /// (or dribble a request) for `idleTimeout` only, so the endpoint cannot use up the
    /// descriptors the proxy's clients need.
    static let maximumConnections = 32
    static let idleTimeout = TimeAmount.seconds(10)

    public func run() async throws {
        let render = self.render
        let open = NIOLockedValueBox(0)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                let admitted = open.withLockedValue { count -> Bool in
                    guard count < Self.maximumConnections else { return false }
                    count += 1
                    return true
                }
                guard admitted else { return channel.close() }
                channel.closeFuture.whenComplete { _ in open.withLockedValue { $0 -= 1 } }
                return channel.pipeline.addHandler(IdleStateHandler(allTimeout: Self.idleTimeout)).flatMap {
                    channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true)
                }.flatMap {
                    channel.pipeline.addHandler(MetricsHTTPHandler(render: render))
                }
            }
            .bind(host: host, port: port)
            .get()
        logger.info("metrics listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "\(host):\(port)")", "path": "/metrics"])
        try? await gracefulShutdown()
        try? await channel.close()
    }
}

/// One HTTP request at a time: `/metrics` answers the text, anything else 404, other methods 405.
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let render: @Sendable () async -> [UInt8]
    private var request: HTTPRequestHead?

    init(render: @escaping @Sendable () async -> [UInt8]) {
        self.render = render
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A malformed request was answered 400 by the HTTP error handler: the connection ends.
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
        case .body:
            break
        case .end:
            guard let head = request else { return }
            request = nil
            let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
            guard head.method == .GET || head.method == .HEAD else {
                respond(context, head, .methodNotAllowed, "text/plain; charset=utf-8", Array("only GET\n".utf8))
                return
            }
            guard path == "/metrics" else {
                respond(context, head, .notFound, "text/plain; charset=utf-8", Array("pgclone serves /metrics\n".utf8))
                return
            }
            // Rendering reads the jobs table: off the event loop, the answer back on it.
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let render = self.render
            let eventLoop = context.eventLoop
            Task {
                let body = await render()
                eventLoop.execute {
                    let (handler, context) = loopBound.value
                    handler.respond(context, head, .ok, "text/plain; version=0.0.4; charset=utf-8", body)
                }
            }
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ contentType: String, _ body: [UInt8]) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.count))
        if !head.isKeepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        let keepAlive = head.isKeepAlive
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
    }
}
