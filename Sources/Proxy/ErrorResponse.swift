import NIOCore
import PostgresWire

extension ByteBuffer {
    /// An ErrorResponse ready to send.
    static func errorResponse(_ fields: ErrorFields) -> ByteBuffer {
        var buffer = ByteBuffer()
        BackendMessage.errorResponse(fields).encode(into: &buffer)
        return buffer
    }
}
