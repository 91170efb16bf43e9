import NIOCore
import PostgresWire
import Testing

@Suite struct StartupPacketTests {
    @Test func startupMessageRoundTripsWithParametersInOrder() throws {
        let packet = StartupPacket.startup(protocolVersion: .v3_0, parameters: [("user", "alice"), ("database", "db2"), ("application_name", "psql")])
        var buffer = ByteBuffer()
        packet.encode(into: &buffer)
        #expect(buffer.getInteger(at: 0, as: Int32.self) == Int32(buffer.readableBytes))
        #expect(try StartupPacket.decode(from: &buffer) == packet)
        #expect(buffer.readableBytes == 0)
    }

    @Test func specialRequestsDecode() throws {
        for packet in [StartupPacket.sslRequest, .gssEncryptionRequest, .cancelRequest(BackendKey(processID: 42, secretKey: -7))] {
            var buffer = ByteBuffer()
            packet.encode(into: &buffer)
            #expect(buffer.readableBytes == (packet == .sslRequest || packet == .gssEncryptionRequest ? 8 : 16))
            #expect(try StartupPacket.decode(from: &buffer) == packet)
        }
    }

    @Test func incompletePacketConsumesNothing() throws {
        var full = ByteBuffer()
        StartupPacket.startup(protocolVersion: .v3_0, parameters: [("user", "bob")]).encode(into: &full)
        for cut in 0..<full.readableBytes {
            var partial = full.getSlice(at: 0, length: cut)!
            #expect(try StartupPacket.decode(from: &partial) == nil)
            #expect(partial.readableBytes == cut)
        }
    }

    @Test(arguments: [Int32(-1), 0, 7, 10_001, Int32.max])
    func rejectsOutOfRangeLength(_ length: Int32) {
        var buffer = ByteBuffer()
        buffer.writeInteger(length)
        buffer.writeInteger(StartupPacket.ProtocolVersion.v3_0.code)
        #expect(throws: WireError(.invalidLength(Int(length)))) {
            _ = try StartupPacket.decode(from: &buffer)
        }
    }

    @Test func rejectsParametersWithoutTerminator() {
        var buffer = ByteBuffer()
        buffer.writeInteger(Int32(4 + 4 + 5))
        buffer.writeInteger(StartupPacket.ProtocolVersion.v3_0.code)
        buffer.writeString("user\0")  // value and final NUL missing
        #expect(throws: WireError(.truncated)) { _ = try StartupPacket.decode(from: &buffer) }
    }

    @Test func rejectsSSLRequestWithExtraBytes() {
        var buffer = ByteBuffer()
        buffer.writeInteger(Int32(12))
        buffer.writeInteger(StartupPacket.sslRequestCode)
        buffer.writeInteger(Int32(0))
        #expect(throws: WireError(.trailingBytes(4))) { _ = try StartupPacket.decode(from: &buffer) }
    }

    @Test func keepsNewerMinorVersion() throws {
        var buffer = ByteBuffer()
        let version = StartupPacket.ProtocolVersion(major: 3, minor: 2)
        StartupPacket.startup(protocolVersion: version, parameters: [("user", "u")]).encode(into: &buffer)
        guard case .startup(let decoded, _)? = try StartupPacket.decode(from: &buffer) else {
            Issue.record("not a startup message")
            return
        }
        #expect(decoded == version)
    }
}
