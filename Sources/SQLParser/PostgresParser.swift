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

    /// Parses `sql` into its statements; throws the parser's own message on a syntax error.
    public static func parse(_ sql: String) throws(SyntaxError) -> [Statement] {
        let result = pg_query_parse(sql)
        defer { pg_query_free_parse_result(result) }
        if let error = result.error {
            throw SyntaxError(
                message: String(cString: error.pointee.message),
                position: Int(error.pointee.cursorpos))
        }
        guard let tree = result.parse_tree,
              let root = JSONReader.parse(Array(String(cString: tree).utf8))
        else {
            throw SyntaxError(message: "could not read the parse tree", position: 0)
        }
        return root["stmts"]?.array.compactMap { raw -> Statement? in
            guard let node = raw["stmt"] else { return nil }
            return Statement(node: node, location: raw["stmt_location"]?.int ?? 0, length: raw["stmt_len"]?.int)
        } ?? []
    }
}

/// A syntax error as PostgreSQL reports it; `position` is 1-based like the server's.
public struct SyntaxError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public var position: Int
    public var description: String { message }
}
