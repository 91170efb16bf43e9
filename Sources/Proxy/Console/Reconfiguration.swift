import Foundation
import NIOSSL
import Logging
import Masking
import NIOConcurrencyHelpers
import PQ
import Synchronization

/// What a RELOAD (or SIGHUP) did.
public struct ReloadReport: Sendable {
    /// Why nothing changed (a setting or a policy file was invalid).
    public var error: String?
    /// Settings now in force with a new value.
    public var changed: [String] = []
    /// Settings with a new value that only a restart applies.
    public var needsRestart: [String] = []
}

extension ProxyContext {
    /// Re-reads the settings (config file, environment, flags) and the policies. What can
    /// change live changes without dropping a session: log level, admin roles, policies
    /// directory, TLS certificate and key (read again even at the same paths), mask secret.
    /// What cannot is reported as needing a restart. Anything invalid rejects the whole
    /// reload: the settings and policies in force stay.
    func reload() async -> ReloadReport {
        var report = ReloadReport()
        /// Nothing changes; the reason is logged, counted and returned.
        func rejected(_ error: String) -> ReloadReport {
            report.error = error
            logger.error("reload rejected; the settings in force stay", metadata: ["error": "\(error)"])
            metrics.policyReloads(ok: false)
            return report
        }
        if let readConfiguration {
            let new: ProxyConfiguration
            do {
                new = try readConfiguration()
            } catch {
                return rejected((error as? ConfigurationError)?.message ?? "\(error)")
            }
            if policies.directory != nil && new.policiesDirectory == nil {
                return rejected("policies: removing the policies directory would turn its masking off; restart pgclone to do that")
            }
            // The policy files of the (new) directory must load before anything changes: a reload
            // is all or nothing.
            if let directory = new.policiesDirectory {
                do {
                    _ = try PolicyLoader.load(directory: directory)
                } catch {
                    return rejected("policies: \(error.description.replacingOccurrences(of: "\n", with: "; "))")
                }
            }
            let tls: NIOSSLContext?
            do {
                tls = try Self.clientTLS(certificate: new.tlsCertificatePath, key: new.tlsKeyPath)
            } catch {
                return rejected("--tls-cert/--tls-key: \(error)")
            }
            let old = live.withLockedValue { $0 }
            let level = Logger.Level(rawValue: new.logLevel) ?? LiveLogLevel.level
            if old.adminRoles != new.adminRoles { report.changed.append("admin_roles") }
            if policies.directory != new.policiesDirectory { report.changed.append("policies") }
            if LiveLogLevel.level != level { report.changed.append("log_level") }
            if old.tlsCertificatePath != new.tlsCertificatePath || old.tlsKeyPath != new.tlsKeyPath || new.tlsCertificatePath != nil {
                report.changed.append("tls_cert")
            }
            live.withLockedValue { settings in
                settings.adminRoles = new.adminRoles
                settings.clientTLS = tls
                settings.tlsCertificatePath = new.tlsCertificatePath
                settings.tlsKeyPath = new.tlsKeyPath
            }
            LiveLogLevel.level = level
            policies.setDirectory(new.policiesDirectory)
            liveGeneration.add(1, ordering: .releasing)
            let current = configuration
            var restart: [String] = []
            if new.listenHost != current.listenHost || new.listenPort != current.listenPort { restart.append("listen") }
            if new.serviceConnInfo.connectionString != current.serviceConnInfo.connectionString { restart.append("backend") }
            if new.stateDatabase != current.stateDatabase { restart.append("state_database") }
            if new.eventLoopThreads != current.eventLoopThreads { restart.append("threads") }
            if new.engineThreads != current.engineThreads { restart.append("engine_threads") }
            if new.metricsHost != current.metricsHost || new.metricsPort != current.metricsPort { restart.append("metrics") }
            if new.maximumClientConnections != current.maximumClientConnections { restart.append("max_client_conn") }
            if new.maximumBufferMemory != current.maximumBufferMemory { restart.append("max_buffer_memory") }
            if new.shutdownGracePeriod != current.shutdownGracePeriod { restart.append("shutdown_grace") }
            if new.clientLoginTimeout != current.clientLoginTimeout { restart.append("client_login_timeout") }
            report.needsRestart = restart
            if !restart.isEmpty {
                logger.warning("settings changed that only a restart applies", metadata: ["settings": "\(restart.joined(separator: ", "))"])
            }
        }
        if let error = policies.reload() {
            return rejected("policies: \(error)")
        }
        if let statePolicies = try? await self.statePolicies.load() { policies.setStatePolicies(statePolicies) }
        metrics.policyReloads(ok: true)
        logger.notice("reloaded", metadata: ["changed": "\(report.changed.joined(separator: ", "))"])
        return report
    }

    /// SHOW CONFIG: every setting, its value now, its default, whether RELOAD changes it.
    func settingsReport() -> [(key: String, value: String, defaultValue: String, changeable: Bool)] {
        let settings = live.withLockedValue { $0 }
        let c = configuration
        var backend = c.serviceConnInfo
        for secret in ["password", "sslpassword"] where backend[secret] != nil { backend[secret] = "********" }
        let defaults = ProxyConfiguration.defaultsForDisplay
        let rows: [(String, String, Bool)] = [
            ("listen", "\(c.listenHost):\(c.listenPort)", false),
            ("backend", backend.connectionString, false),
            ("policies", policies.directory ?? "", true),
            ("admin_roles", settings.adminRoles.joined(separator: ","), true),
            ("state_database", c.stateDatabase, false),
            ("tls_cert", settings.tlsCertificatePath ?? "", true),
            ("tls_key", settings.tlsKeyPath ?? "", true),
            ("metrics", c.metricsHost.map { "\($0):\(c.metricsPort ?? 0)" } ?? "", false),
            ("shutdown_grace", "\(c.shutdownGracePeriod.components.seconds)", false),
            ("client_login_timeout", "\(c.clientLoginTimeout.components.seconds)", false),
            ("max_client_conn", "\(c.maximumClientConnections)", false),
            ("max_buffer_memory", "\(c.maximumBufferMemory >> 20)", false),
            ("threads", "\(c.eventLoopThreads)", false),
            ("engine_threads", "\(c.engineThreads)", false),
            ("log_level", LiveLogLevel.level.rawValue, true),
            ("mask_secret", MaskingKey.isInstalled ? "(set)" : "", true),
        ]
        return rows.map { ($0.0, $0.1, defaults[$0.0] ?? "", $0.2) }
    }
}

extension ProxyConfiguration {
    static let defaultsForDisplay: [String: String] = [
        "listen": "127.0.0.1:6432", "state_database": "postgres", "shutdown_grace": "30", "client_login_timeout": "60",
        "max_buffer_memory": "256", "engine_threads": "16", "log_level": "info", "threads": "(one per core)",
        "max_client_conn": "(from the descriptor limit)",
    ]
}
