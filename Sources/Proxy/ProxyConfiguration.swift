#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import PQ

/// Everything the proxy needs to run, already validated.
public struct ProxyConfiguration: Sendable {
    public var listenHost: String
    /// 0 picks a free port (tests).
    public var listenPort: Int
    public var backend: BackendEndpoint
    /// The proxy's own service conninfo (catalog look-ups, admin work). Never logged whole.
    public var serviceConnInfo: ConnInfo
    public var tlsCertificatePath: String?
    public var tlsKeyPath: String?
    /// How long sessions may take to finish after SIGTERM before they are closed.
    public var shutdownGracePeriod: Duration
    /// Event loop threads; by default one per core. (One loop on 2 shared cores costs less CPU per
    /// pgbench transaction, 19 against 21 µs, but relays 15% fewer: the single thread waits for
    /// a core more often. bench/proxy.sh, --threads 1 and 2 side by side.)
    public static var defaultEventLoopThreads: Int { System.coreCount }
    public var eventLoopThreads: Int
    /// Largest client message the proxy holds whole to examine it.
    public var maximumExaminedMessageLength: Int
    /// Connection attempts to the backend give up after this long.
    public var backendConnectTimeout: Duration
    /// Members of these roles (and superusers) may call the pgclone.* admin API.
    public var adminRoles: [String] = []
    /// Directory of masking policy files.
    public var policiesDirectory: String?
    /// Target database holding pgclone's durable state (policies created through the SQL API, jobs).
    public var stateDatabase = "postgres"
    /// Threads for libpq's blocking calls (admin calls, jobs, the proxy's own catalog reads):
    /// every COPY in flight holds one for its whole length.
    public var engineThreads = 16
    /// trace, debug, info, notice, warning, error, critical.
    public var logLevel = "info"
    /// Where `/metrics` is served (nil: nowhere).
    public var metricsHost: String?
    public var metricsPort: Int?
    /// The memory all sessions together may use to hold client messages whole.
    public var maximumBufferMemory = 256 << 20
    /// A client that has not finished startup and authentication by then is closed (as
    /// PostgreSQL's authentication_timeout).
    public var clientLoginTimeout: Duration = .seconds(60)
    /// More clients than this get 53300 at once (each client also holds a server connection:
    /// two descriptors). Defaults to what the process's descriptor limit allows.
    public var maximumClientConnections = ProxyConfiguration.clientConnectionsForDescriptorLimit()

    /// Half of the descriptors the process may open, less a reserve for listeners, logs,
    /// service connections and the like.
    public static func clientConnectionsForDescriptorLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < rlim_t(Int32.max) else { return 10_000 }
        return max(16, (Int(limit.rlim_cur) - 128) / 2)
    }

    public init(
        listenHost: String = "127.0.0.1",
        listenPort: Int = 6432,
        backend: BackendEndpoint,
        serviceConnInfo: ConnInfo = ConnInfo(values: [:]),
        tlsCertificatePath: String? = nil,
        tlsKeyPath: String? = nil,
        shutdownGracePeriod: Duration = .seconds(30),
        eventLoopThreads: Int = ProxyConfiguration.defaultEventLoopThreads,
        maximumExaminedMessageLength: Int = 64 << 20,
        backendConnectTimeout: Duration = .seconds(10)
    ) {
        self.listenHost = listenHost
        self.listenPort = listenPort
        self.backend = backend
        self.serviceConnInfo = serviceConnInfo
        self.tlsCertificatePath = tlsCertificatePath
        self.tlsKeyPath = tlsKeyPath
        self.shutdownGracePeriod = shutdownGracePeriod
        self.eventLoopThreads = eventLoopThreads
        self.maximumExaminedMessageLength = maximumExaminedMessageLength
        self.backendConnectTimeout = backendConnectTimeout
    }

    public var tlsEnabled: Bool { tlsCertificatePath != nil }
}
