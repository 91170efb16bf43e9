import NIOCore
import PostgresWire
import Testing

@Suite struct FrontendMessageTests {
    static let samples: [FrontendMessage] = [
        .query("SELECT 1; SELECT 'ünïcode'"),
        .parse(.init(statementName: "s1", query: "SELECT $1::int", parameterTypes: [23])),
        .bind(.init(portalName: "", statementName: "s1", parameterFormats: [1], parameters: [ByteBuffer(bytes: [0, 0, 0, 7]), nil], resultFormats: [1, 0])),
        .describe(.statement("s1")),
        .describe(.portal("")),
        .execute(portal: "", maxRows: 100),
        .close(.portal("p")),
        .close(.statement("s1")),
        .sync,
        .flush,
        .copyData(ByteBuffer(string: "1\tx\n")),
        .copyDone,
        .copyFail(message: "client gave up"),
        .functionCall(.init(functionOID: 1598, argumentFormats: [0], arguments: [ByteBuffer(string: "x")], resultFormat: 0)),
        .authenticationResponse(ByteBuffer(string: "md5abc\0")),
        .terminate,
    ]

    @Test(arguments: samples)
    func roundTrips(_ message: FrontendMessage) throws {
        var buffer = ByteBuffer()
        message.encode(into: &buffer)
        let frame = try #require(try MessageFrame.read(from: &buffer))
        #expect(buffer.readableBytes == 0)
        #expect(try FrontendMessage.decode(frame) == message)
    }

    @Test func unknownTypeIsRejected() {
        let frame = MessageFrame(type: UInt8(ascii: "Z"), payload: ByteBuffer())
        #expect(throws: WireError(.unknownMessageType(UInt8(ascii: "Z")))) { _ = try FrontendMessage.decode(frame) }
    }

    @Test func truncatedBindIsRejected() {
        var payload = ByteBuffer()
        payload.writeCString("")
        payload.writeCString("s")
        payload.writeInteger(Int16(0))
        payload.writeInteger(Int16(1))
        payload.writeInteger(Int32(10))  // value says 10 bytes, none follow
        let frame = MessageFrame(type: FrontendMessage.ID.bind.rawValue, payload: payload)
        #expect(throws: WireError(.truncated, messageType: FrontendMessage.ID.bind.rawValue)) { _ = try FrontendMessage.decode(frame) }
    }

    @Test func negativeCountIsRejected() {
        var payload = ByteBuffer()
        payload.writeCString("s")
        payload.writeCString("SELECT 1")
        payload.writeInteger(Int16(-3))
        let frame = MessageFrame(type: FrontendMessage.ID.parse.rawValue, payload: payload)
        #expect(throws: WireError(.invalidField("count -3"), messageType: FrontendMessage.ID.parse.rawValue)) { _ = try FrontendMessage.decode(frame) }
    }

    @Test func trailingBytesAreRejected() {
        var payload = ByteBuffer()
        payload.writeCString("SELECT 1")
        payload.writeInteger(UInt8(1))
        let frame = MessageFrame(type: FrontendMessage.ID.query.rawValue, payload: payload)
        #expect(throws: WireError(.trailingBytes(1), messageType: FrontendMessage.ID.query.rawValue)) { _ = try FrontendMessage.decode(frame) }
    }

    @Test func invalidDescribeTargetIsRejected() {
        var payload = ByteBuffer()
        payload.writeInteger(UInt8(ascii: "X"))
        payload.writeCString("s")
        let frame = MessageFrame(type: FrontendMessage.ID.describe.rawValue, payload: payload)
        #expect(throws: WireError.self) { _ = try FrontendMessage.decode(frame) }
    }
}
