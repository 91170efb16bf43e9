import JSON
import PQ

/// One way of masking a column. Each strategy is a single SQL-expression builder,
/// used everywhere masking happens (clone-time COPY, mask_in_place, masked views,
/// the proxy), so a value is masked the same way wherever it is read.
public enum MaskStrategy: Sendable, Hashable {
    /// `alice@example.com` → `a***@example.com`; a value without an @ after its first character → `***`.
    case email
    /// Any name → `XXXX`.
    case name
    /// `+1-555-123-4567` → `***-4567` (the last four characters).
    case phone
    /// Keeps `prefix` leading and `suffix` trailing characters: `Alice Johnson` → `Al***son`.
    case partial(prefix: Int, suffix: Int)
    /// MD5 of the value as 32 hex digits (deterministic, so joins on it still match).
    case hash
    /// Always NULL.
    case null
    /// A random integer in `min...max` on every read.
    case randomInt(min: Int64, max: Int64)
    /// The same value for every row, NULL rows included.
    case constant(String)
    /// Dates and timestamps cut to the start of their month or year.
    case truncateDate(unit: DateUnit)
    /// Card numbers reduced to their last four digits: `XXXX-XXXX-XXXX-1111`.
    case cardLast4
    /// A regular-expression replacement (PostgreSQL's regexp_replace, all matches).
    case regexReplace(pattern: String, replacement: String)

    /// Keyed HMAC-SHA256 pseudonym: the same input gives the same output in every table.
    case pseudonym
    /// A plausible name from a small bundled dictionary, chosen by the keyed hash.
    case fakeName
    /// A plausible address `first.last<n>@example.com`, chosen by the keyed hash.
    case fakeEmail
    /// The number moved by up to ±percent, the same amount each time for the same value.
    case noise(percent: Double)

    public enum DateUnit: String, Sendable, Hashable {
        case month, year
    }

    public static let names = ["email", "name", "phone", "partial", "hash", "null", "random_int", "constant",
                               "truncate_date", "card_last4", "regex_replace", "pseudonym", "fake_name", "fake_email", "noise"]

