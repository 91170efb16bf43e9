import Logging
import NIOCore
import NIOSSL
import PQ

/// What every session of one proxy server shares.
final class ProxyContext: Sendable {
    let configuration: ProxyConfiguration
    let cancelRegistry: CancelRegistry
    let sessions: SessionRegistry
    let clientTLS: NIOSSLContext?
    let backendTLS: NIOSSLContext?
    let logger: Logger
    let policies: PolicyStore
    /// Keeps the server's privileges in line with the policies (nil: not run, as in some tests).
    let backstop: ServerBackstop?
    /// Runs background jobs (nil: the async admin functions answer that jobs are not available).
    let jobs: JobRunner?
    let builtinFunctions = BuiltinFunctions()
    let bufferBudget: BufferBudget

    /// The engine's threads: libpq calls of admin calls and catalog reads run there.
    let pool: PQThreadPool

    var statePolicies: StatePolicies {
        StatePolicies(serviceConnInfo: configuration.serviceConnInfo, database: configuration.stateDatabase, pool: pool)
    }

    var adminServices: AdminServices {
        AdminServices(serviceConnInfo: configuration.serviceConnInfo, policies: policies, state: statePolicies, backstop: backstop, jobs: jobs, pool: pool)
    }

    init(configuration: ProxyConfiguration, policies: PolicyStore, backstop: ServerBackstop?, jobs: JobRunner? = nil, pool: PQThreadPool = .shared,
         logger: Logger) throws {
        self.pool = pool
        self.policies = policies
        self.backstop = backstop
        self.jobs = jobs
        self.bufferBudget = BufferBudget(limit: configuration.maximumBufferMemory)
        self.configuration = configuration
        self.cancelRegistry = CancelRegistry()
        self.sessions = SessionRegistry()
        self.logger = logger
        if let certificatePath = configuration.tlsCertificatePath, let keyPath = configuration.tlsKeyPath {
            let chain = try NIOSSLCertificate.fromPEMFile(certificatePath).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
            var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
            tls.minimumTLSVersion = .tlsv12
            clientTLS = try NIOSSLContext(configuration: tls)
        } else {
            clientTLS = nil
        }
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
}
