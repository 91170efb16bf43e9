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
        let escapeBackslashes = value.contains("\\")
        var out = escapeBackslashes ? "E'" : "'"
        for character in value {
            switch character {
            case "'": out += "''"
            case "\\": out += "\\\\"
            default: out.append(character)
            }
        }
        return out + "'"
    }

    /// A literal or NULL.
    public static func literal(_ value: String?) -> String {
        value.map { literal($0) } ?? "NULL"
    }
}
