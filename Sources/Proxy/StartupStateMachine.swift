import NIOCore
import PostgresWire

/// The client's startup phase: encryption negotiation, then one StartupMessage
/// or CancelRequest. Bytes in, one action out; no I/O.
public struct StartupStateMachine: Sendable {
    public enum Action: Sendable, Equatable {
        /// The packet is incomplete: read more.
        case wait
        /// Answer 'S' and start TLS on the client connection.
        case acceptTLS
        /// Answer 'N': the client may go on in plaintext.
        case refuseEncryption
        /// Forward a cancel for this (proxy-issued) key, then close.
        case cancel(BackendKey)
        /// Open the backend connection and send it `packet` verbatim, then any `leftover` bytes.
        case connectBackend(packet: ByteBuffer, user: String, database: String, applicationName: String?, leftover: ByteBuffer)
        /// Send this error to the client and close.
        case reject(ErrorFields)
    }

    private enum State: Sendable {
        case awaitingPacket(tlsNegotiated: Bool, gssRefused: Bool)
        case finished
    }

    private var state: State = .awaitingPacket(tlsNegotiated: false, gssRefused: false)
    private var buffer = ByteBuffer()
    public let tlsAvailable: Bool

    public init(tlsAvailable: Bool) {
        self.tlsAvailable = tlsAvailable
    }

    /// Feeds newly read bytes; call again with an empty buffer after `acceptTLS`
    /// or `refuseEncryption` in case the client pipelined its next packet.
    public mutating func bytesReceived(_ input: ByteBuffer) -> Action {
        guard case .awaitingPacket(let tlsNegotiated, let gssRefused) = state else {
            preconditionFailure("startup bytes after the startup phase ended")
        }
        var input = input
        buffer.writeBuffer(&input)
        let packetStart = buffer.readerIndex
        // Get-methods only reach readable bytes: keep a view from before the decode.
        let unread = buffer
        let packet: StartupPacket?
        do {
            packet = try StartupPacket.decode(from: &buffer)
        } catch {
            return finish(.reject(ErrorFields(severity: .fatal, sqlState: "08P01", message: "invalid startup packet: \(error)")))
        }
        guard let packet else { return .wait }
        let raw = unread.getSlice(at: packetStart, length: buffer.readerIndex - packetStart)!

        switch packet {
        case .sslRequest:
            guard !tlsNegotiated else {
                return finish(.reject(Self.violation("duplicate SSL negotiation request")))
            }
            if tlsAvailable {
                // Bytes that arrived with the SSLRequest were sent in plaintext
                // before the handshake: accepting them would let a man in the
                // middle inject commands (CVE-2021-23214).
                guard buffer.readableBytes == 0 else {
                    return finish(.reject(Self.violation("received unencrypted data after SSL request")))
                }
                state = .awaitingPacket(tlsNegotiated: true, gssRefused: gssRefused)
                return .acceptTLS
            }
            state = .awaitingPacket(tlsNegotiated: true, gssRefused: gssRefused)
            return .refuseEncryption
        case .gssEncryptionRequest:
            guard !gssRefused, !tlsNegotiated else {
                return finish(.reject(Self.violation("duplicate GSSAPI negotiation request")))
            }
            state = .awaitingPacket(tlsNegotiated: tlsNegotiated, gssRefused: true)
            return .refuseEncryption
        case .cancelRequest(let key):
            return finish(.cancel(key))
        case .startup(let version, let parameters):
            return finish(startup(version: version, parameters: parameters, raw: raw))
        }
    }

    private mutating func startup(version: StartupPacket.ProtocolVersion, parameters: [(String, String)], raw: ByteBuffer) -> Action {
        guard version.major == 3 else {
            return .reject(ErrorFields(
                severity: .fatal, sqlState: "0A000",
                message: "unsupported frontend protocol \(version): server supports 3.0 to 3.0"))
        }
        var values: [String: String] = [:]
        for (name, value) in parameters { values[name] = value }
        if let replication = values["replication"], !["false", "off", "no", "0"].contains(replication.lowercased()) {
            return .reject(ErrorFields(
                severity: .fatal, sqlState: "0A000",
                message: "pgclone does not relay replication connections",
                hint: "Connect replication clients to the PostgreSQL server directly."))
        }
        guard let user = values["user"], !user.isEmpty else {
            return .reject(ErrorFields(severity: .fatal, sqlState: "28000", message: "no PostgreSQL user name specified in startup packet"))
        }
        let database = values["database"].flatMap { $0.isEmpty ? nil : $0 } ?? user
        let leftover = buffer.readSlice(length: buffer.readableBytes)!
        return .connectBackend(packet: raw, user: user, database: database, applicationName: values["application_name"], leftover: leftover)
    }

    private mutating func finish(_ action: Action) -> Action {
        state = .finished
        buffer = ByteBuffer()
        return action
    }

    static func violation(_ message: String) -> ErrorFields {
        ErrorFields(severity: .fatal, sqlState: "08P01", message: message)
    }
}
