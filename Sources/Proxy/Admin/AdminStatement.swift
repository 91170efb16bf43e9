import CloneEngine
import JSON
import PQ
import SQLParser

/// A statement that uses the pgclone admin API, as found by PostgreSQL's parser.
///
/// Each reference is a call `pgclone.fn(args)` or the view `pgclone.jobs_view`,
/// with the byte range it occupies in the text. Running the statement means:
/// compute each reference, then replace its range with the result as a literal
/// relation or value, and let the server run what remains (so WHERE, ORDER BY,
/// column lists and result formats behave exactly as in PostgreSQL).
public struct AdminStatement: Sendable {
    public enum Argument: Sendable, Hashable {
        case text(String)
        case number(String)
        case boolean(Bool)
        case null
        /// `$n` of the extended protocol, bound at Bind.
        case parameter(Int)
    }

    public enum Placement: Sendable, Hashable {
        /// The whole value of a target-list entry; `alias` is the entry's own name, if any.
        case targetEntry(alias: String?)
        /// A function in FROM; `hasAlias` tells whether the statement names it.
        case fromItem(hasAlias: Bool)
        /// Anywhere else in an expression.
        case expression
    }

    public struct Reference: Sendable, Hashable {
        public var function: String
        public var arguments: [Argument]
        /// True for `pgclone.jobs_view` (a relation, not a call).
        public var isRelation: Bool
        public var range: Range<Int>
        public var placement: Placement
    }

    public let text: String
    public let references: [Reference]

    /// Cheap test run on every statement of an unmasked session: does the text
    /// mention the API at all? Only then is it parsed.
    public static func mightReferenceAdminAPI<Bytes: Collection>(_ bytes: Bytes) -> Bool where Bytes.Element == UInt8 {
        let needle: [UInt8] = Array("pgclone".utf8)
        var matched = 0
        for byte in bytes {
            let lower = byte | 0x20
            if lower == needle[matched] {
                matched += 1
                if matched == needle.count { return true }
            } else {
                matched = lower == needle[0] ? 1 : 0
            }
        }
        return false
    }

    /// Finds the admin references of `sql`; `nil` when it has none (the statement
    /// only mentions pgclone in a string, a comment, or another schema).
    public static func recognize(_ sql: String) throws(AdminError) -> AdminStatement? {
        let statements: [PostgresParser.Statement]
        do {
            statements = try PostgresParser.parse(sql)
        } catch {
            // Not ours to report: the server gives the same syntax error for its own reasons.
            return nil
        }
        let lexer = SQLLexer(sql)
        var references: [Reference] = []
        var firstError: AdminError?
        for statement in statements {
            collect(statement.node, lexer: lexer, placement: .expression, into: &references, error: &firstError)
        }
        if let firstError { throw firstError }
        guard !references.isEmpty else { return nil }
        guard statements.count == 1 else {
            throw AdminError("0A000", "a pgclone call must be the only statement in its query string")
        }
        return AdminStatement(text: sql, references: references.sorted { $0.range.lowerBound < $1.range.lowerBound })
    }

