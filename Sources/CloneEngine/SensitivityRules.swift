import Foundation
import Masking

/// Finds columns that hold personal or secret data, by name and by sampled values.
public enum SensitivityRules {
    public struct Finding: Sendable, Hashable {
        public var category: String
        public var strategy: MaskStrategy
        public var reason: String
    }

    /// Name rules, first match wins. Words are matched on `_`/camelCase word boundaries.
    /// Exceptions come first so that obvious misfires (`ip_address` is not a street
    /// address, `company_name` is not a person) are decided before the broad rules.
    static let nameRules: [(words: [[String]], category: String?, strategy: MaskStrategy?)] = [
        ([["ip"], ["ip", "address"], ["ip", "addr"], ["ipv4"], ["ipv6"], ["mac", "address"]], "Network Address", .null),
        ([["company", "name"], ["product", "name"], ["table", "name"], ["file", "name"], ["host", "name"], ["user", "agent"],
          ["schema", "name"], ["column", "name"], ["display", "order"], ["domain", "name"]], nil, nil),
        ([["email"], ["e", "mail"], ["mail"]], "Email", .email),
        // National identity and tax numbers, also under the names other countries give them
        // (round 33: ahv_nr, bsn, cpf, personnummer were taken for phone numbers by their values).
        ([["ssn"], ["social", "security"], ["national", "id"], ["tax", "id"], ["passport"], ["driver", "license"], ["drivers", "license"],
          ["sin"], ["nin"], ["nino"], ["dni"], ["nie"], ["nif"], ["codice", "fiscale"], ["bsn"], ["cpf"], ["personnummer"], ["henkilotunnus"],
          ["steuer", "id"], ["steuernummer"], ["steueridentifikationsnummer"], ["svnr"], ["sv", "nr"], ["sozialversicherungsnummer"], ["ahv"],
          ["nir"], ["insee"], ["tfn"], ["pesel"], ["curp"], ["aadhaar"], ["id", "number"], ["identity", "number"], ["id", "card"]], "National ID", .null),
        ([["credit", "card"], ["card", "number"], ["cc", "number"], ["pan"], ["cvv"], ["cvc"]], "Payment Card", .cardLast4),
        ([["iban"], ["account", "number"], ["account", "no"], ["acct", "no"], ["acct", "number"], ["bank", "account"], ["routing", "number"],
          ["swift"], ["bic"], ["kontonummer"], ["konto"], ["blz"], ["sort", "code"]], "Bank Account", .partial(prefix: 2, suffix: 4)),
        ([["phone"], ["mobile"], ["cell"], ["fax"], ["telephone"], ["tel"], ["telefon"], ["telefono"], ["telefone"], ["handy"]], "Phone", .phone),
        ([["salary"], ["wage"], ["income"], ["compensation"], ["bonus"], ["pay", "rate"]], "Financial", .randomInt(min: 30000, max: 200000)),
        ([["password"], ["passwd"], ["secret"], ["token"], ["api", "key"], ["private", "key"], ["pin"]], "Credential", .null),
        ([["birth"], ["dob"], ["birthday"], ["birthdate"], ["bday"], ["date", "of", "birth"], ["geburtsdatum"], ["geburtstag"],
          ["fecha", "nacimiento"], ["fecha", "de", "nacimiento"], ["date", "naissance"], ["date", "de", "naissance"], ["data", "nascita"],
          ["data", "di", "nascita"]], "Date of Birth", .truncateDate(unit: .year)),
        ([["address"], ["street"], ["zip"], ["postal", "code"], ["postcode"]], "Address", .constant("REDACTED")),
        ([["full", "name"], ["first", "name"], ["last", "name"], ["surname"], ["given", "name"], ["family", "name"], ["name"], ["maiden", "name"]],
         "PII - Name", .name),
        ([["gender"], ["ethnicity"], ["religion"], ["diagnosis"], ["medical"], ["health"]], "Special Category", .null),
        ([["latitude"], ["longitude"], ["geo"], ["location"]], "Location", .null),
    ]

