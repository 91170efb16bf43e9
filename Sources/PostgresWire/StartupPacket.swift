import NIOCore

/// The first packet(s) a client sends, before typed messages begin.
///
/// These frames have no type byte: `Int32 length, Int32 code, payload`.
public enum StartupPacket: Hashable, Sendable {
    case sslRequest
    case gssEncryptionRequest
    case cancelRequest(BackendKey)
    /// A StartupMessage. `parameters` keeps the client's order (user, database, options, ...).
    case startup(protocolVersion: ProtocolVersion, parameters: [(String, String)])

    public struct ProtocolVersion: Hashable, Sendable, CustomStringConvertible {
        public var major: UInt16
        public var minor: UInt16
        public init(major: UInt16, minor: UInt16) { self.major = major; self.minor = minor }
        public var code: Int32 { Int32(bitPattern: UInt32(major) << 16 | UInt32(minor)) }
        public var description: String { "\(major).\(minor)" }
        public static let v3_0 = ProtocolVersion(major: 3, minor: 0)
    }

    public static let sslRequestCode: Int32 = 80_877_103
    public static let cancelRequestCode: Int32 = 80_877_102
    public static let gssEncRequestCode: Int32 = 80_877_104

    /// Decodes one startup packet from the front of `buffer`.
    ///
    /// Returns `nil` (consuming nothing) while the packet is incomplete.
    public static func decode(from buffer: inout ByteBuffer) throws(WireError) -> StartupPacket? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: Int32.self) else { return nil }
        guard length >= 8, length <= WireLimits.maximumStartupPacketLength else {
            throw WireError(.invalidLength(Int(length)))
        }
        guard buffer.readableBytes >= Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        var payload = buffer.readSlice(length: Int(length) - 4)!
        let code: Int32 = try payload.readWireInteger()
        switch code {
        case sslRequestCode:
            try payload.expectFullyConsumed()
            return .sslRequest
        case gssEncRequestCode:
            try payload.expectFullyConsumed()
            return .gssEncryptionRequest
        case cancelRequestCode:
            let pid: Int32 = try payload.readWireInteger()
            let secret: Int32 = try payload.readWireInteger()
            try payload.expectFullyConsumed()
            return .cancelRequest(BackendKey(processID: pid, secretKey: secret))
        default:
            let version = ProtocolVersion(major: UInt16(truncatingIfNeeded: code >> 16), minor: UInt16(truncatingIfNeeded: code))
            var parameters: [(String, String)] = []
            while true {
                let name = try payload.readCString()
                if name.isEmpty { break }
                let value = try payload.readCString()
                parameters.append((name, value))
            }
            try payload.expectFullyConsumed()
            return .startup(protocolVersion: version, parameters: parameters)
        }
    }

    public func encode(into buffer: inout ByteBuffer) {
        let start = buffer.writerIndex
        buffer.writeInteger(Int32(0))
        switch self {
        case .sslRequest: buffer.writeInteger(Self.sslRequestCode)
        case .gssEncryptionRequest: buffer.writeInteger(Self.gssEncRequestCode)
        case .cancelRequest(let key):
            buffer.writeInteger(Self.cancelRequestCode)
            buffer.writeInteger(key.processID)
            buffer.writeInteger(key.secretKey)
        case .startup(let version, let parameters):
            buffer.writeInteger(version.code)
            for (name, value) in parameters {
                buffer.writeCString(name)
                buffer.writeCString(value)
            }
            buffer.writeInteger(UInt8(0))
        }
        buffer.setInteger(Int32(buffer.writerIndex - start), at: start)
    }

    public static func == (lhs: StartupPacket, rhs: StartupPacket) -> Bool {
        switch (lhs, rhs) {
        case (.sslRequest, .sslRequest), (.gssEncryptionRequest, .gssEncryptionRequest): return true
        case (.cancelRequest(let a), .cancelRequest(let b)): return a == b
        case (.startup(let v1, let p1), .startup(let v2, let p2)):
            return v1 == v2 && p1.elementsEqual(p2, by: { $0.0 == $1.0 && $0.1 == $1.1 })
        default: return false
        }
    }

    public func hash(into hasher: inout Hasher) {
        switch self {
        case .sslRequest: hasher.combine(0)
        case .gssEncryptionRequest: hasher.combine(1)
        case .cancelRequest(let key): hasher.combine(key)
        case .startup(let version, let parameters):
            hasher.combine(version)
            for (name, value) in parameters { hasher.combine(name); hasher.combine(value) }
        }
    }
}

/// The (process ID, secret key) pair a server hands out for cancellation.
public struct BackendKey: Hashable, Sendable {
    public var processID: Int32
    public var secretKey: Int32
    public init(processID: Int32, secretKey: Int32) {
        self.processID = processID
        self.secretKey = secretKey
    }
}