    /// Reads a strategy from a mask option value: a name (`"email"`) or an object
    /// (`{"type": "partial", "prefix": 2, "suffix": 3}`). `column` names the column in errors.
    public init(json: JSONNode, column: String) throws(MaskError) {
        switch json {
        case .string(let name):
            switch name {
            case "email": self = .email
            case "pseudonym", "fake_name", "fake_email":
                try Self.requireKey(name, column: column)
                self = name == "pseudonym" ? .pseudonym : name == "fake_name" ? .fakeName : .fakeEmail
            case "card_last4": self = .cardLast4
            case "truncate_date": self = .truncateDate(unit: .month)
            case "name": self = .name
            case "phone": self = .phone
            case "hash": self = .hash
            case "null": self = .null
            case "partial": self = .partial(prefix: 2, suffix: 2)
            case "random_int", "constant":
                throw MaskError("mask strategy \"\(name)\" for column \"\(column)\" needs an object with its parameters, e.g. \(name == "constant" ? #"{"type": "constant", "value": "REDACTED"}"# : #"{"type": "random_int", "min": 1, "max": 100}"#)")
            default:
                throw MaskError("unknown mask strategy \"\(name)\" for column \"\(column)\"", hint: "Known strategies: \(Self.names.joined(separator: ", ")).")
            }
        case .object(let fields):
            guard let type = fields["type"]?.string else {
                throw MaskError("mask for column \"\(column)\" must have a string \"type\"")
            }
            func integer(_ key: String, default value: Int64? = nil) throws(MaskError) -> Int64 {
                switch fields[key] {
                case .number(let number)? where number == number.rounded() && abs(number) < 9e15:
                    return Int64(number)
                case nil:
                    if let value { return value }
                    throw MaskError("mask \"\(type)\" for column \"\(column)\" needs an integer \"\(key)\"")
                default:
                    throw MaskError("mask \"\(type)\" for column \"\(column)\": \"\(key)\" must be an integer")
                }
            }
            func allow(_ keys: Set<String>) throws(MaskError) {
                if let extra = fields.keys.sorted().first(where: { !keys.contains($0) && $0 != "type" }) {
                    throw MaskError("mask \"\(type)\" for column \"\(column)\" has an unknown key \"\(extra)\"")
                }
            }
            switch type {
            case "email", "name", "phone", "hash", "null", "card_last4", "pseudonym", "fake_name", "fake_email":
                try allow([])
                self = try MaskStrategy(json: .string(type), column: column)
            case "noise":
                try allow(["percent"])
                try Self.requireKey("noise", column: column)
                guard case .number(let percent)? = fields["percent"], percent > 0, percent <= 100 else {
                    throw MaskError("mask \"noise\" for column \"\(column)\" needs a \"percent\" between 0 and 100")
                }
                self = .noise(percent: percent)
            case "truncate_date":
                try allow(["to"])
                switch fields["to"] {
                case nil: self = .truncateDate(unit: .month)
                case .string(let unit)?:
                    guard let value = DateUnit(rawValue: unit) else {
                        throw MaskError("mask \"truncate_date\" for column \"\(column)\": \"to\" must be \"month\" or \"year\"")
                    }
                    self = .truncateDate(unit: value)
                default:
                    throw MaskError("mask \"truncate_date\" for column \"\(column)\": \"to\" must be \"month\" or \"year\"")
                }
            case "regex_replace":
                try allow(["pattern", "replacement"])
                guard let pattern = fields["pattern"]?.string, !pattern.isEmpty else {
                    throw MaskError("mask \"regex_replace\" for column \"\(column)\" needs a string \"pattern\"")
                }
                guard let replacement = fields["replacement"]?.string else {
                    throw MaskError("mask \"regex_replace\" for column \"\(column)\" needs a string \"replacement\"")
                }
                self = .regexReplace(pattern: pattern, replacement: replacement)
            case "partial":
                try allow(["prefix", "suffix"])
                let prefix = try integer("prefix", default: 2)
                let suffix = try integer("suffix", default: 2)
                guard prefix >= 0, suffix >= 0, prefix <= 1000, suffix <= 1000 else {
                    throw MaskError("mask \"partial\" for column \"\(column)\": prefix and suffix must be between 0 and 1000")
                }
                self = .partial(prefix: Int(prefix), suffix: Int(suffix))
            case "random_int":
                try allow(["min", "max"])
                let low = try integer("min")
                let high = try integer("max")
                guard low <= high else {
                    throw MaskError("mask \"random_int\" for column \"\(column)\": min (\(low)) is greater than max (\(high))")
                }
                self = .randomInt(min: low, max: high)
            case "constant":
                try allow(["value"])
                switch fields["value"] {
                case .string(let value)?: self = .constant(value)
                case .number(let value)?: self = .constant(JSONNode.number(value).text)
                case .bool(let value)?: self = .constant(value ? "true" : "false")
                default: throw MaskError("mask \"constant\" for column \"\(column)\" needs a \"value\" (string or number)")
                }
            default:
                throw MaskError("unknown mask strategy \"\(type)\" for column \"\(column)\"", hint: "Known strategies: \(Self.names.joined(separator: ", ")).")
            }
        default:
            throw MaskError("mask for column \"\(column)\" must be a strategy name or an object")
        }
    }

    private static func requireKey(_ strategy: String, column: String) throws(MaskError) {
        guard MaskingKey.isInstalled else {
            throw MaskError("mask strategy \"\(strategy)\" for column \"\(column)\" needs a secret: start pgclone with --mask-secret (or PGCLONE_MASK_SECRET)")
        }
    }

