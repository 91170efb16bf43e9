import CloneEngine
import Foundation

/// Arguments of one call with `$n` parameters resolved, read by parameter name.
struct ArgumentList: Sendable {
    var function: String
    var signature: [AdminParameter]
    var values: [AdminStatement.Argument]
    var parameters: [String?]

    /// As PostgreSQL: a call with a number of arguments no signature takes does not resolve.
    func checkCount() throws(AdminError) {
        let required = signature.filter(\.isRequired).count
        guard (required...signature.count).contains(values.count) else {
            let expected = required == signature.count ? "\(required)" : "\(required) to \(signature.count)"
            throw AdminError("42883", "function pgclone.\(function) takes \(expected) arguments, not \(values.count)",
                             hint: "pgclone.\(function)(\(signature.map { $0.isRequired ? "\($0.name) \($0.type)" : "[\($0.name) \($0.type)]" }.joined(separator: ", ")))")
        }
    }

    private func position(_ name: String) -> Int {
        guard let index = signature.firstIndex(where: { $0.name == name }) else {
            preconditionFailure("pgclone.\(function) has no parameter \(name)")
        }
        return index
    }

    private func resolved(_ name: String) throws(AdminError) -> AdminStatement.Argument? {
        let index = position(name)
        guard index < values.count else { return nil }
        if case .parameter(let number) = values[index] {
            guard number <= parameters.count else {
                throw AdminError("08P01", "there is no parameter $\(number)")
            }
            return parameters[number - 1].map(AdminStatement.Argument.text) ?? .null
        }
        return values[index]
    }

    func optionalText(_ name: String) throws(AdminError) -> String? {
        switch try resolved(name) {
        case nil, .null?: return nil
        case .text(let value)?, .number(let value)?: return value
        case .boolean(let value)?: return value ? "true" : "false"
        case .parameter?: return nil
        }
    }

    func text(_ name: String) throws(AdminError) -> String {
        guard let value = try optionalText(name) else {
            throw AdminError("22004", "argument \(name) of pgclone.\(function) must not be NULL")
        }
        return value
    }

    func bool(_ name: String, default value: Bool) throws(AdminError) -> Bool {
        switch try resolved(name) {
        case nil: return value
        case .null?: throw AdminError("22004", "argument \(name) of pgclone.\(function) must not be NULL")
        case .boolean(let flag)?: return flag
        case .text(let text)?, .number(let text)?:
            switch text.lowercased() {
            case "t", "true", "yes", "on", "1", "y": return true
            case "f", "false", "no", "off", "0", "n": return false
            default: throw AdminError("22P02", "invalid input syntax for type boolean: \"\(text)\" (argument \(name) of pgclone.\(function))")
            }
        case .parameter?: return value
        }
    }

    func bigint(_ name: String) throws(AdminError) -> Int64 {
        let text = try text(name)
        guard let value = Int64(text.trimmingCharacters(in: .whitespaces)) else {
            throw AdminError("22P02", "invalid input syntax for type bigint: \"\(text)\" (argument \(name) of pgclone.\(function))")
        }
        return value
    }
}
