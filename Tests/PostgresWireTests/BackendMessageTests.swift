import NIOCore
import PostgresWire
import Testing

@Suite struct BackendMessageTests {
    static let samples: [BackendMessage] = [
        .authentication(.ok),
        .authentication(.cleartextPassword),
        .authentication(.md5Password(salt: 0xDEADBEEF)),
        .authentication(.sasl(mechanisms: ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"])),
        .authentication(.saslContinue(ByteBuffer(string: "r=abc,s=def,i=4096"))),
        .authentication(.saslFinal(ByteBuffer(string: "v=xyz"))),
        .backendKeyData(BackendKey(processID: 1234, secretKey: -99)),
        .bindComplete, .closeComplete, .parseComplete, .noData, .portalSuspended, .emptyQueryResponse, .copyDone,
        .commandComplete(tag: "SELECT 3"),
        .copyData(ByteBuffer(bytes: [0, 1, 2, 255])),
        .copyInResponse(.init(format: 0, columnFormats: [0, 0])),
        .copyOutResponse(.init(format: 1, columnFormats: [1])),
        .copyBothResponse(.init(format: 0, columnFormats: [])),
        .dataRow(DataRow(values: [ByteBuffer(string: "a"), nil, ByteBuffer()])),
        .errorResponse(ErrorFields(severity: .error, sqlState: "42P01", message: "relation \"x\" does not exist", hint: "check it")),
        .noticeResponse(ErrorFields(severity: .notice, sqlState: "00000", message: "hello")),
        .functionCallResponse(nil),
        .functionCallResponse(ByteBuffer(string: "42")),
        .negotiateProtocolVersion(newestMinorVersion: 0, unrecognizedOptions: ["_pq_.x"]),
        .notificationResponse(processID: 7, channel: "ch", payload: "p"),
        .parameterDescription([23, 25]),
        .parameterStatus(name: "client_encoding", value: "UTF8"),
        .readyForQuery(.idle), .readyForQuery(.inTransaction), .readyForQuery(.failed),
        .rowDescription(RowDescription(columns: [
            .init(name: "id", tableOID: 16384, columnAttributeNumber: 1, dataTypeOID: 23, dataTypeSize: 4, dataTypeModifier: -1, format: 0),
            .init(name: "email", dataTypeOID: 1043, dataTypeModifier: 259, format: 1),
        ])),
    ]

    @Test(arguments: samples)
    func roundTrips(_ message: BackendMessage) throws {
        var buffer = ByteBuffer()
        message.encode(into: &buffer)
        let frame = try #require(try MessageFrame.read(from: &buffer))
        #expect(buffer.readableBytes == 0)
        #expect(try BackendMessage.decode(frame) == message)
    }

    @Test func dataRowValuesAreLazySlices() throws {
        let row = DataRow(values: [ByteBuffer(string: "alice@example.com"), nil])
        #expect(row.columnCount == 2)
        #expect(row.values == [ByteBuffer(string: "alice@example.com"), nil])
    }

    @Test func dataRowWithLengthBeyondPayloadIsRejected() {
        var payload = ByteBuffer()
        payload.writeInteger(Int16(1))
        payload.writeInteger(Int32(100))
        payload.writeString("short")
        let frame = MessageFrame(type: BackendMessage.ID.dataRow.rawValue, payload: payload)
        #expect(throws: WireError(.truncated, messageType: BackendMessage.ID.dataRow.rawValue)) { _ = try BackendMessage.decode(frame) }
    }

    @Test func unknownAuthenticationCodeIsRejected() {
        var payload = ByteBuffer()
        payload.writeInteger(Int32(99))
        let frame = MessageFrame(type: BackendMessage.ID.authentication.rawValue, payload: payload)
        #expect(throws: WireError(.invalidField("authentication request 99"), messageType: BackendMessage.ID.authentication.rawValue)) {
            _ = try BackendMessage.decode(frame)
        }
    }

    @Test func invalidTransactionStatusIsRejected() {
        let frame = MessageFrame(type: BackendMessage.ID.readyForQuery.rawValue, payload: ByteBuffer(bytes: [UInt8(ascii: "Q")]))
        #expect(throws: WireError.self) { _ = try BackendMessage.decode(frame) }
    }

    @Test func errorFieldAccessors() {
        let fields = ErrorFields(severity: .fatal, sqlState: "28P01", message: "password authentication failed for user \"x\"")
        #expect(fields.sqlState == "28P01")
        #expect(fields.severity == "FATAL")
        #expect(fields.message == "password authentication failed for user \"x\"")
    }
}
