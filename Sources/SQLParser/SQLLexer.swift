/// Just enough of PostgreSQL's lexical rules to find where a construct ends,
/// given where the parser says it starts (the parse tree has start offsets only).
///
/// Understands '...' (with ''), E'...' (with backslash escapes), "..." identifiers,
/// $tag$...$tag$ strings, -- comments and nested /* */ comments.
public struct SQLLexer: Sendable {
    public let bytes: [UInt8]

    /// Where each word (unquoted identifier or keyword) starts and ends, in order; comments,
    /// strings and quoted names are not words. Found in one forward pass, so that looking
    /// back from a position never mistakes the inside of a comment for code.
    private let words: [Range<Int>]

    public init(_ sql: String) {
        self.init(bytes: Array(sql.utf8))
    }

    public init(bytes: [UInt8]) {
        self.bytes = bytes
        var words: [Range<Int>] = []
        var i = 0
        while i < bytes.count {
            if Self.isIdentifierByte(bytes[i]), bytes[i] != UInt8(ascii: "$") {
                let start = i
                while i < bytes.count, Self.isIdentifierByte(bytes[i]) { i += 1 }
                // U&"..." and U&'...' are one token with the quoted part that follows.
                if i == start + 1, bytes[start] | 0x20 == UInt8(ascii: "u"), i + 1 < bytes.count, bytes[i] == UInt8(ascii: "&"),
                   bytes[i + 1] == UInt8(ascii: "\"") || bytes[i + 1] == UInt8(ascii: "'") {
                    i = Self.skip(bytes, at: i + 1)
                    continue
                }
                words.append(start..<i)
            } else {
                i = Self.skip(bytes, at: i)
            }
        }
        self.words = words
    }

    /// The offset just past whatever quoted token, comment or single byte starts at `index`.
    func skipToken(at index: Int) -> Int {
        Self.skip(bytes, at: index)
    }

    static func skip(_ bytes: [UInt8], at index: Int) -> Int {
        let c = bytes[index]
        func at(_ i: Int) -> UInt8? { i < bytes.count ? bytes[i] : nil }
        switch c {
        case UInt8(ascii: "'"):
            // E'...' (not the E ending a word, as in DATE'...').
            let escapes = index > 0 && (bytes[index - 1] == UInt8(ascii: "E") || bytes[index - 1] == UInt8(ascii: "e"))
                && (index < 2 || !isIdentifierByte(bytes[index - 2]))
            var i = index + 1
            while i < bytes.count {
                if escapes && bytes[i] == UInt8(ascii: "\\") { i += 2; continue }
                if bytes[i] == UInt8(ascii: "'") {
                    if at(i + 1) == UInt8(ascii: "'") { i += 2; continue }
                    // 'a'<newline>'b' is one string to the server (an E string's continuation
                    // keeps its escapes): the lexer reads it as one too.
                    if let next = continuation(bytes, after: i + 1) { i = next; continue }
                    return i + 1
                }
                i += 1
            }
            return bytes.count
        case UInt8(ascii: "\""):
            var i = index + 1
            while i < bytes.count {
                if bytes[i] == UInt8(ascii: "\"") {
                    if at(i + 1) == UInt8(ascii: "\"") { i += 2; continue }
                    return i + 1
                }
                i += 1
            }
            return bytes.count
        case UInt8(ascii: "-") where at(index + 1) == UInt8(ascii: "-"):
            var i = index + 2
            // The server ends a -- comment at a carriage return too.
            while i < bytes.count, bytes[i] != UInt8(ascii: "\n"), bytes[i] != UInt8(ascii: "\r") { i += 1 }
            return i
        case UInt8(ascii: "/") where at(index + 1) == UInt8(ascii: "*"):
            var depth = 1
            var i = index + 2
            while i < bytes.count, depth > 0 {
                if bytes[i] == UInt8(ascii: "/"), at(i + 1) == UInt8(ascii: "*") { depth += 1; i += 2; continue }
                if bytes[i] == UInt8(ascii: "*"), at(i + 1) == UInt8(ascii: "/") { depth -= 1; i += 2; continue }
                i += 1
            }
            return i
        case UInt8(ascii: "$"):
            // $tag$ ... $tag$ (a $n parameter has digits after $ and no closing $).
            var j = index + 1
            while j < bytes.count, bytes[j] != UInt8(ascii: "$"), isIdentifierByte(bytes[j]), !(j == index + 1 && isDigit(bytes[j])) { j += 1 }
            guard j < bytes.count, bytes[j] == UInt8(ascii: "$") else { return index + 1 }
            let tag = Array(bytes[index...j])
            var i = j + 1
            while i + tag.count <= bytes.count {
                if bytes[i] == UInt8(ascii: "$"), Array(bytes[i..<(i + tag.count)]) == tag { return i + tag.count }
                i += 1
            }
            return bytes.count
        default:
            return index + 1
        }
    }

