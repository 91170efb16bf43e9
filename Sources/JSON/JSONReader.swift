/// A small strict JSON reader for libpg_query's output (exact booleans and integers,
/// which Foundation's JSONSerialization blurs on Linux).
public struct JSONReader {
    private let bytes: [UInt8]
    private var index = 0
    private var depth = 0
    /// Nesting beyond this is refused: the reader (and whoever walks the tree) recurses once
    /// per level, and a hostile statement (`1+1+...+1`, 10,000 terms) would overflow the stack.
    public static let maximumDepth = 1000
    private var tooDeep = false
    /// Whether a key may appear twice in one object (the last one winning, as jsonb does).
    private let allowsDuplicateKeys: Bool
    private var duplicateKey: String?

    init(_ bytes: [UInt8], allowsDuplicateKeys: Bool = true) {
        self.bytes = bytes
        self.allowsDuplicateKeys = allowsDuplicateKeys
    }

    public static func parse(_ bytes: [UInt8]) -> JSONNode? {
        try? parseOrThrow(bytes)
    }

    /// Parses a whole document; the error says where it went wrong.
    public static func parseOrThrow(_ bytes: [UInt8], allowsDuplicateKeys: Bool = true) throws(JSONError) -> JSONNode {
        var reader = JSONReader(bytes, allowsDuplicateKeys: allowsDuplicateKeys)
        guard let value = reader.value() else {
            if reader.tooDeep { throw JSONError(message: "nested more than \(maximumDepth) levels deep") }
            if let key = reader.duplicateKey { throw JSONError(message: "key \"\(key)\" appears twice in one object") }
            throw JSONError(message: reader.index >= bytes.count ? "unexpected end of input" : "unexpected character at offset \(reader.index)")
        }
        reader.skipSpace()
        guard reader.index == bytes.count else { throw JSONError(message: "unexpected data after the JSON value at offset \(reader.index)") }
        return value
    }

    /// A document a person wrote (options, masks): a key given twice is an error, not the
    /// last one silently winning (round 28: {"users": {"email": ...}, "users": {"phone": ...}}
    /// left the emails unmasked).
    public static func parse(_ text: String) throws(JSONError) -> JSONNode {
        try parseOrThrow(Array(text.utf8), allowsDuplicateKeys: false)
    }

    private mutating func skipSpace() {
        while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x0D || bytes[index] == 0x09 { index += 1 }
    }

    private mutating func value() -> JSONNode? {
        skipSpace()
        guard index < bytes.count else { return nil }
        depth += 1
        defer { depth -= 1 }
        guard depth <= Self.maximumDepth else {
            tooDeep = true
            return nil
        }
        switch bytes[index] {
        case UInt8(ascii: "{"):
            index += 1
            var fields: [String: JSONNode] = [:]
            skipSpace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; return .object(fields) }
            while true {
                skipSpace()
                guard let key = string() else { return nil }
                skipSpace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return nil }
                index += 1
                guard let item = value() else { return nil }
                if !allowsDuplicateKeys, fields[key] != nil {
                    duplicateKey = key
                    return nil
                }
                fields[key] = item
                skipSpace()
                guard index < bytes.count else { return nil }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                if bytes[index] == UInt8(ascii: "}") { index += 1; return .object(fields) }
                return nil
            }
        case UInt8(ascii: "["):
            index += 1
            var items: [JSONNode] = []
            skipSpace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "]") { index += 1; return .array(items) }
            while true {
                guard let item = value() else { return nil }
                items.append(item)
                skipSpace()
                guard index < bytes.count else { return nil }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                if bytes[index] == UInt8(ascii: "]") { index += 1; return .array(items) }
                return nil
            }
        case UInt8(ascii: "\""):
            return string().map(JSONNode.string)
        case UInt8(ascii: "t"):
            return literal("true", .bool(true))
        case UInt8(ascii: "f"):
            return literal("false", .bool(false))
        case UInt8(ascii: "n"):
            return literal("null", .null)
        default:
            let start = index
            while index < bytes.count, "-+.eE0123456789".utf8.contains(bytes[index]) { index += 1 }
            return Double(String(decoding: bytes[start..<index], as: UTF8.self)).map(JSONNode.number)
        }
    }

    private mutating func literal(_ word: String, _ node: JSONNode) -> JSONNode? {
        let utf8 = Array(word.utf8)
        guard index + utf8.count <= bytes.count, Array(bytes[index..<(index + utf8.count)]) == utf8 else { return nil }
        index += utf8.count
        return node
    }

    private mutating func hex4() -> UInt32? {
        guard index + 4 <= bytes.count, let value = UInt32(String(decoding: bytes[index..<(index + 4)], as: UTF8.self), radix: 16) else { return nil }
        index += 4
        return value
    }

    private mutating func string() -> String? {
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
        index += 1
        var out: [UInt8] = []
        while index < bytes.count {
            let c = bytes[index]
            index += 1
            if c == UInt8(ascii: "\"") { return String(decoding: out, as: UTF8.self) }
            guard c == UInt8(ascii: "\\") else { out.append(c); continue }
            guard index < bytes.count else { return nil }
            let e = bytes[index]
            index += 1
            switch e {
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "u"):
                guard var scalar = hex4() else { return nil }
                if (0xD800..<0xDC00).contains(scalar), index + 6 <= bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") {
                    index += 2
                    guard let low = hex4() else { return nil }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                }
                out.append(contentsOf: Array(String(Character(Unicode.Scalar(scalar) ?? "\u{FFFD}")).utf8))
            default: out.append(e)
            }
        }
        return nil
    }
}

public struct JSONError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
