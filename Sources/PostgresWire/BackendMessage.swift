import NIOCore

/// Every message a server sends after the startup packet.
public enum BackendMessage: Hashable, Sendable {
    case authentication(Authentication)
    case backendKeyData(BackendKey)
    case bindComplete
    case closeComplete
    case commandComplete(tag: String)
    case copyData(ByteBuffer)
    case copyDone
    case copyInResponse(CopyResponse)
    case copyOutResponse(CopyResponse)
    case copyBothResponse(CopyResponse)
    case dataRow(DataRow)
    case emptyQueryResponse
    case errorResponse(ErrorFields)
    case functionCallResponse(ByteBuffer?)
    case negotiateProtocolVersion(newestMinorVersion: Int32, unrecognizedOptions: [String])
    case noData
    case noticeResponse(ErrorFields)
    case notificationResponse(processID: Int32, channel: String, payload: String)
    case parameterDescription([UInt32])
    case parameterStatus(name: String, value: String)
    case parseComplete
    case portalSuspended
    case readyForQuery(TransactionStatus)
    case rowDescription(RowDescription)

    public enum ID: UInt8, Sendable, CaseIterable {
        case authentication = 0x52       // R
        case backendKeyData = 0x4B       // K
        case bindComplete = 0x32         // 2
        case closeComplete = 0x33        // 3
        case commandComplete = 0x43      // C
        case copyData = 0x64             // d
        case copyDone = 0x63             // c
        case copyInResponse = 0x47       // G
        case copyOutResponse = 0x48      // H
        case copyBothResponse = 0x57     // W
        case dataRow = 0x44              // D
        case emptyQueryResponse = 0x49   // I
        case errorResponse = 0x45        // E
        case functionCallResponse = 0x56 // V
        case negotiateProtocolVersion = 0x76 // v
        case noData = 0x6E               // n
        case noticeResponse = 0x4E       // N
        case notificationResponse = 0x41 // A
        case parameterDescription = 0x74 // t
        case parameterStatus = 0x53      // S
        case parseComplete = 0x31        // 1
        case portalSuspended = 0x73      // s
        case readyForQuery = 0x5A        // Z
        case rowDescription = 0x54       // T
    }

    public enum TransactionStatus: UInt8, Hashable, Sendable {
        case idle = 0x49          // I
        case inTransaction = 0x54 // T
        case failed = 0x45        // E
    }

    public struct CopyResponse: Hashable, Sendable {
        /// 0 textual, 1 binary.
        public var format: Int8
        public var columnFormats: [Int16]
        public init(format: Int8, columnFormats: [Int16]) {
            self.format = format
            self.columnFormats = columnFormats
        }
    }

    public enum Authentication: Hashable, Sendable {
        case ok
        case kerberosV5
        case cleartextPassword
        case md5Password(salt: UInt32)
        case gss
        case gssContinue(ByteBuffer)
        case sspi
        case sasl(mechanisms: [String])
        case saslContinue(ByteBuffer)
        case saslFinal(ByteBuffer)

        var code: Int32 {
            switch self {
            case .ok: 0
            case .kerberosV5: 2
            case .cleartextPassword: 3
            case .md5Password: 5
            case .gss: 7
            case .gssContinue: 8
            case .sspi: 9
            case .sasl: 10
            case .saslContinue: 11
            case .saslFinal: 12
            }
        }
    }

    public var id: ID {
        switch self {
        case .authentication: .authentication
        case .backendKeyData: .backendKeyData
        case .bindComplete: .bindComplete
        case .closeComplete: .closeComplete
        case .commandComplete: .commandComplete
        case .copyData: .copyData
        case .copyDone: .copyDone
        case .copyInResponse: .copyInResponse
        case .copyOutResponse: .copyOutResponse
        case .copyBothResponse: .copyBothResponse
        case .dataRow: .dataRow
        case .emptyQueryResponse: .emptyQueryResponse
        case .errorResponse: .errorResponse
        case .functionCallResponse: .functionCallResponse
        case .negotiateProtocolVersion: .negotiateProtocolVersion
        case .noData: .noData
        case .noticeResponse: .noticeResponse
        case .notificationResponse: .notificationResponse
        case .parameterDescription: .parameterDescription
        case .parameterStatus: .parameterStatus
        case .parseComplete: .parseComplete
        case .portalSuspended: .portalSuspended
        case .readyForQuery: .readyForQuery
        case .rowDescription: .rowDescription
        }
    }

    public static func decode(_ frame: MessageFrame) throws(WireError) -> BackendMessage {
        guard let id = ID(rawValue: frame.type) else {
            throw WireError(.unknownMessageType(frame.type))
        }
        var payload = frame.payload
        do {
            let message = try decodePayload(id, &payload)
            try payload.expectFullyConsumed()
            return message
        } catch {
            var error = error
            error.messageType = frame.type
            throw error
        }
    }

    private static func rest(_ payload: inout ByteBuffer) -> ByteBuffer {
        payload.readSlice(length: payload.readableBytes)!
    }

