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
                // The token libpq quotes may be a password (a forgotten "password="): it is shown
                // only when it looks like a mistyped keyword ("hostx").
                let message = String(cString: errorMessage).trimmingSuffix("\n")
                reason = Self.quotedParts(message).allSatisfy(Self.looksLikeKeyword) ? message : Self.withoutQuotedParts(message)
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

    /// The quoted fragments of a libpq message.
    static func quotedParts(_ message: String) -> [String] {
        message.split(separator: "\"", omittingEmptySubsequences: false).enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
    }

    static let keywords = ["host", "hostaddr", "port", "dbname", "user", "password", "passfile", "connect_timeout", "client_encoding",
                           "options", "application_name", "sslmode", "sslcert", "sslkey", "sslrootcert", "sslcrl", "sslpassword",
                           "target_session_attrs", "service", "channel_binding", "gssencmode", "keepalives", "requiressl"]

    /// "=" (libpq quotes it too), or a token within two edits of a conninfo keyword.
    static func looksLikeKeyword(_ token: String) -> Bool {
        if token == "=" { return true }
        let lower = Array(token.lowercased())
        guard lower.count <= 24, lower.allSatisfy({ $0.isLetter || $0 == "_" }) else { return false }
        return keywords.contains { editDistance(Array($0), lower) <= 2 }
    }

    static func editDistance(_ a: [Character], _ b: [Character]) -> Int {
        var previous = Array(0...b.count)
        for (i, x) in a.enumerated() {
            var current = [i + 1] + Array(repeating: 0, count: b.count)
            for (j, y) in b.enumerated() {
                current[j + 1] = min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
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
    public var description: String { reason }
}

extension String {
    func trimmingSuffix(_ suffix: Character) -> String {
        var copy = self
        while copy.last == suffix { copy.removeLast() }
        return copy
    }
}
