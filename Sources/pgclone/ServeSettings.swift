import Foundation
import Proxy
import PQ

/// `serve` settings merged from flags, then `PGCLONE_*` environment variables, then the config file.
///
/// The config file has one `key = value` per line (`#` starts a comment); keys
/// are the flag names without dashes, with `_` for `-` (`tls_cert`, `admin_roles`).
struct ServeSettings {
    static let keys = [
        "listen", "backend", "policies", "admin_roles", "state_database",
        "tls_cert", "tls_key", "metrics", "shutdown_grace", "threads", "log_level", "mask_secret",
        "client_login_timeout", "max_client_conn", "max_buffer_memory", "engine_threads",
    ]

    private var values: [String: String] = [:]

    init(flags: [String: String?], environment: [String: String], configFile: String?) throws {
        if let configFile {
            let text: String
            do {
                text = try String(contentsOfFile: configFile, encoding: .utf8)
            } catch {
                throw ConfigurationError("cannot read config file \(configFile): \(error.localizedDescription)")
            }
            for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if trimmed.isEmpty { continue }
                guard let equals = trimmed.firstIndex(of: "=") else {
                    throw ConfigurationError("\(configFile):\(number + 1): expected \"key = value\"")
                }
                let key = trimmed[..<equals].trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "-", with: "_")
                guard Self.keys.contains(key) else {
                    throw ConfigurationError("\(configFile):\(number + 1): unknown key \"\(key)\" (known: \(Self.keys.joined(separator: ", ")))")
                }
                var value = trimmed[trimmed.index(after: equals)...].trimmingCharacters(in: .whitespaces)
                if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
                    value = String(value.dropFirst().dropLast())
                }
                values[key] = value
            }
        }
        for key in Self.keys {
            if let value = environment["PGCLONE_" + key.uppercased()], !value.isEmpty {
                values[key] = value
            }
        }
        for (key, value) in flags {
            if let value { values[key] = value }
        }
    }

    subscript(key: String) -> String? { values[key] }

    func proxyConfiguration() throws -> ProxyConfiguration {
        let (host, port) = try Self.hostPort(self["listen"] ?? "127.0.0.1:6432", what: "--listen")
        guard let backendText = self["backend"] else {
            throw ConfigurationError("--backend is required (a libpq conninfo for the target server, e.g. \"host=127.0.0.1 port=5432 user=postgres\")")
        }
        let conninfo: ConnInfo
        do {
            conninfo = try ConnInfo(parsing: backendText)
        } catch {
            throw ConfigurationError("--backend: \(error)")
        }
        var configuration = ProxyConfiguration(listenHost: host, listenPort: port, backend: try BackendEndpoint(conninfo: conninfo), serviceConnInfo: conninfo)
        switch (self["tls_cert"], self["tls_key"]) {
        case (let cert?, let key?):
            configuration.tlsCertificatePath = cert
            configuration.tlsKeyPath = key
        case (nil, nil):
            break
        default:
            throw ConfigurationError("--tls-cert and --tls-key go together")
        }
        if let grace = self["shutdown_grace"] {
            guard let seconds = Double(grace), seconds >= 0 else {
                throw ConfigurationError("--shutdown-grace: expected seconds, got \"\(grace)\"")
            }
            configuration.shutdownGracePeriod = .milliseconds(Int64(seconds * 1000))
        }
        configuration.policiesDirectory = self["policies"]
        if let database = self["state_database"], !database.isEmpty { configuration.stateDatabase = database }
        if let roles = self["admin_roles"] {
            configuration.adminRoles = roles.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        if let timeout = self["client_login_timeout"] {
            guard let seconds = Double(timeout), seconds > 0 else {
                throw ConfigurationError("--client-login-timeout: expected seconds above 0, got \"\(timeout)\"")
            }
            configuration.clientLoginTimeout = .milliseconds(Int64(seconds * 1000))
        }
        if let limit = self["max_client_conn"] {
            guard let count = Int(limit), count > 0 else {
                throw ConfigurationError("--max-client-conn: expected a number above 0, got \"\(limit)\"")
            }
            configuration.maximumClientConnections = count
        }
        if let memory = self["max_buffer_memory"] {
            guard let megabytes = Int(memory), megabytes > 0 else {
                throw ConfigurationError("--max-buffer-memory: expected megabytes above 0, got \"\(memory)\"")
            }
            configuration.maximumBufferMemory = megabytes << 20
        }
        if let threads = self["threads"] {
            guard let count = Int(threads), (1...256).contains(count) else {
                throw ConfigurationError("--threads: expected 1 to 256, got \"\(threads)\"")
            }
            configuration.eventLoopThreads = count
        }
        if let threads = self["engine_threads"] {
            guard let count = Int(threads), (2...1024).contains(count) else {
                throw ConfigurationError("--engine-threads: expected 2 to 1024, got \"\(threads)\"")
            }
            configuration.engineThreads = count
        }
        if let level = self["log_level"] {
            guard LiveLogLevel.levels.contains(level) else {
                throw ConfigurationError("--log-level: expected one of \(LiveLogLevel.levels.joined(separator: ", ")), got \"\(level)\"")
            }
            configuration.logLevel = level
        }
        if let metrics = self["metrics"], !metrics.isEmpty {
            let (host, port) = try Self.hostPort(metrics, what: "--metrics")
            configuration.metricsHost = host
            configuration.metricsPort = port
        }
        return configuration
    }

    static func hostPort(_ text: String, what: String) throws -> (String, Int) {
        guard let colon = text.lastIndex(of: ":") else {
            throw ConfigurationError("\(what): expected HOST:PORT, got \"\(text)\"")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port), !host.isEmpty else {
            throw ConfigurationError("\(what): expected HOST:PORT, got \"\(text)\"")
        }
        return (host, port)
    }
}
