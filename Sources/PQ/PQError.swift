import CLibPQ

/// An error reported by libpq or by the server, with its SQLSTATE when the server sent one.
public struct PQError: Error, Sendable, CustomStringConvertible {
    public var sqlState: String?
    public var severity: String?
    public var message: String
    public var detail: String?
    public var hint: String?
    /// Where the server was (CONTEXT): for a COPY, the table, line and column.
    public var context: String?

    public init(sqlState: String? = nil, severity: String? = nil, message: String, detail: String? = nil, hint: String? = nil, context: String? = nil) {
        self.sqlState = sqlState
        self.severity = severity
        self.message = message
        self.detail = detail
        self.hint = hint
        self.context = context
    }

    /// The row a COPY stopped at, from the CONTEXT line, without the value some formats quote
    /// after the column (`COPY t, line 42, column email`): nil for other errors.
    public var copyPosition: String? {
        guard let line = context?.split(separator: "\n").first(where: { $0.hasPrefix("COPY ") }) else { return nil }
        let parts = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        var kept: [String] = []
        for part in parts {
            if let colon = part.firstIndex(of: ":") {
                kept.append(String(part[..<colon]))
                break
            }
            kept.append(part)
        }
        return kept.joined(separator: ",")
    }

    /// The connection failed, not the statement: lost, its backend terminated or shut down,
    /// or libpq's own error (no SQLSTATE).
    public var isConnectionFailure: Bool {
        guard let sqlState else { return true }
        return sqlState.hasPrefix("08") || sqlState == "57P01" || sqlState == "57P02" || sqlState == "57P03"
    }

    public var description: String {
        (sqlState.map { "[\($0)] " } ?? "") + message
    }

    /// Builds the error from a failed result; falls back to the connection's message.
    init(result: OpaquePointer?, connection: OpaquePointer?) {
        func field(_ code: Int32) -> String? {
            guard let result, let value = PQresultErrorField(result, code) else { return nil }
            return String(cString: value)
        }
        let primary = field(Int32(UInt8(ascii: "M")))
        let fallback: String
        if let result, let text = PQresultErrorMessage(result), text.pointee != 0 {
            fallback = String(cString: text)
        } else if let connection, let text = PQerrorMessage(connection) {
            fallback = String(cString: text)
        } else {
            fallback = "unknown libpq error"
        }
        self.init(
            sqlState: field(Int32(UInt8(ascii: "C"))),
            severity: field(Int32(UInt8(ascii: "V"))),
            message: (primary ?? fallback).trimmingSuffix("\n"),
            detail: field(Int32(UInt8(ascii: "D"))),
            hint: field(Int32(UInt8(ascii: "H"))),
            context: field(Int32(UInt8(ascii: "W")))
        )
    }
}
