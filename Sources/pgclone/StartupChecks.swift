import Foundation
import Logging
import NIOSSL
import PQ

/// What `pgclone serve` checks before it starts, each failure one line naming the option.
enum StartupChecks {
    /// The policy directory exists and is a directory.
    static func policiesDirectory(_ path: String?) throws {
        guard let path else { return }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw StartupError("--policies: \(path) does not exist")
        }
        guard isDirectory.boolValue else {
            throw StartupError("--policies: \(path) is a file, not a directory")
        }
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw StartupError("--policies: \(path) cannot be read (permission denied)")
        }
    }

    /// The certificate and key load, and belong together.
    static func tls(certificate: String?, key: String?) throws {
        guard let certificate, let key else { return }
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificate)
        } catch {
            throw StartupError("--tls-cert: cannot read a PEM certificate from \(certificate)")
        }
        let privateKey: NIOSSLPrivateKey
        do {
            privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
        } catch {
            throw StartupError("--tls-key: cannot read a PEM private key from \(key)")
        }
        do {
            _ = try NIOSSLContext(configuration: .makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(privateKey)))
        } catch {
            throw StartupError("--tls-key: does not match --tls-cert")
        }
    }

    /// The service role can log in: without it, admin calls, the server backstop and the
    /// policies created through the SQL API cannot work. A warning, or (required) a refusal.
    static func serviceConnection(_ conninfo: ConnInfo, required: Bool, pool: PQThreadPool, logger: Logger) async throws {
        var info = conninfo
        if info["connect_timeout"] == nil { info["connect_timeout"] = "5" }
        do {
            _ = try await PQConnection.connect(info.connectionString, label: "startup-check", pool: pool)
        } catch {
            let reason = firstLine(of: error)
            if required {
                throw StartupError("--backend: the service role cannot log in to the target: \(reason)")
            }
            logger.warning("the service role cannot log in to the target: admin calls, the server backstop and policies created through the SQL API do not work until it can",
                           metadata: ["error": "\(reason)"])
        }
    }

    /// libpq's messages can run over several lines (one per address tried): the first says it.
    static func firstLine(of error: any Error) -> String {
        let text = (error as? PQError)?.message ?? "\(error)"
        return text.split(separator: "\n").first.map { String($0).trimmingCharacters(in: .whitespaces) } ?? text
    }
}