    /// Where a string continues after its closing quote: white space holding a line break (and
    /// -- comments ended by one) up to another quote; the offset just past that quote.
    static func continuation(_ bytes: [UInt8], after index: Int) -> Int? {
        var i = index
        var sawNewline = false
        while i < bytes.count {
            switch bytes[i] {
            case 0x0A, 0x0D:
                sawNewline = true
                i += 1
            case 0x20, 0x09, 0x0C:
                i += 1
            case UInt8(ascii: "-") where i + 1 < bytes.count && bytes[i + 1] == UInt8(ascii: "-") && sawNewline:
                while i < bytes.count, bytes[i] != 0x0A, bytes[i] != 0x0D { i += 1 }
            case UInt8(ascii: "'") where sawNewline:
                return i + 1
            default:
                return nil
            }
        }
        return nil
    }

    /// Given the offset of a function name, the offset just past its closing parenthesis.
    public func endOfCall(startingAt start: Int) -> Int? {
        var i = start
        var depth = 0
        var opened = false
        while i < bytes.count {
            let c = bytes[i]
            if c == UInt8(ascii: "(") {
                depth += 1
                opened = true
                i += 1
            } else if c == UInt8(ascii: ")") {
                depth -= 1
                i += 1
                if opened && depth == 0 { return i }
                if depth < 0 { return nil }
            } else {
                i = skipToken(at: i)
            }
        }
        return nil
    }

    /// Given the offset of a (possibly qualified, possibly quoted) name, the offset just past it.
    public func endOfQualifiedName(startingAt start: Int) -> Int {
        qualifiedNameParts(startingAt: start).last?.upperBound ?? start
    }

    /// The byte ranges of the dotted parts of a (possibly quoted) name at `start`:
    /// `sec . "Emp"` gives the ranges of `sec` and `"Emp"`. A `U&"..."` part may carry `UESCAPE '.'`.
    public func qualifiedNameParts(startingAt start: Int) -> [Range<Int>] {
        var parts: [Range<Int>] = []
        var i = start
        while i < bytes.count {
            let partStart = i
            if bytes[i] | 0x20 == UInt8(ascii: "u"), i + 2 < bytes.count, bytes[i + 1] == UInt8(ascii: "&"), bytes[i + 2] == UInt8(ascii: "\"") {
                i = skipToken(at: i + 2)
                var j = i
                while j < bytes.count, Self.isSpace(bytes[j]) { j += 1 }
                if j + 7 <= bytes.count, String(decoding: bytes[j..<(j + 7)], as: UTF8.self).lowercased() == "uescape" {
                    j += 7
                    while j < bytes.count, Self.isSpace(bytes[j]) { j += 1 }
                    if j < bytes.count, bytes[j] == UInt8(ascii: "'") { i = skipToken(at: j) }
                }
            } else if bytes[i] == UInt8(ascii: "\"") {
                i = skipToken(at: i)
            } else if Self.isIdentifierByte(bytes[i]) {
                while i < bytes.count, Self.isIdentifierByte(bytes[i]) { i += 1 }
            } else {
                return parts
            }
            parts.append(partStart..<i)
            // Allow whitespace (and comments) around dots.
            var j = skipSpaceAndComments(from: i)
            guard j < bytes.count, bytes[j] == UInt8(ascii: ".") else { return parts }
            j = skipSpaceAndComments(from: j + 1)
            i = j
        }
        return parts
    }

