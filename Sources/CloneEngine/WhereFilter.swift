import JSON
import PQ
import SQLParser

/// A `where` option proven to be nothing but a read-only boolean expression.
///
/// The text is parsed by PostgreSQL's own parser inside a fixed statement; it
/// must parse as exactly that one statement (so `;`, unbalanced parentheses and
/// comments that swallow the closing parenthesis all fail), and every function
/// it calls must be immutable or stable on the source (so pg_sleep, dblink,
/// lo_export, pg_terminate_backend and the like are refused). The source COPY
/// also runs in a READ ONLY transaction.
struct WhereFilter: Sendable {
    let text: String

    static func validate(_ filter: String, source: PQConnection) async throws(CloneError) -> WhereFilter {
        let trimmed = filter.trimmingWhitespace()
        guard !trimmed.isEmpty else { throw invalid("the filter is empty") }
        let probe = "SELECT 1 FROM t WHERE (\(trimmed)\n)"
        let statements: [PostgresParser.Statement]
        do {
            statements = try PostgresParser.parse(probe)
        } catch {
            throw invalid(error.message)
        }
        guard statements.count == 1, statements[0].node["SelectStmt"] != nil else {
            throw invalid("it must be a single boolean expression (no ';', no extra statements)")
        }
        guard let whereClause = statements[0].node["SelectStmt"]?["whereClause"] else {
            throw invalid("it must be a boolean expression")
        }
        // Without the parentheses around it too, to the same statement's parts: `b > 5) OR (false`
        // parses inside them, and each range of a split copy ANDed to it would then be ORed
        // away (round 37: every row copied twice); `true ORDER BY 1` parses only outside them.
        let bare: [PostgresParser.Statement]
        do {
            bare = try PostgresParser.parse("SELECT 1 FROM t WHERE \(trimmed)\n")
        } catch {
            throw invalid("it must stand as one expression on its own (are its parentheses balanced?): \(error.message)")
        }
        guard bare.count == 1, case .object(let parts)? = bare[0].node["SelectStmt"], case .object(let wrappedParts)? = statements[0].node["SelectStmt"],
              Set(parts.keys) == Set(wrappedParts.keys) else {
            throw invalid("it must stand as one boolean expression on its own (balanced parentheses, no further clauses)")
        }
        var functions: Set<String> = []
        var forbidden: String?
        whereClause.walk { node in
            guard let (tag, body) = node.tagged else { return }
            switch tag {
            case "FuncCall":
                let names = body["funcname"]?.array.compactMap { $0["String"]?["sval"]?.string } ?? []
                if let name = names.last { functions.insert(name) }
            case "ParamRef":
                forbidden = "parameters ($n)"
            case "SelectStmt":
                if body["lockingClause"] != nil { forbidden = "row locking (FOR UPDATE/SHARE)" }
                if body["intoClause"] != nil { forbidden = "SELECT INTO" }
            case "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt":
                forbidden = "data-modifying statements"
            default:
                break
            }
        }
        if let forbidden { throw invalid("\(forbidden) are not allowed") }
        if !functions.isEmpty {
            let list = "{" + functions.sorted().map { "\"" + $0.replacingQuotes() + "\"" }.joined(separator: ",") + "}"
            let result: PQResult
            do {
                result = try await source.query("""
                    SELECT n.name, COALESCE(bool_and(p.provolatile IN ('i', 's') AND p.prokind IN ('f', 'a', 'w')), false)
                    FROM pg_catalog.unnest($1::pg_catalog.text[]) AS n(name)
                    LEFT JOIN pg_catalog.pg_proc p ON p.proname = n.name
                    GROUP BY n.name ORDER BY n.name
                    """, [list])
            } catch {
                throw CloneError.from(error, context: "checking the where filter")
            }
            for row in result.rows.indices where result.string(row, 1) != "t" {
                throw invalid("function \(result.text(row, 0))() may have side effects (only immutable and stable functions are allowed)")
            }
        }
        return WhereFilter(text: trimmed)
    }

    static func invalid(_ reason: String) -> CloneError {
        CloneError("42601", "invalid \"where\" filter: \(reason)")
    }
}

extension String {
    func replacingQuotes() -> String {
        var out = ""
        for character in self {
            if character == "\"" || character == "\\" { out.append("\\") }
            out.append(character)
        }
        return out
    }
}
