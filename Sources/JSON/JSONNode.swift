/// A parse tree node as libpg_query's JSON output gives it.
public indirect enum JSONNode: Sendable, Equatable {
    case object([String: JSONNode])
    case array([JSONNode])
    case string(String)
    case number(Double)
    case bool(Bool)
    case null

    public subscript(key: String) -> JSONNode? {
        if case .object(let fields) = self { return fields[key] }
        return nil
    }

    public var array: [JSONNode] {
        if case .array(let items) = self { return items }
        return []
    }

    public var string: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var int: Int? {
        if case .number(let value) = self { return Int(value) }
        return nil
    }

    public var bool: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    /// The single key of a `{"NodeType": {...}}` wrapper, and its body.
    public var tagged: (tag: String, body: JSONNode)? {
        guard case .object(let fields) = self, fields.count == 1, let (key, value) = fields.first else { return nil }
        return (key, value)
    }

    /// Renders the node as compact JSON text (keys sorted, for stable output).
    public var text: String {
        switch self {
        case .object(let fields):
            return "{" + fields.sorted(by: { $0.key < $1.key }).map { JSONNode.quote($0.key) + ": " + $0.value.text }.joined(separator: ", ") + "}"
        case .array(let items):
            return "[" + items.map(\.text).joined(separator: ", ") + "]"
        case .string(let value):
            return JSONNode.quote(value)
        case .number(let value):
            return value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
        case .bool(let value):
            return value ? "true" : "false"
        case .null:
            return "null"
        }
    }

    public static func quote(_ value: String) -> String {
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    /// Calls `visit` on every node, depth first.
    public func walk(_ visit: (JSONNode) -> Void) {
        visit(self)
        switch self {
        case .object(let fields): for value in fields.values { value.walk(visit) }
        case .array(let items): for item in items { item.walk(visit) }
        default: break
        }
    }
}
