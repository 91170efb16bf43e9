import Foundation
import JSON
import Yams

/// Reads and validates `policies/*.yaml`. Every problem is reported with its file and
/// line; a file with any problem contributes nothing (the caller keeps its last good set).
public enum PolicyLoader {
    /// Loads every `*.yaml`/`*.yml` file of `directory`, in name order.
    public static func load(directory: String) throws(PolicyErrors) -> [TablePolicy] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
                .filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted()
        } catch {
            throw PolicyErrors(errors: [PolicyError(file: directory, line: nil, message: "cannot read the policy directory: \(error.localizedDescription)")])
        }
        var policies: [TablePolicy] = []
        var errors: [PolicyError] = []
        if names.isEmpty {
            // A deployment that lost its files must not turn masking off.
            throw PolicyErrors(errors: [PolicyError(file: directory, line: nil, message: "no *.yaml policy files; a file with `policies: []` says there are none")])
        }
        for name in names {
            let path = (directory as NSString).appendingPathComponent(name)
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                errors.append(PolicyError(file: path, line: nil, message: "cannot read the file (is it UTF-8?)"))
                continue
            }
            do {
                policies += try parse(text, file: path)
            } catch {
                errors += error.errors
            }
        }
        var seen: [String: String] = [:]
        for policy in policies {
            if let first = seen[policy.qualifiedName] {
                errors.append(PolicyError(file: policy.source, line: nil, message: "table \(policy.qualifiedName) already has a policy (\(first))"))
            }
            seen[policy.qualifiedName] = policy.source
        }
        if !errors.isEmpty { throw PolicyErrors(errors: errors) }
        return policies
    }

    public static func parse(_ text: String, file: String) throws(PolicyErrors) -> [TablePolicy] {
        var errors: [PolicyError] = []
        func fail(_ node: Node?, _ message: String) {
            errors.append(PolicyError(file: file, line: node?.mark?.line, message: message))
        }
        if text.allSatisfy(\.isWhitespace) {
            throw PolicyErrors(errors: [PolicyError(file: file, line: nil, message: "the file is empty; write `policies: []` for a file that holds no policies")])
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw PolicyErrors(errors: [PolicyError(file: file, line: Self.line(of: error), message: "invalid YAML: \(Self.reason(of: error))")])
        } catch {
            throw PolicyErrors(errors: [PolicyError(file: file, line: nil, message: "invalid YAML: \(error)")])
        }
        guard let root else {
            // An empty file is more likely a truncated write than a decision to mask nothing.
            throw PolicyErrors(errors: [PolicyError(file: file, line: nil, message: "the file is empty; write `policies: []` for a file that holds no policies")])
        }
        guard let top = root.mapping else {
            throw PolicyErrors(errors: [PolicyError(file: file, line: root.mark?.line, message: "expected a mapping with the key \"policies\"")])
        }
        for (key, _) in top where key.string != "policies" {
            fail(key, "unknown key \"\(key.string ?? "?")\" (expected \"policies\")")
        }
        guard let list = top["policies"] else {
            if errors.isEmpty { fail(root, "missing key \"policies\"") }
            throw PolicyErrors(errors: errors)
        }
        guard let items = list.sequence else {
            throw PolicyErrors(errors: [PolicyError(file: file, line: list.mark?.line, message: "\"policies\" must be a list")])
        }
        var policies: [TablePolicy] = []
        for item in items {
            guard let fields = item.mapping else {
                fail(item, "each policy must be a mapping with table, unmasked_roles and columns")
                continue
            }
            var seenKeys: Set<String> = []
            for (key, _) in fields {
                let name = key.string ?? "?"
                if !["table", "unmasked_roles", "masked_roles", "columns", "allowed_functions"].contains(name) {
                    fail(key, "unknown key \"\(name)\" (known: table, unmasked_roles, masked_roles, columns, allowed_functions)")
                }
                if !seenKeys.insert(name).inserted { fail(key, "key \"\(name)\" appears twice") }
            }
            guard let tableNode = fields["table"], let tableText = tableNode.string else {
                fail(item, "policy without \"table\" (a schema-qualified name such as test_schema.employees)")
                continue
            }
            guard let (schema, table) = splitQualifiedName(tableText) else {
                fail(tableNode, "malformed table name \"\(tableText)\": expected schema.table")
                continue
            }
            let unmasked = roles(fields["unmasked_roles"], key: "unmasked_roles", fail: fail) ?? []
            let masked = roles(fields["masked_roles"], key: "masked_roles", fail: fail)
            guard let columnsNode = fields["columns"], let columns = columnsNode.mapping, !columns.isEmpty else {
                fail(fields["columns"] ?? item, "policy for \(tableText) needs \"columns\": a mapping of column name to strategy")
                continue
            }
            var parsedColumns: [TablePolicy.Column] = []
            for (columnNode, strategyNode) in columns {
                guard let column = columnNode.string, !column.isEmpty else {
                    fail(columnNode, "column names must be strings")
                    continue
                }
                if parsedColumns.contains(where: { $0.name == column }) {
                    fail(columnNode, "duplicate column \"\(column)\" in the policy for \(tableText)")
                    continue
                }
                do {
                    parsedColumns.append(.init(name: column, strategy: try MaskStrategy(json: json(strategyNode), column: column)))
                } catch {
                    fail(strategyNode, error.message + (error.hint.map { " (\($0))" } ?? ""))
                }
            }
            var policy = TablePolicy(schema: schema, table: table, unmaskedRoles: unmasked, maskedRoles: masked,
                                     columns: parsedColumns, source: "\(file):\(tableNode.mark?.line ?? 0)")
            // Function names as PostgreSQL folds them (unquoted: lower case).
            policy.allowedFunctions = (roles(fields["allowed_functions"], key: "allowed_functions", fail: fail) ?? []).map { String($0.map(Self.foldedASCII)) }
            policies.append(policy)
        }
        if !errors.isEmpty { throw PolicyErrors(errors: errors) }
        return policies
    }

    /// `schema.table`, each part optionally double-quoted (`"Mixed Case"."Order Lines"`).
    public static func splitQualifiedName(_ text: String) -> (String, String)? {
        var parts: [String] = []
        var current = ""
        var quoted = false
        var wasQuoted = false
        var iterator = Array(text).makeIterator()
        var pending: Character? = iterator.next()
        while let character = pending {
            pending = iterator.next()
            if quoted {
                if character == "\"" {
                    if pending == "\"" { current.append("\""); pending = iterator.next() } else { quoted = false }
                } else {
                    current.append(character)
                }
            } else if character == "\"" {
                quoted = true
                wasQuoted = true
            } else if character == "." {
                parts.append(current)
                current = ""
                wasQuoted = false
            } else if character.isWhitespace {
                return nil
            } else {
                // As PostgreSQL folds an unquoted name: only ASCII A-Z are lowered (ÉTAT names
                // the table "État", not "état").
                current.append(wasQuoted ? character : Self.foldedASCII(character))
            }
        }
        parts.append(current)
        guard !quoted, parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else { return nil }
        return (parts[0], parts[1])
    }

    /// An unquoted identifier's character as PostgreSQL folds it: only ASCII A-Z are lowered.
    static func foldedASCII(_ character: Character) -> Character {
        guard character.isASCII, let ascii = character.asciiValue, ascii >= 65, ascii <= 90 else { return character }
        return Character(Unicode.Scalar(ascii + 32))
    }

    private static func roles(_ node: Node?, key: String, fail: (Node?, String) -> Void) -> [String]? {
        guard let node else { return nil }
        if let single = node.scalar?.string {
            return single.isEmpty ? [] : [single]
        }
        guard let list = node.sequence else {
            fail(node, "\"\(key)\" must be a list of \(key.hasSuffix("functions") ? "function" : "role") names")
            return nil
        }
        var names: [String] = []
        for item in list {
            guard let name = item.string, !name.isEmpty else {
                fail(item, "\"\(key)\" must contain \(key.hasSuffix("functions") ? "function" : "role") names")
                continue
            }
            names.append(name)
        }
        return names
    }

    /// YAML to the JSON shape the strategies read (numbers only from plain numeric scalars).
    static func json(_ node: Node) -> JSONNode {
        switch node {
        case .scalar(let scalar):
            if scalar.style == .plain {
                if scalar.string == "null" || scalar.string == "~" || scalar.string.isEmpty { return .string("null") }
                if let number = Double(scalar.string), scalar.string.first.map({ $0.isNumber || $0 == "-" }) == true { return .number(number) }
                if scalar.string == "true" { return .bool(true) }
                if scalar.string == "false" { return .bool(false) }
            }
            return .string(scalar.string)
        case .mapping(let mapping):
            var fields: [String: JSONNode] = [:]
            for (key, value) in mapping { fields[key.string ?? ""] = json(value) }
            return .object(fields)
        case .sequence(let sequence):
            return .array(sequence.map(json))
        @unknown default:
            return .null
        }
    }

    static func line(of error: YamlError) -> Int? {
        switch error {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _): return mark.line
        default: return nil
        }
    }

    static func reason(of error: YamlError) -> String {
        switch error {
        case .scanner(_, let problem, _, _), .parser(_, let problem, _, _), .composer(_, let problem, _, _): return problem
        default: return "\(error)"
        }
    }
}