    private static func decodePayload(_ id: ID, _ payload: inout ByteBuffer) throws(WireError) -> BackendMessage {
        switch id {
        case .authentication:
            let code: Int32 = try payload.readWireInteger()
            switch code {
            case 0: return .authentication(.ok)
            case 2: return .authentication(.kerberosV5)
            case 3: return .authentication(.cleartextPassword)
            case 5: return .authentication(.md5Password(salt: try payload.readWireInteger()))
            case 7: return .authentication(.gss)
            case 8: return .authentication(.gssContinue(rest(&payload)))
            case 9: return .authentication(.sspi)
            case 10:
                var mechanisms: [String] = []
                while true {
                    let name = try payload.readCString()
                    if name.isEmpty { break }
                    mechanisms.append(name)
                }
                return .authentication(.sasl(mechanisms: mechanisms))
            case 11: return .authentication(.saslContinue(rest(&payload)))
            case 12: return .authentication(.saslFinal(rest(&payload)))
            default: throw WireError(.invalidField("authentication request \(code)"))
            }
        case .backendKeyData:
            let pid: Int32 = try payload.readWireInteger()
            let key: Int32 = try payload.readWireInteger()
            return .backendKeyData(BackendKey(processID: pid, secretKey: key))
        case .bindComplete: return .bindComplete
        case .closeComplete: return .closeComplete
        case .commandComplete: return .commandComplete(tag: try payload.readCString())
        case .copyData: return .copyData(rest(&payload))
        case .copyDone: return .copyDone
        case .copyInResponse: return .copyInResponse(try readCopyResponse(&payload))
        case .copyOutResponse: return .copyOutResponse(try readCopyResponse(&payload))
        case .copyBothResponse: return .copyBothResponse(try readCopyResponse(&payload))
        case .dataRow: return .dataRow(try DataRow.decode(&payload))
        case .emptyQueryResponse: return .emptyQueryResponse
        case .errorResponse: return .errorResponse(try ErrorFields.decode(&payload))
        case .noticeResponse: return .noticeResponse(try ErrorFields.decode(&payload))
        case .functionCallResponse: return .functionCallResponse(try payload.readWireValue())
        case .negotiateProtocolVersion:
            let minor: Int32 = try payload.readWireInteger()
            let count: Int32 = try payload.readWireInteger()
            guard count >= 0, Int(count) <= payload.readableBytes else { throw WireError(.invalidField("option count \(count)")) }
            var options: [String] = []
            for _ in 0..<count { options.append(try payload.readCString()) }
            return .negotiateProtocolVersion(newestMinorVersion: minor, unrecognizedOptions: options)
        case .noData: return .noData
        case .notificationResponse:
            let pid: Int32 = try payload.readWireInteger()
            let channel = try payload.readCString()
            let message = try payload.readCString()
            return .notificationResponse(processID: pid, channel: channel, payload: message)
        case .parameterDescription:
            let count = try payload.readWireCount()
            var types: [UInt32] = []
            types.reserveCapacity(count)
            for _ in 0..<count { types.append(try payload.readWireInteger()) }
            return .parameterDescription(types)
        case .parameterStatus:
            let name = try payload.readCString()
            let value = try payload.readCString()
            return .parameterStatus(name: name, value: value)
        case .parseComplete: return .parseComplete
        case .portalSuspended: return .portalSuspended
        case .readyForQuery:
            let raw: UInt8 = try payload.readWireInteger()
            guard let status = TransactionStatus(rawValue: raw) else {
                throw WireError(.invalidField("transaction status \(WireError.printable(raw))"))
            }
            return .readyForQuery(status)
        case .rowDescription: return .rowDescription(try RowDescription.decode(&payload))
        }
    }

    private static func readCopyResponse(_ payload: inout ByteBuffer) throws(WireError) -> CopyResponse {
        let format: Int8 = try payload.readWireInteger()
        let count = try payload.readWireCount()
        var formats: [Int16] = []
        for _ in 0..<count { formats.append(try payload.readWireInteger()) }
        return CopyResponse(format: format, columnFormats: formats)
    }

    public func encode(into buffer: inout ByteBuffer) {
        writeTypedMessage(id.rawValue, into: &buffer) { out in
            switch self {
            case .authentication(let auth):
                out.writeInteger(auth.code)
                switch auth {
                case .md5Password(let salt): out.writeInteger(salt)
                case .gssContinue(var data), .saslContinue(var data), .saslFinal(var data): out.writeBuffer(&data)
                case .sasl(let mechanisms):
                    for mechanism in mechanisms { out.writeCString(mechanism) }
                    out.writeInteger(UInt8(0))
                case .ok, .kerberosV5, .cleartextPassword, .gss, .sspi: break
                }
            case .backendKeyData(let key):
                out.writeInteger(key.processID)
                out.writeInteger(key.secretKey)
            case .bindComplete, .closeComplete, .copyDone, .emptyQueryResponse, .noData, .parseComplete, .portalSuspended:
                break
            case .commandComplete(let tag):
                out.writeCString(tag)
            case .copyData(var data):
                out.writeBuffer(&data)
            case .copyInResponse(let response), .copyOutResponse(let response), .copyBothResponse(let response):
                out.writeInteger(response.format)
                out.writeInteger(Int16(response.columnFormats.count))
                for format in response.columnFormats { out.writeInteger(format) }
            case .dataRow(let row):
                row.encode(into: &out)
            case .errorResponse(let fields), .noticeResponse(let fields):
                fields.encode(into: &out)
            case .functionCallResponse(let value):
                out.writeWireValue(value)
            case .negotiateProtocolVersion(let minor, let options):
                out.writeInteger(minor)
                out.writeInteger(Int32(options.count))
                for option in options { out.writeCString(option) }
            case .notificationResponse(let pid, let channel, let payload):
                out.writeInteger(pid)
                out.writeCString(channel)
                out.writeCString(payload)
            case .parameterDescription(let types):
                out.writeInteger(Int16(types.count))
                for type in types { out.writeInteger(type) }
            case .parameterStatus(let name, let value):
                out.writeCString(name)
                out.writeCString(value)
            case .readyForQuery(let status):
                out.writeInteger(status.rawValue)
            case .rowDescription(let description):
                description.encode(into: &out)
            }
        }
    }
}
