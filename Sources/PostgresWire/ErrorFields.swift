import NIOCore

/// The fields of an ErrorResponse or NoticeResponse, in wire order.
public struct ErrorFields: Hashable, Sendable {
    public var fields: [(code: UInt8, value: String)]

    public init(fields: [(code: UInt8, value: String)]) {
        self.fields = fields
    }

    /// A server-style error: `severity` is also sent as the non-localised 'V' field.
    public init(severity: Severity, sqlState: String, message: String, detail: String? = nil, hint: String? = nil) {
        var fields: [(UInt8, String)] = [
            (Code.severityLocalized, severity.rawValue),
            (Code.severity, severity.rawValue),
            (Code.sqlState, sqlState),
            (Code.message, message),
        ]
        if let detail { fields.append((Code.detail, detail)) }
        if let hint { fields.append((Code.hint, hint)) }
        self.fields = fields
    }

    public enum Severity: String, Sendable {
        case error = "ERROR"
        case fatal = "FATAL"
        case panic = "PANIC"
        case warning = "WARNING"
        case notice = "NOTICE"
        case debug = "DEBUG"
        case info = "INFO"
        case log = "LOG"
    }

    /// Field type codes (see "Error and Notice Message Fields" in the protocol docs).
    public enum Code {
        public static let severityLocalized = UInt8(ascii: "S")
        public static let severity = UInt8(ascii: "V")
        public static let sqlState = UInt8(ascii: "C")
        public static let message = UInt8(ascii: "M")
        public static let detail = UInt8(ascii: "D")
        public static let hint = UInt8(ascii: "H")
        public static let position = UInt8(ascii: "P")
    }

    public subscript(code: UInt8) -> String? {
        fields.first(where: { $0.code == code })?.value
    }

    public var sqlState: String? { self[Code.sqlState] }
    public var message: String? { self[Code.message] }
    /// The non-localised severity when present, else the localised one.
    public var severity: String? { self[Code.severity] ?? self[Code.severityLocalized] }

    static func decode(_ payload: inout ByteBuffer) throws(WireError) -> ErrorFields {
        var fields: [(UInt8, String)] = []
        while true {
            let code: UInt8 = try payload.readWireInteger()
            if code == 0 { break }
            fields.append((code, try payload.readCString()))
        }
        return ErrorFields(fields: fields)
    }

    func encode(into buffer: inout ByteBuffer) {
        for (code, value) in fields {
            buffer.writeInteger(code)
            buffer.writeCString(value)
        }
        buffer.writeInteger(UInt8(0))
    }

    public static func == (lhs: ErrorFields, rhs: ErrorFields) -> Bool {
        lhs.fields.elementsEqual(rhs.fields, by: { $0.code == $1.code && $0.value == $1.value })
    }

    public func hash(into hasher: inout Hasher) {
        for (code, value) in fields { hasher.combine(code); hasher.combine(value) }
    }
}
