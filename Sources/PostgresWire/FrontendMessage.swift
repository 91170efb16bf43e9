import NIOCore

/// Every message a client sends after the startup packet.
public enum FrontendMessage: Hashable, Sendable {
    case bind(Bind)
    case close(CloseTarget)
    case copyData(ByteBuffer)
    case copyDone
    case copyFail(message: String)
    case describe(CloseTarget)
    case execute(portal: String, maxRows: Int32)
    case flush
    case functionCall(FunctionCall)
    case parse(Parse)
    /// 'p': PasswordMessage, SASLInitialResponse, SASLResponse or GSSResponse;
    /// which one depends on the authentication request that preceded it, so the
    /// payload stays raw here.
    case authenticationResponse(ByteBuffer)
    case query(String)
    case sync
    case terminate

    /// The type bytes of the frontend messages.
    public enum ID: UInt8, Sendable, CaseIterable {
        case bind = 0x42          // B
        case close = 0x43         // C
        case copyData = 0x64      // d
        case copyDone = 0x63      // c
        case copyFail = 0x66      // f
        case describe = 0x44      // D
        case execute = 0x45       // E
        case flush = 0x48         // H
        case functionCall = 0x46  // F
        case parse = 0x50         // P
        case authenticationResponse = 0x70 // p
        case query = 0x51         // Q
        case sync = 0x53          // S
        case terminate = 0x58     // X
    }

    public struct Parse: Hashable, Sendable {
        public var statementName: String
        public var query: String
        public var parameterTypes: [UInt32]
        public init(statementName: String, query: String, parameterTypes: [UInt32]) {
            self.statementName = statementName
            self.query = query
            self.parameterTypes = parameterTypes
        }
    }

    public struct Bind: Hashable, Sendable {
        public var portalName: String
        public var statementName: String
        public var parameterFormats: [Int16]
        public var parameters: [ByteBuffer?]
        public var resultFormats: [Int16]
        public init(portalName: String, statementName: String, parameterFormats: [Int16], parameters: [ByteBuffer?], resultFormats: [Int16]) {
            self.portalName = portalName
            self.statementName = statementName
            self.parameterFormats = parameterFormats
            self.parameters = parameters
            self.resultFormats = resultFormats
        }
    }

    public struct FunctionCall: Hashable, Sendable {
        public var functionOID: UInt32
        public var argumentFormats: [Int16]
        public var arguments: [ByteBuffer?]
        public var resultFormat: Int16
        public init(functionOID: UInt32, argumentFormats: [Int16], arguments: [ByteBuffer?], resultFormat: Int16) {
            self.functionOID = functionOID
            self.argumentFormats = argumentFormats
            self.arguments = arguments
            self.resultFormat = resultFormat
        }
    }

    /// Target of Close and Describe: a prepared statement ('S') or a portal ('P').
    public enum CloseTarget: Hashable, Sendable {
        case statement(String)
        case portal(String)
    }

    public var id: ID {
        switch self {
        case .bind: .bind
        case .close: .close
        case .copyData: .copyData
        case .copyDone: .copyDone
        case .copyFail: .copyFail
        case .describe: .describe
        case .execute: .execute
        case .flush: .flush
        case .functionCall: .functionCall
        case .parse: .parse
        case .authenticationResponse: .authenticationResponse
        case .query: .query
        case .sync: .sync
        case .terminate: .terminate
        }
    }

