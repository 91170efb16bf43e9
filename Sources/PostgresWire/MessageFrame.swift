import NIOCore

/// One typed message as it appears on the wire, payload not yet decoded.
public struct MessageFrame: Hashable, Sendable {
    public var type: UInt8
    /// The payload, without type byte and length.
    public var payload: ByteBuffer

    public init(type: UInt8, payload: ByteBuffer) {
        self.type = type
        self.payload = payload
    }

    /// Takes one complete frame from the front of `buffer`; `nil` (consuming nothing) while incomplete.
    ///
    /// The declared length is checked before any payload is awaited, so a hostile
    /// length is rejected at once instead of making the caller buffer towards it.
    public static func read(from buffer: inout ByteBuffer, maximumLength: Int = WireLimits.maximumMessageLength) throws(WireError) -> MessageFrame? {
        guard let header = try peekHeader(buffer, maximumLength: maximumLength) else { return nil }
        guard buffer.readableBytes >= header.length + 1 else { return nil }
        buffer.moveReaderIndex(forwardBy: 5)
        let payload = buffer.readSlice(length: header.length - 4)!
        return MessageFrame(type: header.type, payload: payload)
    }

    /// Type byte and declared length (which counts itself but not the type byte).
    public static func peekHeader(_ buffer: ByteBuffer, maximumLength: Int = WireLimits.maximumMessageLength) throws(WireError) -> (type: UInt8, length: Int)? {
        guard buffer.readableBytes >= 5,
              let type = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
              let length = buffer.getInteger(at: buffer.readerIndex + 1, as: Int32.self)
        else { return nil }
        guard length >= 4, Int(length) <= maximumLength else {
            throw WireError(.invalidLength(Int(length)), messageType: type)
        }
        return (type, Int(length))
    }

    public func encode(into buffer: inout ByteBuffer) {
        buffer.writeInteger(type)
        buffer.writeInteger(Int32(payload.readableBytes + 4))
        var payload = self.payload
        buffer.writeBuffer(&payload)
    }
}