    /// The masking expression for `column` (an SQL expression, usually a quoted
    /// column name) whose type is `type` (as `format_type` prints it). The result
    /// has exactly that type, so it fits the column: text is cut to varchar(n),
    /// numbers are cast, and the expression only calls schema-qualified built-ins
    /// so no search_path can capture it.
    /// `baseType`: the type under the column's domains, when it has any.
    public func expression(for column: String, type: String, baseType: String? = nil, keys: MaskingKey.Source = .literals) -> String {
        let text = "(\(column))::pg_catalog.text"
        // Substring and pattern searches run on bytes: they refuse nondeterministic collations
        // (and are fastest) otherwise. The result then takes the column's collation again.
        let bytes = "(\(text) COLLATE pg_catalog.\"C\")"
        var searchesText = false
        let body: String
        switch self {
        case .email:
            // An @ after at least one character (LIKE is cheaper than strpos); the domain after the last @.
            // (NULLIF(split_part(...), value) would be cheaper still, but NULLIF compares with an
            // unqualified `=`, which a search_path could capture.)
            searchesText = true
            body = "CASE WHEN \(Self.op(bytes, "~~", "'_%@%'"))"
                + " THEN \(Self.concat("pg_catalog.left(\(text), 1)", "'***@'", "pg_catalog.split_part(\(bytes), '@', -1)"))"
                + " WHEN \(column) IS NULL THEN NULL ELSE '***' END"
        case .name:
            body = "CASE WHEN \(column) IS NULL THEN NULL ELSE 'XXXX' END"
        case .phone:
            // The last four characters, not the last four digits: extracting digits (translate or
            // regexp_replace over the whole value) made a masked read of a phone column 3-6 times
            // slower, and phone numbers end in digits. `||` is strict, so NULL stays NULL.
            body = Self.concat("'***-'", "pg_catalog.right(\(text), 4)")
        case .partial(let prefix, let suffix):
            body = "CASE WHEN \(column) IS NULL THEN NULL"
                + " WHEN \(Self.op("pg_catalog.length(\(text))", "<=", String(prefix + suffix))) THEN pg_catalog.repeat('*', pg_catalog.length(\(text)))"
                + " ELSE \(Self.concat("pg_catalog.left(\(text), \(prefix))", "'***'", "pg_catalog.right(\(text), \(suffix))")) END"
        case .hash:
            body = "pg_catalog.md5(\(text))"
        case .null:
            body = "NULL"
        case .randomInt(let low, let high):
            // Quoted: `-5::int8` would be an unqualified unary minus applied to 5::int8.
            let span = Self.op(Self.op("'\(high)'::pg_catalog.numeric", "-", "'\(low)'::pg_catalog.numeric"), "+", "1")
            body = Self.op("'\(low)'::pg_catalog.int8", "+", "pg_catalog.floor(\(Self.op("pg_catalog.random()", "*", span)))::pg_catalog.int8")
        case .constant(let value):
            body = SQL.literal(value)
        case .truncateDate(let unit):
            // A timestamptz is truncated in UTC: in the reader's time zone, moving the zone by
            // minutes until the month flipped gave the real time back (round 44 F1).
            let computed = baseType ?? type
            if computed.hasPrefix("timestamp") && computed.contains("with time zone") {
                body = "pg_catalog.date_trunc(\(SQL.literal(unit.rawValue)), \(column), 'UTC')"
            } else {
                body = "pg_catalog.date_trunc(\(SQL.literal(unit.rawValue)), \(column))"
            }
        case .cardLast4:
            body = Self.concat("'XXXX-XXXX-XXXX-'", "pg_catalog.right(\(Self.digits(text)), 4)")
        case .regexReplace(let pattern, let replacement):
            searchesText = true
            // The database's own collation, not bytes: under "C" a class such as \w or [[:alpha:]]
            // matches ASCII only, and "Иван" or "山田" went through unmasked (attack round 22).
            body = "pg_catalog.regexp_replace((\(text) COLLATE pg_catalog.\"default\"), \(SQL.literal(pattern)), \(SQL.literal(replacement)), 'g')"
        case .pseudonym:
            let hex = "pg_catalog.encode(\(MaskingKey.hmac(text, from: keys)), 'hex')"
            if Self.isNumeric(type) {
                let bits = "(\(Self.concat("'x'", "pg_catalog.left(\(hex), 8)")))::pg_catalog.bit(32)::pg_catalog.int4"
                body = "CASE WHEN \(column) IS NULL THEN NULL ELSE \(Self.op(bits, "&", "2147483647")) END"
            } else {
                body = "CASE WHEN \(column) IS NULL THEN NULL ELSE \(hex) END"
            }
        case .fakeName:
            let hmac = MaskingKey.hmac(text, from: keys)
            body = "CASE WHEN \(column) IS NULL THEN NULL ELSE \(Self.concat(MaskingKey.pick(MaskingKey.firstNames, byte: 0, of: hmac), "' '", MaskingKey.pick(MaskingKey.lastNames, byte: 1, of: hmac))) END"
        case .fakeEmail:
            let hmac = MaskingKey.hmac(text, from: keys)
            let name = "pg_catalog.lower(\(Self.concat(MaskingKey.pick(MaskingKey.firstNames, byte: 0, of: hmac), "'.'", MaskingKey.pick(MaskingKey.lastNames, byte: 1, of: hmac))))"
            body = "CASE WHEN \(column) IS NULL THEN NULL ELSE \(Self.concat(name, "pg_catalog.get_byte(\(hmac), 2)::pg_catalog.text", "'@example.com'")) END"
        case .noise(let percent):
            // Keyed on the value's numeric text: a float's own text follows extra_float_digits,
            // and each setting drew another factor for the same value (round 44 F3). money's
            // numeric follows lc_monetary (its decimals), which any role sets: keyed on its
            // stored integer instead (round 46).
            let isMoney = (baseType ?? type) == "money"
            let key = isMoney ? "pg_catalog.encode(pg_catalog.cash_send(\(column)), 'hex')" : "((\(column))::pg_catalog.numeric)::pg_catalog.text"
            let hmac = MaskingKey.hmac(key, from: keys)
            let draw = "(\(Self.op(Self.op("pg_catalog.get_byte(\(hmac), 0)", "*", "256"), "+", "pg_catalog.get_byte(\(hmac), 1)")))::pg_catalog.numeric"
            let unit = Self.op(Self.op(Self.op(draw, "/", "65535"), "*", "2"), "-", "1")
            let factor = Self.op("1", "+", Self.op(Self.op(unit, "*", "\(percent)"), "/", "100"))
            // Rounded to the value's own scale: at full precision, dividing by each of the 65536
            // possible factors gave the exact value back (round 43 F1); rounded, every factor
            // gives a candidate, and the candidates fill the whole noise range.
            let value = "(\(column))::pg_catalog.numeric"
            body = "pg_catalog.round(\(Self.op(value, "*", factor)), pg_catalog.scale(\(value)))"
        }
        if searchesText && !type.contains(" COLLATE ") {
            return "((\(body))::\(type) COLLATE pg_catalog.\"default\")"
        }
        return "(\(body))::\(type)"
    }

