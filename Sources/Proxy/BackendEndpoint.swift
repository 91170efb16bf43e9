import PQ

/// Where client sessions are relayed to, taken from the `--backend` conninfo.
///
/// Only `host`, `port`, `sslmode` and `sslrootcert` matter for relaying; the
/// conninfo's `user`/`password` are the proxy's service credentials and never
/// touch a client session.
public struct BackendEndpoint: Sendable, Hashable, CustomStringConvertible {
    public enum Address: Sendable, Hashable {
        case tcp(host: String, port: Int)
        /// A Unix-domain socket path (libpq: a `host` starting with `/`).
        case unixSocket(path: String)
    }

    public enum TLSMode: String, Sendable, Hashable {
        case disable, allow, prefer, require
        case verifyCA = "verify-ca"
        case verifyFull = "verify-full"

        /// Whether to ask the server for TLS at all.
        var requestsTLS: Bool { self != .disable && self != .allow }
        /// Whether a server answering 'N' is an error.
        var requiresTLS: Bool { self == .require || self == .verifyCA || self == .verifyFull }
    }

    public var address: Address
    public var tlsMode: TLSMode
    public var rootCertificatePath: String?
    /// Host name to check the server certificate against (verify-full).
    public var serverHostname: String?

    public init(address: Address, tlsMode: TLSMode = .disable, rootCertificatePath: String? = nil, serverHostname: String? = nil) {
        self.address = address
        self.tlsMode = tlsMode
        self.rootCertificatePath = rootCertificatePath
        self.serverHostname = serverHostname
    }

    /// Reads the endpoint out of a conninfo. Defaults follow libpq: port 5432,
    /// sslmode prefer; no host means the default Unix socket directory.
    public init(conninfo: ConnInfo) throws(ConfigurationError) {
        let portText = conninfo["port"] ?? "5432"
        guard let port = Int(portText), (1...65535).contains(port) else {
            throw ConfigurationError("--backend: invalid port \"\(portText)\"")
        }
        let host = conninfo["host"] ?? conninfo["hostaddr"] ?? "/var/run/postgresql"
        guard !host.contains(",") else {
            throw ConfigurationError("--backend: several hosts are not supported; name one host")
        }
        if host.hasPrefix("/") {
            address = .unixSocket(path: "\(host)/.s.PGSQL.\(port)")
        } else {
            address = .tcp(host: host, port: port)
        }
        let modeText = conninfo["sslmode"] ?? (host.hasPrefix("/") ? "disable" : "prefer")
        guard let mode = TLSMode(rawValue: modeText) else {
            throw ConfigurationError("--backend: invalid sslmode \"\(modeText)\"")
        }
        tlsMode = host.hasPrefix("/") ? .disable : mode
        rootCertificatePath = conninfo["sslrootcert"]
        serverHostname = host.hasPrefix("/") ? nil : host
    }

    public var description: String {
        switch address {
        case .tcp(let host, let port): "\(host):\(port)"
        case .unixSocket(let path): path
        }
    }
}
