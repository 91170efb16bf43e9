/// A clone failure as the caller should see it: a PostgreSQL-style message with its SQLSTATE.
/// Messages name the object and never include a conninfo or password.
public struct CloneError: Error, Sendable, Hashable, CustomStringConvertible {
    public var sqlState: String
    public var message: String
    public var detail: String?
    public var hint: String?

    public init(_ sqlState: String, _ message: String, detail: String? = nil, hint: String? = nil) {
        self.sqlState = sqlState
        self.message = message
        self.detail = detail
        self.hint = hint
    }

    public var description: String { message }

    static func invalidOption(_ message: String, hint: String? = nil) -> CloneError {
        CloneError("22023", message, hint: hint)
    }
}
