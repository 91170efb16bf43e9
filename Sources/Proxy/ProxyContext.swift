import Logging
import NIOCore
import NIOSSL
import PQ
import Synchronization
import NIOConcurrencyHelpers

/// What every session of one proxy server shares.
final class ProxyContext: Sendable {
    /// As started. What RELOAD can change lives in `live`; the rest needs a restart.
    let configuration: ProxyConfiguration
    let cancelRegistry: CancelRegistry
    let sessions: SessionRegistry
    /// The client TLS context now (RELOAD swaps it; sessions read it when they start TLS).
    var clientTLS: NIOSSLContext? { live.withLockedValue { $0.clientTLS } }
    let backendTLS: NIOSSLContext?
    let logger: Logger
    let policies: PolicyStore
    /// Keeps the server's privileges in line with the policies (nil: not run, as in some tests).
    let backstop: ServerBackstop?
    /// Runs background jobs (nil: the async admin functions answer that jobs are not available).
    let jobs: JobRunner?
    let builtinFunctions = BuiltinFunctions()
    let bufferBudget: BufferBudget
    let stats = DatabaseStats()
    let pauseGate = PauseGate()
    let metrics: ProxyMetrics
    /// What RELOAD may change while sessions stay open.
    let live: NIOLockedValueBox<LiveSettings>
    /// Moves when `live` changes: sessions look at it once per read burst (an atomic load).
    let liveGeneration = Synchronization.Atomic<Int>(0)
    /// Re-reads the settings (config file, environment, flags) for RELOAD and SIGHUP.
    let readConfiguration: (@Sendable () throws -> ProxyConfiguration)?
    /// The last job counts a scrape read (see `updateScrapeGauges`).
    let scrapeJobCounts = NIOLockedValueBox(ScrapeJobCounts())

    struct ScrapeJobCounts: Sendable {
        var at: ContinuousClock.Instant?
        var counts: [JobStore.Status: Int]?
        var reading = false
    }

    /// Stops the proxy gracefully (the console's SHUTDOWN).
    let requestShutdown: (@Sendable () -> Void)?

    struct LiveSettings: Sendable {
        var adminRoles: [String]
        var clientTLS: NIOSSLContext?
        var tlsCertificatePath: String?
        var tlsKeyPath: String?
    }

    var adminRoles: [String] { live.withLockedValue { $0.adminRoles } }

    /// The engine's threads: libpq calls of admin calls and catalog reads run there.
    let pool: PQThreadPool

    var statePolicies: StatePolicies {
        StatePolicies(serviceConnInfo: configuration.serviceConnInfo, database: configuration.stateDatabase, pool: pool)
    }

    var adminServices: AdminServices {
        AdminServices(serviceConnInfo: configuration.serviceConnInfo, policies: policies, state: statePolicies, backstop: backstop, jobs: jobs, pool: pool)
    }

    init(configuration: ProxyConfiguration, policies: PolicyStore, backstop: ServerBackstop?, jobs: JobRunner? = nil, pool: PQThreadPool = .shared,
         readConfiguration: (@Sendable () throws -> ProxyConfiguration)? = nil, requestShutdown: (@Sendable () -> Void)? = nil,
         logger: Logger) throws {
        self.pool = pool
        self.readConfiguration = readConfiguration
        self.requestShutdown = requestShutdown
        self.metrics = ProxyMetrics()
        self.policies = policies
        self.backstop = backstop
        self.jobs = jobs
        self.bufferBudget = BufferBudget(limit: configuration.maximumBufferMemory)
        self.configuration = configuration
        self.cancelRegistry = CancelRegistry()
        self.sessions = SessionRegistry()
        self.logger = logger
        self.live = NIOLockedValueBox(LiveSettings(
            adminRoles: configuration.adminRoles,
            clientTLS: try Self.clientTLS(certificate: configuration.tlsCertificatePath, key: configuration.tlsKeyPath),
            tlsCertificatePath: configuration.tlsCertificatePath, tlsKeyPath: configuration.tlsKeyPath))
        let backend = configuration.backend
        if backend.tlsMode.requestsTLS {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.minimumTLSVersion = .tlsv12
            switch backend.tlsMode {
            case .verifyFull:
                tls.certificateVerification = .fullVerification
            case .verifyCA:
                tls.certificateVerification = .noHostnameVerification
            default:
                // libpq's require/prefer encrypt without checking the certificate.
                tls.certificateVerification = .none
            }
            if let root = backend.rootCertificatePath {
                tls.trustRoots = .file(root)
            }
            backendTLS = try NIOSSLContext(configuration: tls)
        } else {
            backendTLS = nil
        }
    }

    static func clientTLS(certificate: String?, key: String?) throws -> NIOSSLContext? {
        guard let certificate, let key else { return nil }
        let chain = try NIOSSLCertificate.fromPEMFile(certificate).map { NIOSSLCertificateSource.certificate($0) }
        let privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(privateKey))
        tls.minimumTLSVersion = .tlsv12
        return try NIOSSLContext(configuration: tls)
    }
}