    /// `left <symbol> right` with pg_catalog's operator, parenthesised. An unqualified
    /// operator resolves through the search_path like a function, so a user's schema could
    /// capture it; and OPERATOR(...) binds like any user operator, hence the parentheses.
    static func op(_ left: String, _ symbol: String, _ right: String) -> String {
        "(\(left) OPERATOR(pg_catalog.\(symbol)) \(right))"
    }

    /// Text concatenation of `parts` with pg_catalog's `||`.
    static func concat(_ parts: String...) -> String {
        parts.dropFirst().reduce(parts[0]) { op($0, "||", $1) }
    }

    /// The option form, usable as-is in a `mask` option or a policy file.
    public var json: JSONNode {
        switch self {
        case .email, .name, .phone, .hash, .null: return .string(name)
        case .partial(let prefix, let suffix):
            return .object(["type": .string("partial"), "prefix": .number(Double(prefix)), "suffix": .number(Double(suffix))])
        case .randomInt(let low, let high):
            return .object(["type": .string("random_int"), "min": .number(Double(low)), "max": .number(Double(high))])
        case .constant(let value):
            return .object(["type": .string("constant"), "value": .string(value)])
        case .truncateDate(let unit):
            return .object(["type": .string("truncate_date"), "to": .string(unit.rawValue)])
        case .cardLast4:
            return .string("card_last4")
        case .regexReplace(let pattern, let replacement):
            return .object(["type": .string("regex_replace"), "pattern": .string(pattern), "replacement": .string(replacement)])
        case .pseudonym, .fakeName, .fakeEmail:
            return .string(name)
        case .noise(let percent):
            return .object(["type": .string("noise"), "percent": .number(percent)])
        }
    }

    /// Whether the strategy needs the masking secret.
    public var isKeyed: Bool {
        switch self {
        case .pseudonym, .fakeName, .fakeEmail, .noise: true
        default: false
        }
    }

    /// Short name for reports.
    public var name: String {
        switch self {
        case .email: "email"
        case .name: "name"
        case .phone: "phone"
        case .partial: "partial"
        case .hash: "hash"
        case .null: "null"
        case .randomInt: "random_int"
        case .constant: "constant"
        case .truncateDate: "truncate_date"
        case .cardLast4: "card_last4"
        case .regexReplace: "regex_replace"
        case .pseudonym: "pseudonym"
        case .fakeName: "fake_name"
        case .fakeEmail: "fake_email"
        case .noise: "noise"
        }
    }

    /// The digits of a text: the inner translate leaves everything but digits, the outer removes
    /// exactly that. About 2.5 times faster than regexp_replace(text, '[^0-9]', '', 'g').
    static func digits(_ text: String) -> String {
        "pg_catalog.translate(\(text), pg_catalog.translate(\(text), '0123456789', ''), '')"
    }

    static func isNumeric(_ type: String) -> Bool {
        ["integer", "bigint", "smallint", "numeric", "real", "double precision"].contains { type.hasPrefix($0) }
    }
}

/// A masking configuration error: says which column and what is wrong.
public struct MaskError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public var hint: String?
    public init(_ message: String, hint: String? = nil) {
        self.message = message
        self.hint = hint
    }
    public var description: String { message }
}

/// Parses a whole `mask` object: column name → strategy.
public func parseMaskObject(_ json: JSONNode) throws(MaskError) -> [(column: String, strategy: MaskStrategy)] {
    guard case .object(let fields) = json else {
        throw MaskError("\"mask\" must be an object mapping column names to strategies")
    }
    var result: [(String, MaskStrategy)] = []
    for (column, value) in fields.sorted(by: { $0.key < $1.key }) {
        result.append((column, try MaskStrategy(json: value, column: column)))
    }
    return result
}