    /// The first offset at or after `index` that is not white space or a comment.
    public func skipSpaceAndComments(from index: Int) -> Int {
        var i = index
        while i < bytes.count {
            if Self.isSpace(bytes[i]) {
                i += 1
            } else if (bytes[i] == UInt8(ascii: "-") && i + 1 < bytes.count && bytes[i + 1] == UInt8(ascii: "-"))
                        || (bytes[i] == UInt8(ascii: "/") && i + 1 < bytes.count && bytes[i + 1] == UInt8(ascii: "*")) {
                i = skipToken(at: i)
            } else {
                return i
            }
        }
        return i
    }

    /// The text of a numeric literal (with an optional leading minus) at `start`.
    public func numericLiteral(at start: Int) -> String? {
        var i = start
        if i < bytes.count, bytes[i] == UInt8(ascii: "-") || bytes[i] == UInt8(ascii: "+") {
            i += 1
            while i < bytes.count, Self.isSpace(bytes[i]) { i += 1 }
        }
        let digitsStart = i
        while i < bytes.count, Self.isDigit(bytes[i]) || bytes[i] == UInt8(ascii: ".") || bytes[i] == UInt8(ascii: "_")
            || bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") { i += 1 }
        guard i > digitsStart else { return nil }
        let sign = bytes[start] == UInt8(ascii: "-") ? "-" : ""
        return sign + String(decoding: bytes[digitsStart..<i], as: UTF8.self).replacingUnderscores()
    }

    /// The highest `$n` parameter the text refers to (0 if none), strings, quoted names and
    /// comments skipped.
    public func highestParameterNumber() -> Int {
        var highest = 0
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "$"), i + 1 < bytes.count, Self.isDigit(bytes[i + 1]), i == 0 || !Self.isIdentifierByte(bytes[i - 1]) {
                var j = i + 1
                var number = 0
                while j < bytes.count, Self.isDigit(bytes[j]) {
                    number = min(number * 10 + Int(bytes[j] - 0x30), 1 << 20)
                    j += 1
                }
                highest = max(highest, number)
                i = j
            } else if Self.isIdentifierByte(bytes[i]) {
                while i < bytes.count, Self.isIdentifierByte(bytes[i]) { i += 1 }
            } else {
                i = skipToken(at: i)
            }
        }
        return highest
    }

    /// The lower-cased word just before `index` and where it starts, when only white space and
    /// comments lie between them (a quoted name or any other token in between means none).
    public func previousWord(before index: Int) -> (String, Int)? {
        // The last word ending at or before index.
        var low = 0, high = words.count
        while low < high {
            let middle = (low + high) / 2
            if words[middle].upperBound <= index { low = middle + 1 } else { high = middle }
        }
        guard low > 0 else { return nil }
        let word = words[low - 1]
        guard skipSpaceAndComments(from: word.upperBound) >= index else { return nil }
        return (String(decoding: bytes[word], as: UTF8.self).lowercased(), word.lowerBound)
    }

    public func text(_ range: Range<Int>) -> String {
        String(decoding: bytes[range], as: UTF8.self)
    }

    static func isIdentifierByte(_ c: UInt8) -> Bool {
        (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || isDigit(c) || c == UInt8(ascii: "_") || c == UInt8(ascii: "$") || c >= 0x80
    }

    static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D || c == 0x0C }
}

extension String {
    func replacingUnderscores() -> String { String(filter { $0 != "_" }) }
}
