import ArgumentParser
import Foundation
import Logging
import Masking
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import Prometheus
import NIOPosix
import UnixSignals
import Proxy
import ServiceLifecycle

extension Pgclone {
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the proxy in front of a PostgreSQL server.",
            discussion: """
            Every option can also come from a PGCLONE_* environment variable (PGCLONE_BACKEND, \
            PGCLONE_LISTEN, ...) or from the config file (backend = ..., listen = ...). \
            Flags win over the environment, which wins over the file. \
            SIGHUP (or RELOAD in the console) re-reads the config file, the environment and the \
            policies: log level, admin roles, policies directory, TLS certificate and key and the \
            mask secret change without dropping a session; other settings need a restart (logged). \
            SIGTERM and SIGINT stop accepting connections and let sessions finish for the grace period. \
            Connecting to the database "pgclone" opens the admin console (SHOW HELP).
            """
        )

        @Option(help: "Config file with `key = value` lines.")
        var config: String?
        @Option(help: "Address to listen on (default 127.0.0.1:6432).")
        var listen: String?
        @Option(help: "libpq conninfo of the target server; user/password are the proxy's service credentials.")
        var backend: String?
        @Option(help: "Directory of masking policy files (*.yaml).")
        var policies: String?
        @Option(help: "Roles whose members may call the pgclone.* admin API (comma-separated).")
        var adminRoles: String?
        @Option(help: "Target database holding pgclone's state (default postgres).")
        var stateDatabase: String?
        @Option(help: "PEM certificate for client TLS.")
        var tlsCert: String?
        @Option(help: "PEM private key for client TLS.")
        var tlsKey: String?
        @Option(help: "Serve Prometheus metrics at http://HOST:PORT/metrics.")
        var metrics: String?
        @Option(help: "Seconds sessions may take to finish after SIGTERM (default 30).")
        var shutdownGrace: String?
        @Option(help: "Seconds a client may take to finish startup and authentication (default 60).")
        var clientLoginTimeout: String?
        @Option(help: "Most client connections at once; more get SQLSTATE 53300 (default: what the descriptor limit allows).")
        var maxClientConn: String?
        @Option(help: "Megabytes all sessions together may use to hold client messages; a session waits when it is spent (default 256).")
        var maxBufferMemory: String?
        @Option(help: "Event loop threads (default: one per core).")
        var threads: String?
        @Option(help: "Threads for libpq calls of admin calls, jobs and catalog reads; each COPY in flight holds one (default 16).")
        var engineThreads: String?
        @Option(help: "Log level: trace, debug, info, notice, warning, error, critical (default info).")
        var logLevel: String?
        @Option(help: "Secret for the keyed strategies (pseudonym, fake_name, fake_email, noise); prefer PGCLONE_MASK_SECRET.")
        var maskSecret: String?

        @Flag(help: "Refuse to start when the service role cannot log in to the target (default: warn and start).")
        var requireBackend = false

        func run() async throws {
            do {
                try await serve()
            } catch let error as StartupError {
                // One line that says what is wrong and where, and a non-zero exit.
                FileHandle.standardError.write(Data("pgclone: \(error.message)\n".utf8))
                throw ExitCode.failure
            }
        }

        private func serve() async throws {
            // Before the configuration sizes the client limit on it.
            let descriptors = DescriptorLimit.raiseSoftLimitToHard()
            let settings: ServeSettings
            let configuration: ProxyConfiguration
            let flags: [String: String?]
            do {
                flags = [
                        "listen": listen, "backend": backend, "policies": policies, "admin_roles": adminRoles,
                        "state_database": stateDatabase, "tls_cert": tlsCert, "tls_key": tlsKey, "metrics": metrics,
                        "shutdown_grace": shutdownGrace, "threads": threads, "log_level": logLevel, "mask_secret": maskSecret,
                        "client_login_timeout": clientLoginTimeout, "max_client_conn": maxClientConn, "max_buffer_memory": maxBufferMemory,
                        "engine_threads": engineThreads,
                    ]
                settings = try ServeSettings(flags: flags, environment: ProcessInfo.processInfo.environment, configFile: config)
                configuration = try settings.proxyConfiguration()
            } catch let error as ConfigurationError {
                throw StartupError(error.message)
            }
            if let secret = settings["mask_secret"] {
                do {
                    try MaskingKey.install(secret)
                } catch {
                    throw StartupError("--mask-secret: \(error.message)")
                }
            }
            try StartupChecks.policiesDirectory(configuration.policiesDirectory)
            try StartupChecks.tls(certificate: configuration.tlsCertificatePath, key: configuration.tlsKeyPath)
            LiveLogLevel.level = Logger.Level(rawValue: configuration.logLevel) ?? .info
            LoggingSystem.bootstrap { label in LiveLogLevel.Handler(label: label) }
            let logger = Logger(label: "pgclone")
            if let descriptors {
                logger.info("descriptor limit raised to the hard limit", metadata: ["from": "\(descriptors.before)", "to": "\(descriptors.after)"])
            }
            // Every libpq call of the proxy runs on the engine's threads (the shared pool of the
            // one-shot commands is never started here).
            let engine = EngineService(threads: configuration.engineThreads)
            try await StartupChecks.serviceConnection(configuration.serviceConnInfo, required: requireBackend, pool: engine.pool, logger: logger)
            var metricsRegistry: PrometheusCollectorRegistry?
            if configuration.metricsHost != nil {
                let registry = PrometheusCollectorRegistry()
                var factory = PrometheusMetricsFactory(registry: registry)
                factory.durationHistogramBuckets["pgclone_statement_duration_seconds"] = [
                    .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
                    .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
                    .seconds(1), .seconds(2), .seconds(5), .seconds(10), .seconds(30),
                ]
                MetricsSystem.bootstrap(factory)
                metricsRegistry = registry
            }
            // RELOAD and SIGHUP read everything again, as at start.
            let configFile = config
            let readConfiguration: @Sendable () throws -> ProxyConfiguration = {
                let settings = try ServeSettings(flags: flags, environment: ProcessInfo.processInfo.environment, configFile: configFile)
                let configuration = try settings.proxyConfiguration()
                if let secret = settings["mask_secret"] {
                    do { try MaskingKey.install(secret) } catch let error as MaskError { throw ConfigurationError("--mask-secret: \(error.message)") }
                }
                do {
                    try StartupChecks.policiesDirectory(configuration.policiesDirectory)
                    try StartupChecks.tls(certificate: configuration.tlsCertificatePath, key: configuration.tlsKeyPath)
                } catch let error as StartupError {
                    throw ConfigurationError(error.message)
                }
                return configuration
            }
            let serviceGroupBox = NIOLockedValueBox<ServiceGroup?>(nil)
            let requestShutdown: @Sendable () -> Void = {
                Task { await serviceGroupBox.withLockedValue { $0 }?.triggerGracefulShutdown() }
            }

            let group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.eventLoopThreads)
            let policies = PolicyStore(directory: configuration.policiesDirectory, hasStateSource: true, logger: logger)
            if let error = policies.reload() {
                throw StartupError("--policies: \(error.replacingOccurrences(of: "\n", with: "; "))")
            }
            let backstop = ServerBackstop(serviceConnInfo: configuration.serviceConnInfo, policies: policies, logger: logger,
                                          stateDatabase: configuration.stateDatabase, pool: engine.guardPool)
            let jobs = JobRunner(serviceConnInfo: configuration.serviceConnInfo, stateDatabase: configuration.stateDatabase, logger: logger, pool: engine.pool,
                                 storePool: engine.jobsPool)
            let server: ProxyServer
            do {
                server = try ProxyServer(configuration: configuration, group: group, logger: logger, policies: policies, backstop: backstop,
                                         jobs: jobs, pool: engine.pool, readConfiguration: readConfiguration, requestShutdown: requestShutdown)
            } catch {
                throw StartupError("cannot start the proxy: \(error)")
            }
            var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
            if let registry = metricsRegistry, let host = configuration.metricsHost, let port = configuration.metricsPort {
                services.append(.init(service: MetricsServer(host: host, port: port, group: group, logger: logger) {
                    await server.updateScrapeGauges()
                    return registry.emitToBuffer()
                }))
            }
            let serviceGroup = ServiceGroup(configuration: .init(
                services: services + [
                    // The engine's threads start first and stop last (services stop in reverse order).
                    .init(service: engine),
                    .init(service: PolicyReloader(store: policies, state: StatePolicies(serviceConnInfo: configuration.serviceConnInfo,
                                                                                        database: configuration.stateDatabase, pool: engine.guardPool),
                                                  onHangup: { _ = await server.reload() })),
                    .init(service: backstop),
                    // Jobs start before the proxy and stop after it (services stop in reverse order).
                    .init(service: jobs),
                    .init(service: server),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                cancellationSignals: [],
                logger: logger
            ).withGracePeriod(configuration.shutdownGracePeriod))
            serviceGroupBox.withLockedValue { $0 = serviceGroup }
            do {
                try await serviceGroup.run()
            } catch let error as IOError where error.errnoCode == EADDRINUSE {
                throw StartupError("--listen \(configuration.listenHost):\(configuration.listenPort): address already in use")
            } catch let error as IOError where error.errnoCode == EADDRNOTAVAIL {
                throw StartupError("--listen \(configuration.listenHost):\(configuration.listenPort): no such address on this machine")
            } catch let error as IOError where error.errnoCode == EACCES {
                throw StartupError("--listen \(configuration.listenHost):\(configuration.listenPort): permission denied")
            }
            await engine.shutdown()
            try await group.shutdownGracefully()
        }
    }
}

/// A reason `pgclone serve` cannot start, as one line.
struct StartupError: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

extension ServiceGroupConfiguration {
    func withGracePeriod(_ period: Duration) -> ServiceGroupConfiguration {
        var copy = self
        copy.maximumGracefulShutdownDuration = period
        return copy
    }
}
