/// Builds SQL text safely: every identifier and literal that goes into SQL passes through here.
public enum SQL {
    /// A double-quoted identifier (always quoted, so case and reserved words survive).
    public static func identifier(_ name: String) -> String {
        var out = "\""
        for character in name {
            if character == "\"" { out += "\"\"" } else { out.append(character) }
        }
        return out + "\""
    }

    /// `"schema"."name"`.
    public static func qualified(_ schema: String, _ name: String) -> String {
        identifier(schema) + "." + identifier(name)
    }

    /// A string literal that is correct whatever standard_conforming_strings says:
    /// text with backslashes uses the E'' form, where they are explicitly escaped.
    public static func literal(_ value: String) -> String {
        // Byte by byte: a quote or backslash is one ASCII byte, never part of a multibyte
        // character, and walking bytes skips grapheme breaking (admin results quote every cell).
        let utf8 = value.utf8
        let escapeBackslashes = utf8.contains(UInt8(ascii: "\\"))
        guard escapeBackslashes || utf8.contains(UInt8(ascii: "'")) else { return "'" + value + "'" }
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count + 8)
        if escapeBackslashes { out.append(UInt8(ascii: "E")) }
        out.append(UInt8(ascii: "'"))
        for byte in utf8 {
            out.append(byte)
            if byte == UInt8(ascii: "'") || byte == UInt8(ascii: "\\") { out.append(byte) }
        }
        out.append(UInt8(ascii: "'"))
        return String(decoding: out, as: UTF8.self)
    }

    /// A literal or NULL.
    public static func literal(_ value: String?) -> String {
        value.map { literal($0) } ?? "NULL"
    }

    /// The input form of a text[] value (`{"a","b \"c\""}`), for a `$n::pg_catalog.text[]`
    /// parameter or, through `literal`, a constant. Every element is quoted.
    public static func textArray(_ values: [String]) -> String {
        var out = "{"
        for (index, value) in values.enumerated() {
            if index > 0 { out += "," }
            out += "\""
            for character in value {
                if character == "\\" || character == "\"" { out += "\\" }
                out.append(character)
            }
            out += "\""
        }
        return out + "}"
    }

    /// The input form of an oid[] value, for a `$n::pg_catalog.oid[]` parameter.
    public static func oidArray(_ values: [String]) -> String {
        "{" + values.joined(separator: ",") + "}"
    }
}
