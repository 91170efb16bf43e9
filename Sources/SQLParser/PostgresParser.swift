import CPgQuery
import JSON

/// PostgreSQL's own parser (libpg_query), so that statements are understood
/// exactly as the server will understand them.
public enum PostgresParser {
    public struct Statement: Sendable {
        /// The statement node, e.g. `{"SelectStmt": {...}}`.
        public var node: JSONNode
        /// Byte offset of the statement in the input.
        public var location: Int
        /// Byte length, or `nil` when it runs to the end of the input.
        public var length: Int?
    }

    /// Statements longer than this are not parsed (their trees could nest deeper than the
    /// parser threads' stacks).
    public static let maximumLength = 1 << 20

    /// Parses `sql` into its statements; throws the parser's own message on a syntax error.
    public static func parse(_ sql: String) throws(SyntaxError) -> [Statement] {
        guard sql.utf8.count <= maximumLength else {
            throw SyntaxError(message: "statement too long for pgclone to read (\(sql.utf8.count) bytes; the limit is \(maximumLength))", position: 0)
        }
        // libpg_query and the reader both recurse once per tree level: on a thread with room for it.
        let outcome: Result<JSONNode, SyntaxError> = ParserThreads.shared.run {
            let result = pg_query_parse(sql)
            defer { pg_query_free_parse_result(result) }
            if let error = result.error {
                return .failure(SyntaxError(message: String(cString: error.pointee.message), position: Int(error.pointee.cursorpos)))
            }
            guard let tree = result.parse_tree else {
                return .failure(SyntaxError(message: "could not read the parse tree", position: 0))
            }
            do {
                return .success(try JSONReader.parseOrThrow(Array(String(cString: tree).utf8)))
            } catch {
                return .failure(SyntaxError(message: "statement too complex for pgclone to read (parse tree \(error))", position: 0))
            }
        }
        let root = try outcome.get()
        return root["stmts"]?.array.compactMap { raw -> Statement? in
            guard let node = raw["stmt"] else { return nil }
            return Statement(node: node, location: raw["stmt_location"]?.int ?? 0, length: raw["stmt_len"]?.int)
        } ?? []
    }
}

extension PostgresParser {
    /// Every operator and function name a statement uses (`["pg_catalog", "="]`, `["upper"]`),
    /// including the operators of IN and ANY: SQL that pgclone runs in a user's session must
    /// name them all with their schema, or the user's search_path could capture them.
    public static func operatorAndFunctionNames(in sql: String) throws(SyntaxError) -> [[String]] {
        var names: [[String]] = []
        for statement in try parse(sql) {
            statement.node.walk { node in
                guard let (tag, body) = node.tagged else { return }
                let list: JSONNode?
                switch tag {
                case "A_Expr": list = body["name"]
                case "SubLink": list = body["operName"]
                case "FuncCall": list = body["funcname"]
                default: list = nil
                }
                guard let parts = list?.array.compactMap({ $0["String"]?["sval"]?.string }), !parts.isEmpty else { return }
                names.append(parts)
            }
        }
        return names
    }
}

/// A syntax error as PostgreSQL reports it; `position` is 1-based like the server's.
public struct SyntaxError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public var position: Int
    public var description: String { message }
}