    /// The words of a column name: `fullName` and `full_name` both give [full, name].
    static func words(_ name: String) -> [String] {
        var words: [String] = []
        var current = ""
        var previousLower = false
        for character in name {
            if character == "_" || character == "-" || character == " " {
                if !current.isEmpty { words.append(current) }
                current = ""
                previousLower = false
                continue
            }
            if character.isUppercase && previousLower {
                words.append(current)
                current = ""
            }
            current.append(Character(character.lowercased()))
            previousLower = character.isLowercase || character.isNumber
        }
        if !current.isEmpty { words.append(current) }
        return words
    }

    /// What the column's name says, if anything; `nil` category means "known not sensitive".
    public static func byName(_ column: String, typeCategory: String) -> Finding?? {
        let columnWords = words(column)
        for rule in nameRules {
            for pattern in rule.words where contains(columnWords, pattern) {
                guard let category = rule.category, var strategy = rule.strategy else { return .some(nil) }
                // A numeric column keeps a numeric mask; text strategies need text.
                let numericStrategy: Bool
                switch strategy {
                case .randomInt, .null: numericStrategy = true
                default: numericStrategy = false
                }
                if typeCategory == "N", !numericStrategy { strategy = .randomInt(min: 0, max: 1_000_000) }
                if typeCategory == "D", case .truncateDate = strategy {
                } else if typeCategory != "S", typeCategory != "N", strategy != .null {
                    strategy = .null
                }
                if typeCategory == "S", case .truncateDate = strategy { strategy = .null }
                return .some(Finding(category: category, strategy: strategy, reason: "column name"))
            }
        }
        return .none
    }

    static func contains(_ words: [String], _ pattern: [String]) -> Bool {
        guard pattern.count <= words.count else { return false }
        for start in 0...(words.count - pattern.count) where Array(words[start..<(start + pattern.count)]) == pattern {
            return true
        }
        return false
    }

    /// What sampled values say: a category when most non-empty samples match one pattern.
    public static func byValues(_ values: [String]) -> Finding? {
        let samples = values.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard samples.count >= 1 else { return nil }
        let checks: [(String, MaskStrategy, (String) -> Bool)] = [
            ("Email", .email, { $0.range(of: #"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"#, options: .regularExpression) != nil }),
            ("National ID", .null, { $0.range(of: #"^\d{3}-\d{2}-\d{4}$"#, options: .regularExpression) != nil }),
            ("Payment Card", .cardLast4, { luhn($0) }),
            ("Bank Account", .partial(prefix: 2, suffix: 4), { iban($0) }),
            ("Network Address", .null, { $0.range(of: #"^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$"#, options: .regularExpression) != nil }),
            ("Phone", .phone, { $0.range(of: #"^\+?[\d\s().-]{7,20}$"#, options: .regularExpression) != nil && $0.filter(\.isNumber).count >= 7 }),
        ]
        for (category, strategy, matches) in checks {
            let hits = samples.filter(matches).count
            if hits * 10 >= samples.count * 8 {
                return Finding(category: category, strategy: strategy, reason: "values")
            }
        }
        return nil
    }

    static func luhn(_ text: String) -> Bool {
        let digits = text.filter { $0 != " " && $0 != "-" }
        guard (13...19).contains(digits.count), digits.allSatisfy(\.isNumber) else { return false }
        var sum = 0
        for (index, character) in digits.reversed().enumerated() {
            var digit = character.wholeNumberValue!
            if index % 2 == 1 {
                digit *= 2
                if digit > 9 { digit -= 9 }
            }
            sum += digit
        }
        return sum % 10 == 0
    }

    static func iban(_ text: String) -> Bool {
        let compact = text.replacingOccurrences(of: " ", with: "").uppercased()
        guard compact.count >= 15, compact.count <= 34, compact.range(of: #"^[A-Z]{2}\d{2}[A-Z0-9]+$"#, options: .regularExpression) != nil else { return false }
        let rearranged = String(compact.dropFirst(4) + compact.prefix(4))
        var remainder = 0
        for character in rearranged {
            let value: Int = character.isNumber ? character.wholeNumberValue! : Int(character.asciiValue! - 55)
            for digit in String(value) {
                remainder = (remainder * 10 + digit.wholeNumberValue!) % 97
            }
        }
        return remainder == 1
    }
}
