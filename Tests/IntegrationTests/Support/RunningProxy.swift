import Foundation
import Logging
import Masking
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PQ
import Proxy
import ServiceLifecycle

/// A real proxy server on a free port, run inside a ServiceGroup like `pgclone serve`.
final class RunningProxy: Sendable {
    let port: Int
    let server: ProxyServer
    /// The server backstop, when the proxy was started with databases for it to look after.
    let backstop: ServerBackstop?
    /// The job runner, when the proxy was started with one.
    let jobs: JobRunner?
    private let serviceGroup: ServiceGroup
    private let task: Task<Void, any Error>

    private init(port: Int, server: ProxyServer, backstop: ServerBackstop?, jobs: JobRunner?, serviceGroup: ServiceGroup, task: Task<Void, any Error>) {
        self.port = port
        self.server = server
        self.backstop = backstop
        self.jobs = jobs
        self.serviceGroup = serviceGroup
        self.task = task
    }

    static func start(
        _ environment: TestEnvironment,
        backend: String? = nil,
        grace: Duration = .seconds(10),
        logger: Logger? = nil,
        backstopDatabases: Set<String> = [],
        readsStateDatabase: Bool = false,
        runsJobs: Bool = false,
        configure: (inout ProxyConfiguration) -> Void = { _ in }
    ) async throws -> RunningProxy {
        try MaskingKey.install("pgclone-test-secret")
        EventLoopWatchdog.started
        let conninfo = try ConnInfo(parsing: backend ?? environment.backendConnInfo)
        var configuration = ProxyConfiguration(listenHost: "127.0.0.1", listenPort: 0, backend: try BackendEndpoint(conninfo: conninfo), serviceConnInfo: conninfo)
        configuration.shutdownGracePeriod = grace
        configure(&configuration)
        let logger = logger ?? {
            // PGCLONE_TEST_LOG_LEVEL=debug (or trace) shows what the proxies of a test run do.
            var quiet = Logger(label: "pgclone.test")
            quiet.logLevel = ProcessInfo.processInfo.environment["PGCLONE_TEST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
            return quiet
        }()
        let (stream, continuation) = AsyncStream.makeStream(of: Int.self)
        // Proxies of different tests share one server: each backstop looks after its test's databases only.
        // Each reader of the state database keeps a connection: only tests about it run one.
        let policies = PolicyStore(directory: configuration.policiesDirectory, hasStateSource: readsStateDatabase, logger: logger)
        if let error = policies.reload() { throw ConfigurationError("invalid policy files: \(error)") }
        let reloader = PolicyReloader(store: policies, state: readsStateDatabase ? StatePolicies(serviceConnInfo: conninfo, database: configuration.stateDatabase) : nil)
        let backstop = backstopDatabases.isEmpty ? nil
            : ServerBackstop(serviceConnInfo: conninfo, policies: policies, logger: logger, databases: backstopDatabases, stateDatabase: configuration.stateDatabase,
                             driftInterval: .milliseconds(500))
        let jobs = runsJobs ? JobRunner(serviceConnInfo: conninfo, stateDatabase: configuration.stateDatabase, logger: logger, pollInterval: .milliseconds(200)) : nil
        let server = try ProxyServer(configuration: configuration, group: MultiThreadedEventLoopGroup.singleton, logger: logger,
                                     policies: policies, backstop: backstop, jobs: jobs, onListening: { address in
            continuation.yield(address.port ?? 0)
            continuation.finish()
        })
        // The services of `pgclone serve`, in its order.
        var groupConfiguration = ServiceGroupConfiguration(
            services: [.init(service: reloader)] + (backstop.map { [.init(service: $0)] } ?? []) + (jobs.map { [.init(service: $0)] } ?? [])
                + [.init(service: server)], logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = grace
        let serviceGroup = ServiceGroup(configuration: groupConfiguration)
        let task = Task { try await serviceGroup.run() }
        var iterator = stream.makeAsyncIterator()
        guard let port = await iterator.next(), port > 0 else {
            task.cancel()
            throw ConfigurationError("proxy did not start listening")
        }
        // The state database's policies are read before the first test statement (until then,
        // sessions that could be masked are refused), and the backstop is in force.
        let deadline = ContinuousClock.now + .seconds(10)
        while !policies.isReady && policies.status.stateError == nil && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        for database in backstopDatabases.sorted() { await backstop?.reconcile(database: database) }
        return RunningProxy(port: port, server: server, backstop: backstop, jobs: jobs, serviceGroup: serviceGroup, task: task)
    }

    /// Graceful shutdown, as SIGTERM does; returns when the server has stopped.
    func stop() async throws {
        await serviceGroup.triggerGracefulShutdown()
        try await task.value
    }

    /// Starts graceful shutdown without waiting for it.
    func beginShutdown() async {
        await serviceGroup.triggerGracefulShutdown()
    }

    func waitUntilStopped() async throws {
        try await task.value
    }
}
