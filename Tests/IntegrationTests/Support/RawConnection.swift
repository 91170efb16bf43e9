import Foundation
import NIOCore
import PostgresWire
#if canImport(Glibc)
import Glibc
#endif

/// A plain blocking TCP client for sending exact (including malformed) protocol bytes.
final class RawConnection {
    private let fd: Int32
    private var pending = ByteBuffer()

    init(port: Int, timeoutSeconds: Int = 10) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw RawError("socket failed") }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            Glibc.close(fd)
            throw RawError("connect failed")
        }
    }

    deinit { Glibc.close(fd) }

    func send(_ buffer: ByteBuffer) throws {
        let bytes = Array(buffer.readableBytesView)
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { throw RawError("send failed") }
            offset += sent
        }
    }

    func send(_ message: FrontendMessage) throws {
        var buffer = ByteBuffer()
        message.encode(into: &buffer)
        try send(buffer)
    }

    func send(_ packet: StartupPacket) throws {
        var buffer = ByteBuffer()
        packet.encode(into: &buffer)
        try send(buffer)
    }

    /// Reads raw bytes; `nil` at end of stream.
    func receiveBytes() throws -> ByteBuffer? {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count == 0 { return nil }
        guard count > 0 else { throw RawError("receive failed or timed out (errno \(errno))") }
        return ByteBuffer(bytes: chunk[0..<count])
    }

    /// The next backend message, or `nil` when the server closed the connection.
    func receive() throws -> BackendMessage? {
        while true {
            if let frame = try MessageFrame.read(from: &pending) {
                return try BackendMessage.decode(frame)
            }
            guard var bytes = try receiveBytes() else { return nil }
            pending.writeBuffer(&bytes)
        }
    }

    /// Reads messages up to and including the first of `type`.
    func receive(until id: BackendMessage.ID) throws -> [BackendMessage] {
        var messages: [BackendMessage] = []
        while let message = try receive() {
            messages.append(message)
            if message.id == id { return messages }
        }
        throw RawError("connection closed before \(id); got \(messages.map(\.id))")
    }

    /// Logs in as a role that the test cluster trusts (no password exchange).
    func startTrusted(user: String, database: String = "db2") throws -> [BackendMessage] {
        try send(StartupPacket.startup(protocolVersion: .v3_0, parameters: [("user", user), ("database", database)]))
        return try receive(until: .readyForQuery)
    }
}

struct RawError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs blocking work off Swift's cooperative pool.
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}
