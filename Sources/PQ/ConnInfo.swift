import CLibPQ

/// A parsed libpq connection string (keyword/value form or URI), parsed by libpq itself
/// so that quoting, escapes and URIs behave exactly as every libpq client expects.
public struct ConnInfo: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    /// Only the keywords that were set, by their canonical libpq names.
    public private(set) var values: [String: String]

    public init(values: [String: String]) {
        self.values = values
    }

    /// Parses `string`; the error message never repeats the input (it may hold a password).
    public init(parsing string: String) throws(ConnInfoError) {
        var errorMessage: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(string, &errorMessage) else {
            var reason = "invalid connection string"
            if let errorMessage {
                reason = Self.withoutQuotedParts(String(cString: errorMessage).trimmingSuffix("\n"))
                PQfreemem(errorMessage)
            }
            throw ConnInfoError(reason: reason)
        }
        defer { PQconninfoFree(options) }
        var values: [String: String] = [:]
        var cursor = options
        while let keyword = cursor.pointee.keyword {
            if let value = cursor.pointee.val {
                values[String(cString: keyword)] = String(cString: value)
            }
            cursor += 1
        }
        self.values = values
    }

    public subscript(key: String) -> String? {
        get { values[key] }
        set { values[key] = newValue }
    }

    /// Renders back as a keyword/value string, every value quoted and escaped.
    public var connectionString: String {
        values.sorted(by: { $0.key < $1.key })
            .map { "\($0.key)=\(Self.quote($0.value))" }
            .joined(separator: " ")
    }

    /// Printing a conninfo (in a log line, an error, the description of a value holding one)
    /// never shows a password: only `connectionString` does, for libpq.
    public var description: String { redacted }
    public var debugDescription: String { "ConnInfo(\(redacted))" }

    /// A description safe for logs and error messages: no password, no sslpassword.
    public var redacted: String {
        let hidden: Set<String> = ["password", "sslpassword"]
        return values.sorted(by: { $0.key < $1.key })
            .filter { !hidden.contains($0.key) }
            .map { "\($0.key)=\(Self.quote($0.value))" }
            .joined(separator: " ")
    }

    /// libpq quotes the offending token ("missing "=" after "hunter2""), which may be a
    /// password: such fragments are replaced so errors never carry them.
    static func withoutQuotedParts(_ message: String) -> String {
        var out = ""
        var inQuote = false
        for character in message {
            if character == "\"" {
                if !inQuote { out += "\"…\"" }
                inQuote.toggle()
            } else if !inQuote {
                out.append(character)
            }
        }
        return out
    }

    static func quote(_ value: String) -> String {
        var out = "'"
        for character in value {
            if character == "'" || character == "\\" { out.append("\\") }
            out.append(character)
        }
        out.append("'")
        return out
    }
}

public struct ConnInfoError: Error, Hashable, Sendable, CustomStringConvertible {
    public var reason: String
    public var description: String { "invalid connection string: \(reason)" }
}

extension String {
    func trimmingSuffix(_ suffix: Character) -> String {
        var copy = self
        while copy.last == suffix { copy.removeLast() }
        return copy
    }
}