    private static func collect(_ node: JSONNode, lexer: SQLLexer, placement: Placement, into references: inout [Reference], error: inout AdminError?) {
        switch node {
        case .array(let items):
            for item in items { collect(item, lexer: lexer, placement: .expression, into: &references, error: &error) }
        case .object(let fields):
            if let call = fields["FuncCall"], let name = adminName(call["funcname"]) {
                let start = call["location"]?.int ?? 0
                guard let end = lexer.endOfCall(startingAt: start) else {
                    error = error ?? AdminError("42601", "could not read the arguments of pgclone.\(name)")
                    return
                }
                var arguments: [Argument] = []
                for argument in call["args"]?.array ?? [] {
                    do {
                        arguments.append(try readArgument(argument, lexer: lexer))
                    } catch let problem {
                        error = error ?? AdminError("0A000", "arguments of pgclone.\(name) must be constants or parameters (\(problem.message))")
                        return
                    }
                }
                if call["agg_star"]?.bool == true || call["over"] != nil || call["agg_order"] != nil {
                    error = error ?? AdminError("42601", "pgclone.\(name) cannot be used with *, ORDER BY or OVER")
                    return
                }
                references.append(Reference(function: name, arguments: arguments, isRelation: false, range: start..<end, placement: placement))
                return
            }
            // Of pgclone's relations only jobs_view is the admin API's; its own state tables
            // (pgclone.jobs, pgclone.masking_policies) are plain tables of the state database.
            if let range = fields["RangeVar"], range["schemaname"]?.string == "pgclone", let name = range["relname"]?.string, name == "jobs_view" {
                let start = range["location"]?.int ?? 0
                let end = lexer.endOfQualifiedName(startingAt: start)
                references.append(Reference(function: name, arguments: [], isRelation: true, range: start..<end,
                                            placement: .fromItem(hasAlias: range["alias"] != nil)))
                return
            }
            if let target = fields["ResTarget"], let value = target["val"] {
                let alias = target["name"]?.string
                collect(value, lexer: lexer, placement: .targetEntry(alias: alias), into: &references, error: &error)
                return
            }
            if let rangeFunction = fields["RangeFunction"] {
                let hasAlias = rangeFunction["alias"] != nil
                for list in rangeFunction["functions"]?.array ?? [] {
                    for item in list["List"]?["items"]?.array ?? [] {
                        collect(item, lexer: lexer, placement: .fromItem(hasAlias: hasAlias), into: &references, error: &error)
                    }
                }
                return
            }
            // A node wrapper ({"SelectStmt": {...}}) keeps the placement; any other field resets it.
            if fields.count == 1, let (_, body) = node.tagged, case .object = body {
                collect(body, lexer: lexer, placement: placement, into: &references, error: &error)
                return
            }
            for value in fields.values {
                collect(value, lexer: lexer, placement: .expression, into: &references, error: &error)
            }
        default:
            break
        }
    }

    private static func adminName(_ names: JSONNode?) -> String? {
        let parts = names?.array.compactMap { $0["String"]?["sval"]?.string } ?? []
        guard parts.count == 2, parts[0] == "pgclone" else { return nil }
        return parts[1]
    }

    private struct ArgumentProblem: Error { var message: String }

    private static func readArgument(_ node: JSONNode, lexer: SQLLexer) throws(ArgumentProblem) -> Argument {
        guard let (tag, body) = node.tagged else { throw ArgumentProblem(message: "unexpected argument") }
        switch tag {
        case "A_Const":
            if body["isnull"]?.bool == true { return .null }
            if let string = body["sval"]?["sval"]?.string { return .text(string) }
            if body["sval"] != nil { return .text("") }
            if let boolean = body["boolval"] { return .boolean(boolean["boolval"]?.bool ?? false) }
            if body["ival"] != nil || body["fval"] != nil {
                guard let literal = lexer.numericLiteral(at: body["location"]?.int ?? 0) else {
                    throw ArgumentProblem(message: "unreadable number")
                }
                return .number(literal)
            }
            if let bits = body["bsval"]?["bsval"]?.string { return .text(bits) }
            throw ArgumentProblem(message: "unsupported constant")
        case "TypeCast":
            // '{...}'::jsonb, 'x'::text, true::boolean: the constant is what matters.
            guard let inner = body["arg"] else { throw ArgumentProblem(message: "empty cast") }
            return try readArgument(inner, lexer: lexer)
        case "ParamRef":
            guard let number = body["number"]?.int, number > 0 else { throw ArgumentProblem(message: "bad parameter") }
            return .parameter(number)
        case "A_Expr":
            // -5 arrives as unary minus on a constant in some positions.
            if body["kind"]?.string == "AEXPR_OP", body["lexpr"] == nil,
               body["name"]?.array.first?["String"]?["sval"]?.string == "-",
               let right = body["rexpr"], case .number(let digits)? = try? readArgument(right, lexer: lexer) {
                return .number(digits.hasPrefix("-") ? String(digits.dropFirst()) : "-" + digits)
            }
            throw ArgumentProblem(message: "expressions are not allowed")
        default:
            throw ArgumentProblem(message: "\(tag) is not allowed")
        }
    }
}

/// An admin API error: an SQLSTATE and a message, sent to the client as an ErrorResponse.
/// The same value the clone engine reports, so its errors pass through unchanged.
public typealias AdminError = CloneError