    /// Decodes a complete frame; every byte of the payload must be accounted for.
    public static func decode(_ frame: MessageFrame) throws(WireError) -> FrontendMessage {
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

    private static func decodePayload(_ id: ID, _ payload: inout ByteBuffer) throws(WireError) -> FrontendMessage {
        switch id {
        case .bind:
            let portal = try payload.readCString()
            let statement = try payload.readCString()
            let formatCount = try payload.readWireCount()
            var formats: [Int16] = []
            formats.reserveCapacity(formatCount)
            for _ in 0..<formatCount { formats.append(try payload.readWireInteger()) }
            let valueCount = try payload.readWireCount()
            var values: [ByteBuffer?] = []
            values.reserveCapacity(valueCount)
            for _ in 0..<valueCount { values.append(try payload.readWireValue()) }
            let resultCount = try payload.readWireCount()
            var results: [Int16] = []
            results.reserveCapacity(resultCount)
            for _ in 0..<resultCount { results.append(try payload.readWireInteger()) }
            return .bind(Bind(portalName: portal, statementName: statement, parameterFormats: formats, parameters: values, resultFormats: results))
        case .close:
            return .close(try readTarget(&payload))
        case .describe:
            return .describe(try readTarget(&payload))
        case .copyData:
            let data = payload
            payload.moveReaderIndex(to: payload.writerIndex)
            return .copyData(data)
        case .copyDone:
            return .copyDone
        case .copyFail:
            return .copyFail(message: try payload.readCString())
        case .execute:
            let portal = try payload.readCString()
            let maxRows: Int32 = try payload.readWireInteger()
            return .execute(portal: portal, maxRows: maxRows)
        case .flush:
            return .flush
        case .functionCall:
            let oid: UInt32 = try payload.readWireInteger()
            let formatCount = try payload.readWireCount()
            var formats: [Int16] = []
            for _ in 0..<formatCount { formats.append(try payload.readWireInteger()) }
            let argCount = try payload.readWireCount()
            var args: [ByteBuffer?] = []
            for _ in 0..<argCount { args.append(try payload.readWireValue()) }
            let resultFormat: Int16 = try payload.readWireInteger()
            return .functionCall(FunctionCall(functionOID: oid, argumentFormats: formats, arguments: args, resultFormat: resultFormat))
        case .parse:
            let name = try payload.readCString()
            let query = try payload.readCString()
            let count = try payload.readWireCount()
            var types: [UInt32] = []
            types.reserveCapacity(count)
            for _ in 0..<count { types.append(try payload.readWireInteger()) }
            return .parse(Parse(statementName: name, query: query, parameterTypes: types))
        case .authenticationResponse:
            let data = payload
            payload.moveReaderIndex(to: payload.writerIndex)
            return .authenticationResponse(data)
        case .query:
            return .query(try payload.readCString())
        case .sync:
            return .sync
        case .terminate:
            return .terminate
        }
    }

    private static func readTarget(_ payload: inout ByteBuffer) throws(WireError) -> CloseTarget {
        let kind: UInt8 = try payload.readWireInteger()
        let name = try payload.readCString()
        switch kind {
        case UInt8(ascii: "S"): return .statement(name)
        case UInt8(ascii: "P"): return .portal(name)
        default: throw WireError(.invalidField("target kind \(WireError.printable(kind))"))
        }
    }

    public func encode(into buffer: inout ByteBuffer) {
        writeTypedMessage(id.rawValue, into: &buffer) { out in
            switch self {
            case .bind(let bind):
                out.writeCString(bind.portalName)
                out.writeCString(bind.statementName)
                out.writeInteger(Int16(bind.parameterFormats.count))
                for format in bind.parameterFormats { out.writeInteger(format) }
                out.writeInteger(Int16(bind.parameters.count))
                for value in bind.parameters { out.writeWireValue(value) }
                out.writeInteger(Int16(bind.resultFormats.count))
                for format in bind.resultFormats { out.writeInteger(format) }
            case .close(let target), .describe(let target):
                Self.writeTarget(target, into: &out)
            case .copyData(var data):
                out.writeBuffer(&data)
            case .copyDone, .flush, .sync, .terminate:
                break
            case .copyFail(let message):
                out.writeCString(message)
            case .execute(let portal, let maxRows):
                out.writeCString(portal)
                out.writeInteger(maxRows)
            case .functionCall(let call):
                out.writeInteger(call.functionOID)
                out.writeInteger(Int16(call.argumentFormats.count))
                for format in call.argumentFormats { out.writeInteger(format) }
                out.writeInteger(Int16(call.arguments.count))
                for value in call.arguments { out.writeWireValue(value) }
                out.writeInteger(call.resultFormat)
            case .parse(let parse):
                out.writeCString(parse.statementName)
                out.writeCString(parse.query)
                out.writeInteger(Int16(parse.parameterTypes.count))
                for type in parse.parameterTypes { out.writeInteger(type) }
            case .authenticationResponse(var data):
                out.writeBuffer(&data)
            case .query(let query):
                out.writeCString(query)
            }
        }
    }

    private static func writeTarget(_ target: CloseTarget, into out: inout ByteBuffer) {
        switch target {
        case .statement(let name):
            out.writeInteger(UInt8(ascii: "S"))
            out.writeCString(name)
        case .portal(let name):
            out.writeInteger(UInt8(ascii: "P"))
            out.writeCString(name)
        }
    }
}
