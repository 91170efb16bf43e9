import CloneEngine

/// A masked statement's text as the server will read it, for PostgreSQL's parser (which reads
/// UTF-8 with standard_conforming_strings on), and back to the client's encoding.
///
/// The server converts a statement from client_encoding before parsing it, and lexes string
/// literals by standard_conforming_strings: the proxy must read the same characters the same
/// way, or a string could end where the proxy thinks a name begins. Where it cannot be sure
/// (an encoding whose multibyte characters can contain ASCII bytes such as a backslash, or
/// settings changed by statements still in flight), it refuses the statement.
enum StatementText {
    /// The session settings that decide how a statement's bytes read.
    struct Settings: Sendable, Hashable {
        /// client_encoding as the server reported it (ParameterStatus).
        var clientEncoding: String = "UTF8"
        /// standard_conforming_strings as the server reported it.
        var standardConformingStrings = true
        /// A statement that may change either is still in flight: its ParameterStatus has not come.
        var uncertain = false
    }

    enum Encoding: Sendable, Hashable {
        /// UTF8, and SQL_ASCII in front of a UTF-8 database: the bytes are the characters.
        case utf8
        /// Each byte is the character of the same code (U+0000...U+00FF).
        case latin1
        /// Any other encoding: only ASCII text is read.
        case asciiOnly(String)

        init(clientEncoding: String) {
            let name = clientEncoding.uppercased().filter { $0 != "_" && $0 != "-" }
            switch name {
            case "UTF8", "UNICODE", "SQLASCII": self = .utf8
            case "LATIN1", "ISO88591": self = .latin1
            default: self = .asciiOnly(clientEncoding)
            }
        }
    }

    /// The statement's characters, or why a masked role may not send it.
    static func decode(_ bytes: [UInt8], settings: Settings) -> Result<String, AdminError> {
        let isASCII = bytes.allSatisfy { $0 < 0x80 }
        if bytes.contains(UInt8(ascii: "\\")) && (!settings.standardConformingStrings || settings.uncertain) {
            return .failure(AdminError("42501", "pgclone: with standard_conforming_strings off (or being changed), a masked role's statement may not contain a backslash",
                                       hint: "Turn standard_conforming_strings on and write escapes as E'...' strings."))
        }
        if isASCII { return .success(String(decoding: bytes, as: UTF8.self)) }
        if settings.uncertain {
            return .failure(AdminError("42501", "pgclone: client_encoding may be changing; send non-ASCII text of a masked role once the change has completed"))
        }
        switch Encoding(clientEncoding: settings.clientEncoding) {
        case .utf8:
            guard let text = String(validating: bytes, as: UTF8.self) else {
                return .failure(AdminError("22021", "invalid byte sequence for encoding \"UTF8\""))
            }
            return .success(text)
        case .latin1:
            return .success(decodeResult(bytes, encoding: .latin1))
        case .asciiOnly(let name):
            return .failure(AdminError("42501", "pgclone: a masked role's statement with non-ASCII text is read only in client_encoding UTF8 or LATIN1, not \(name)",
                                       hint: "Set client_encoding to UTF8."))
        }
    }

    /// A result value the server sent in the client's encoding (what cannot be read becomes
    /// U+FFFD, and matches no name).
    static func decodeResult(_ bytes: [UInt8], encoding: Encoding) -> String {
        switch encoding {
        case .latin1: return String(String.UnicodeScalarView(bytes.map { Unicode.Scalar($0) }))
        case .utf8, .asciiOnly: return String(decoding: bytes, as: UTF8.self)
        }
    }

    /// The (rewritten) statement in the client's encoding, for the server to convert as it would
    /// the client's own; nil when a character has no form there.
    static func encode(_ text: String, settings: Settings) -> [UInt8]? {
        switch Encoding(clientEncoding: settings.clientEncoding) {
        case .utf8:
            return Array(text.utf8)
        case .latin1:
            var bytes: [UInt8] = []
            bytes.reserveCapacity(text.unicodeScalars.count)
            for scalar in text.unicodeScalars {
                guard scalar.value <= 0xFF else { return nil }
                bytes.append(UInt8(scalar.value))
            }
            return bytes
        case .asciiOnly:
            let bytes = Array(text.utf8)
            return bytes.allSatisfy { $0 < 0x80 } ? bytes : nil
        }
    }
}
