import NIOCore
import PostgresWire
import Testing

@Suite struct MessageFrameTests {
    private func stream(_ messages: [BackendMessage]) -> ByteBuffer {
        var buffer = ByteBuffer()
        for message in messages { message.encode(into: &buffer) }
        return buffer
    }

    @Test func fragmentedInputYieldsSameFramesAsWhole() throws {
        let whole = stream([.parseComplete, .bindComplete, .dataRow(DataRow(values: [ByteBuffer(string: "x")])), .commandComplete(tag: "SELECT 1"), .readyForQuery(.idle)])
        var pending = ByteBuffer()
        var frames: [MessageFrame] = []
        for byte in whole.readableBytesView {
            pending.writeInteger(byte)
            while let frame = try MessageFrame.read(from: &pending) { frames.append(frame) }
        }
        #expect(frames.map(\.type) == [0x31, 0x32, 0x44, 0x43, 0x5A])
        #expect(pending.readableBytes == 0)
    }

    @Test(arguments: [Int32(-5), 0, 3, 0x4000_0001, Int32.max])
    func rejectsLengthBeforeAwaitingPayload(_ length: Int32) {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt8(ascii: "Q"))
        buffer.writeInteger(length)
        #expect(throws: WireError(.invalidLength(Int(length)), messageType: UInt8(ascii: "Q"))) {
            _ = try MessageFrame.read(from: &buffer)
        }
    }

    @Test func incompleteFrameConsumesNothing() throws {
        var buffer = ByteBuffer()
        FrontendMessage.query("SELECT 1").encode(into: &buffer)
        var partial = buffer.getSlice(at: 0, length: buffer.readableBytes - 1)!
        #expect(try MessageFrame.read(from: &partial) == nil)
        #expect(partial.readableBytes == buffer.readableBytes - 1)
    }
}
