import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PQ
import ServiceLifecycle

/// The listening proxy, run as a service.
///
/// On graceful shutdown it stops accepting, asks every session to close once
/// idle, and waits for them; the ServiceGroup's grace period bounds that wait,
/// after which remaining sessions are closed.
public final class ProxyServer: Service, Sendable {
    private let context: ProxyContext
    private let group: any EventLoopGroup
    private let boundAddress = NIOLockedValueBox<SocketAddress?>(nil)
    private let onListening: @Sendable (SocketAddress) -> Void
    private let connectionCounter = NIOLockedValueBox(0)

    public init(
        configuration: ProxyConfiguration,
        group: any EventLoopGroup,
        logger: Logger,
        policies: PolicyStore? = nil,
        backstop: ServerBackstop? = nil,
        jobs: JobRunner? = nil,
        pool: PQThreadPool = .shared,
        readConfiguration: (@Sendable () throws -> ProxyConfiguration)? = nil,
        requestShutdown: (@Sendable () -> Void)? = nil,
        onListening: @escaping @Sendable (SocketAddress) -> Void = { _ in }
    ) throws {
        let store = policies ?? PolicyStore(directory: configuration.policiesDirectory, logger: logger)
        if policies == nil { store.reload() }
        self.context = try ProxyContext(configuration: configuration, policies: store, backstop: backstop, jobs: jobs, pool: pool,
                                      readConfiguration: readConfiguration, requestShutdown: requestShutdown, logger: logger)
        self.group = group
        self.onListening = onListening
    }

    /// The address the server listens on, once bound.
    public var localAddress: SocketAddress? { boundAddress.withLockedValue { $0 } }

    /// Re-reads settings and policies (SIGHUP): what can change live changes.
    public func reload() async -> ReloadReport {
        await context.reload()
    }

    /// Sets the gauges read at scrape time.
    public func updateScrapeGauges() async {
        await context.updateScrapeGauges()
    }

    /// The policies this server enforces.
    public var policies: PolicyStore { context.policies }

    /// Number of open client sessions.
    public var sessionCount: Int { context.sessions.count }

    public func run() async throws {
        let proxy = context
        let counter = connectionCounter
        let serverChannel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Out of descriptors, accept fails at once every time it is tried: without a
                    // pause the event loop spins a core.
                    try channel.pipeline.syncOperations.addHandler(AcceptBackoff(logger: proxy.logger))
                }
            }
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 4)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let id = counter.withLockedValue { value -> Int in
                        value += 1
                        return value
                    }
                    try channel.pipeline.syncOperations.addHandler(ClientChannelHandler(proxy: proxy, connectionID: id))
                }
            }
            .bind(host: proxy.configuration.listenHost, port: proxy.configuration.listenPort)
            .get()
        if let address = serverChannel.localAddress {
            boundAddress.withLockedValue { $0 = address }
            proxy.logger.info("listening", metadata: ["address": "\(address)", "backend": "\(proxy.configuration.backend)"])
            onListening(address)
        }

        await withGracefulShutdownHandler {
            try? await serverChannel.closeFuture.get()
        } onGracefulShutdown: {
            proxy.logger.info("shutting down: no new connections, closing sessions as they become idle")
            serverChannel.close(promise: nil)
        }
        proxy.sessions.broadcast(QuiesceEvent())
        // Cancellation (the grace period running out) ends the wait; then close whatever is left.
        await withTaskCancellationHandler {
            await proxy.sessions.waitUntilEmpty()
        } onCancel: {
            proxy.sessions.closeAll()
        }
        if Task.isCancelled {
            proxy.sessions.closeAll()
        }
        proxy.logger.info("stopped")
    }
}
