import NIOCore

extension ByteBuffer {
    /// Reads a NUL-terminated string, or throws `truncated` when there is no terminator.
    @inlinable
    public mutating func readCString() throws(WireError) -> String {
        guard let nul = self.readableBytesView.firstIndex(of: 0) else {
            throw WireError(.truncated)
        }
        let length = nul - self.readerIndex
        let string = self.readString(length: length)!
        self.moveReaderIndex(forwardBy: 1)
        return string
    }

    @inlinable
    public mutating func writeCString(_ string: String) {
        self.writeString(string)
        self.writeInteger(UInt8(0))
    }

    @inlinable
    public mutating func readWireInteger<T: FixedWidthInteger>(as: T.Type = T.self) throws(WireError) -> T {
        guard let value = self.readInteger(as: T.self) else { throw WireError(.truncated) }
        return value
    }

    /// Reads an Int32 length-prefixed value: -1 is SQL NULL (`nil`).
    @inlinable
    public mutating func readWireValue() throws(WireError) -> ByteBuffer? {
        let length: Int32 = try readWireInteger()
        if length == -1 { return nil }
        guard length >= 0 else { throw WireError(.invalidField("value length \(length)")) }
        guard let slice = self.readSlice(length: Int(length)) else { throw WireError(.truncated) }
        return slice
    }

    @inlinable
    public mutating func writeWireValue(_ value: ByteBuffer?) {
        guard var value else {
            self.writeInteger(Int32(-1))
            return
        }
        self.writeInteger(Int32(value.readableBytes))
        self.writeBuffer(&value)
    }

    /// Reads a count prefix (Int16) that must not be negative.
    @inlinable
    public mutating func readWireCount() throws(WireError) -> Int {
        let count: Int16 = try readWireInteger()
        guard count >= 0 else { throw WireError(.invalidField("count \(count)")) }
        return Int(count)
    }

    /// Throws if anything is left after a payload was decoded.
    @inlinable
    public func expectFullyConsumed() throws(WireError) {
        if self.readableBytes > 0 { throw WireError(.trailingBytes(self.readableBytes)) }
    }
}

/// Appends one typed message: type byte, Int32 length (including itself), payload.
@inlinable
public func writeTypedMessage(_ type: UInt8, into buffer: inout ByteBuffer, _ body: (inout ByteBuffer) -> Void) {
    buffer.writeInteger(type)
    let lengthIndex = buffer.writerIndex
    buffer.writeInteger(Int32(0))
    body(&buffer)
    buffer.setInteger(Int32(buffer.writerIndex - lengthIndex), at: lengthIndex)
}
