import JSON
import Masking
import SQLParser
import Testing

@Suite struct MaskStrategyTests {
    private func strategy(_ json: String) throws -> MaskStrategy {
        try MaskStrategy(json: JSONReader.parse(json), column: "c")
    }

    @Test func namesAndObjects() throws {
        #expect(try strategy(#""email""#) == .email)
        #expect(try strategy(#"{"type": "hash"}"#) == .hash)
        #expect(try strategy(#"{"type": "partial", "prefix": 2, "suffix": 3}"#) == .partial(prefix: 2, suffix: 3))
        #expect(try strategy(#"{"type": "random_int", "min": -5, "max": 5}"#) == .randomInt(min: -5, max: 5))
        #expect(try strategy(#"{"type": "constant", "value": 0}"#) == .constant("0"))
    }

    @Test(arguments: [
        (#""nonexistent_strategy""#, #"unknown mask strategy "nonexistent_strategy" for column "c""#),
        (#"{"type": "random_int", "min": 9, "max": 1}"#, #"mask "random_int" for column "c": min (9) is greater than max (1)"#),
        (#"{"type": "random_int", "min": 1.5, "max": 3}"#, #"mask "random_int" for column "c": "min" must be an integer"#),
        (#"{"type": "partial", "prefix": 2, "extra": 1}"#, #"mask "partial" for column "c" has an unknown key "extra""#),
        (#"{"type": "constant"}"#, #"mask "constant" for column "c" needs a "value" (string or number)"#),
        (#"42"#, #"mask for column "c" must be a strategy name or an object"#),
        (#"{"prefix": 1}"#, #"mask for column "c" must have a string "type""#),
    ])
    func invalidMasksAreErrors(_ json: String, _ message: String) {
        #expect(throws: MaskError.self) { try strategy(json) }
        do { _ = try strategy(json) } catch let error as MaskError { #expect(error.message == message) } catch { Issue.record("unexpected \(error)") }
    }

    @Test func additionalStrategies() throws {
        #expect(try strategy(#""card_last4""#) == .cardLast4)
        #expect(try strategy(#"{"type": "truncate_date", "to": "year"}"#) == .truncateDate(unit: .year))
        #expect(try strategy(##"{"type": "regex_replace", "pattern": "[0-9]", "replacement": "#"}"##) == .regexReplace(pattern: "[0-9]", replacement: "#"))
        #expect(throws: MaskError.self) { try strategy(#"{"type": "truncate_date", "to": "week"}"#) }
        for value in [MaskStrategy.cardLast4, .truncateDate(unit: .month), .regexReplace(pattern: "a", replacement: "b"), .partial(prefix: 1, suffix: 2)] {
            #expect(try MaskStrategy(json: value.json, column: "c") == value, "round trip of \(value.name)")
        }
    }

    @Test func expressionsAreSchemaQualifiedAndTyped() {
        let email = MaskStrategy.email.expression(for: "\"email\"", type: "character varying(255)")
        // Searches run on bytes (COLLATE "C"); the result gets the default collation back.
        #expect(email.hasSuffix("::character varying(255) COLLATE pg_catalog.\"default\")"))
        #expect(MaskStrategy.email.expression(for: "\"e\"", type: "text COLLATE public.ci").hasSuffix("::text COLLATE public.ci"))
        #expect(email.contains("pg_catalog.split_part"))
        #expect(!email.contains(" split_part("))
        #expect(MaskStrategy.null.expression(for: "\"ssn\"", type: "text") == "(NULL)::text")
        #expect(MaskStrategy.constant("it's").expression(for: "\"n\"", type: "text") == "('it''s')::text")
        #expect(MaskStrategy.hash.expression(for: "\"e\"", type: "text") == "(pg_catalog.md5((\"e\")::pg_catalog.text))::text")
    }

    /// Every function and every operator a mask expression uses is pg_catalog's: an
    /// unqualified `||` or `>` resolves through the session's search_path, where a schema
    /// placed before pg_catalog could capture it (e.g. a `>` that is always true would make
    /// the email mask return the whole value).
    @Test func everyFunctionAndOperatorIsQualified() throws {
        try MaskingKey.install("unit-test secret")
        let strategies: [MaskStrategy] = [
            .email, .name, .phone, .partial(prefix: 2, suffix: 3), .hash, .null, .randomInt(min: -5, max: 5),
            .constant("x"), .truncateDate(unit: .year), .cardLast4, .regexReplace(pattern: "a", replacement: "b"),
            .pseudonym, .fakeName, .fakeEmail, .noise(percent: 10),
        ]
        #expect(strategies.count == MaskStrategy.names.count)
        for strategy in strategies {
            for type in ["text", "integer", "money"] {
                let sql = "SELECT " + strategy.expression(for: "\"c\"", type: type) + " FROM t"
                let names = try PostgresParser.operatorAndFunctionNames(in: sql)
                #expect(!names.isEmpty || [.null, .constant("x"), .name].contains(strategy), "\(strategy.name) uses no function or operator")
                for name in names {
                    #expect(name.count == 2 && name[0] == "pg_catalog", "\(strategy.name) on \(type): \(name.joined(separator: ".")) in \(sql)")
                }
            }
        }
    }

    /// money's numeric (and text) follow lc_monetary, which any role sets: noise keyed on them
    /// drew another factor per locale for one value, and averaging the draws narrows the value
    /// (as float text did in round 44 F3). It is keyed on the stored integer, however shown.
    @Test func noiseOnMoneyIsKeyedOnItsStoredInteger() throws {
        try MaskingKey.install("unit-test secret")
        for (type, base) in [("money", nil), ("public.price", "money")] {
            let sql = MaskStrategy.noise(percent: 10).expression(for: "\"c\"", type: type, baseType: base)
            #expect(sql.contains("pg_catalog.encode(pg_catalog.cash_send(\"c\"), 'hex')"), "\(sql)")
            #expect(!sql.contains("((\"c\")::pg_catalog.numeric)::pg_catalog.text"), "\(sql)")
        }
        #expect(MaskStrategy.noise(percent: 10).expression(for: "\"c\"", type: "numeric").contains("((\"c\")::pg_catalog.numeric)::pg_catalog.text"))
    }
}
