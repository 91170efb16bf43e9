/// A statement's text with its numeric constants taken out: statements that differ
/// only in those constants (`... WHERE aid = 17` and `... WHERE aid = 4711`) have the
/// same shape, so work that does not depend on the constants' values (a masked
/// session's rewrite) can be done once per shape.
///
/// Only unsigned numeric constants are taken out: a sign is an operator and stays in
/// the key. String constants stay too: a rewrite may depend on them
/// (`set_config('role', ...)`), and where they appear decides nothing else. Quoted
/// identifiers, strings, comments, `$n` parameters and digits inside identifiers
/// (`t1`) are part of the key, scanned with the same rules as the server's lexer.
public struct StatementShape: Sendable {
    /// The text with every numeric constant replaced by one 0xFF byte, which never
    /// occurs in UTF-8 text: no two differently shaped statements share a key.
    public let key: [UInt8]
    /// Where the numeric constants are in the original text, in order.
    public let constants: [Range<Int>]

    static let slot: UInt8 = 0xFF

    public init(_ text: [UInt8]) {
        let lexer = SQLLexer(bytes: text)
        var key: [UInt8] = []
        key.reserveCapacity(text.count)
        var constants: [Range<Int>] = []
        var i = 0
        while i < text.count {
            let c = text[i]
            let next: Int
            if c == UInt8(ascii: "$") {
                // A $n parameter, or a $tag$ string.
                next = i + 1 < text.count && SQLLexer.isDigit(text[i + 1]) ? Self.skipDigits(text, from: i + 1) : lexer.skipToken(at: i)
            } else if SQLLexer.isDigit(c) || (c == UInt8(ascii: ".") && i + 1 < text.count && SQLLexer.isDigit(text[i + 1])) {
                next = Self.endOfNumber(text, from: i)
                constants.append(i..<next)
                key.append(Self.slot)
                i = next
                continue
            } else if SQLLexer.isIdentifierByte(c) {
                // A whole word, digits and $ included, so `t1` or `a$1` are not split.
                var j = i + 1
                while j < text.count, SQLLexer.isIdentifierByte(text[j]) { j += 1 }
                next = j
            } else {
                next = lexer.skipToken(at: i)
            }
            key.append(contentsOf: text[i..<next])
            i = next
        }
        self.key = key
        self.constants = constants
    }

    /// Past digits and underscores (PostgreSQL 16 allows `1_000`; 15 rejects it, the same way for every shape).
    static func skipDigits(_ text: [UInt8], from start: Int) -> Int {
        var i = start
        while i < text.count, SQLLexer.isDigit(text[i]) || text[i] == UInt8(ascii: "_") { i += 1 }
        return i
    }

    /// Past a number: digits, an optional fraction, an optional exponent that has digits.
    static func endOfNumber(_ text: [UInt8], from start: Int) -> Int {
        var i = skipDigits(text, from: start)
        // A fraction, but not the first dot of `1..2` (not a number in SQL; kept out of the constant).
        if i < text.count, text[i] == UInt8(ascii: "."), !(i + 1 < text.count && text[i + 1] == UInt8(ascii: ".")) {
            i = skipDigits(text, from: i + 1)
        }
        if i < text.count, text[i] == UInt8(ascii: "e") || text[i] == UInt8(ascii: "E") {
            var j = i + 1
            if j < text.count, text[j] == UInt8(ascii: "+") || text[j] == UInt8(ascii: "-") { j += 1 }
            if j < text.count, SQLLexer.isDigit(text[j]) { i = skipDigits(text, from: j) }
        }
        return i
    }
}

/// A rewritten statement with holes where the original's numeric constants were:
/// filled with another statement's constants, it is that statement rewritten.
public struct ShapedRewrite: Sendable, Equatable {
    /// The text between the constants; one more piece than there are constants.
    public let pieces: [[UInt8]]

    /// Builds the template from `text` (shaped as `shape`) and the replacements made to it.
    /// `nil` when a replacement touches a constant (the rewrite then depends on it).
    public init?(text: [UInt8], shape: StatementShape, replacements: [(range: Range<Int>, text: [UInt8])]) {
        let replacements = replacements.sorted { $0.range.lowerBound < $1.range.lowerBound }
        var pieces: [[UInt8]] = []
        var current: [UInt8] = []
        var position = 0
        var nextReplacement = 0
        for constant in shape.constants + [text.count..<text.count] {
            while nextReplacement < replacements.count, replacements[nextReplacement].range.lowerBound < constant.lowerBound
                || (constant.isEmpty && replacements[nextReplacement].range.lowerBound == constant.lowerBound) {
                let replacement = replacements[nextReplacement]
                guard replacement.range.lowerBound >= position, replacement.range.upperBound <= constant.lowerBound else { return nil }
                current.append(contentsOf: text[position..<replacement.range.lowerBound])
                current.append(contentsOf: replacement.text)
                position = replacement.range.upperBound
                nextReplacement += 1
            }
            guard position <= constant.lowerBound else { return nil }
            current.append(contentsOf: text[position..<constant.lowerBound])
            pieces.append(current)
            current = []
            position = constant.upperBound
        }
        guard nextReplacement == replacements.count else { return nil }
        self.pieces = pieces
    }

    /// The rewrite of `text`, whose shape equals the one this template was made from.
    public func apply(to text: [UInt8], constants: [Range<Int>]) -> [UInt8] {
        precondition(constants.count + 1 == pieces.count, "a template applied to a statement of another shape")
        var out: [UInt8] = []
        out.reserveCapacity(pieces.reduce(0) { $0 + $1.count } + constants.reduce(0) { $0 + $1.count })
        for (index, piece) in pieces.enumerated() {
            out.append(contentsOf: piece)
            if index < constants.count { out.append(contentsOf: text[constants[index]]) }
        }
        return out
    }
}
