import PQ

/// What an admin function returns: one value, or rows with named, typed columns.
public enum AdminResult: Sendable, Hashable {
    case value(String?, type: String)
    case rows(columns: [Column], rows: [[String?]])

    public struct Column: Sendable, Hashable {
        public var name: String
        /// An SQL type name (`text`, `bigint`, `json`, `timestamptz`, ...).
        public var type: String
        public init(_ name: String, _ type: String) {
            self.name = name
            self.type = type
        }
    }

    public static func text(_ value: String?) -> AdminResult { .value(value, type: "text") }

    /// SQL that stands for this result at `placement`, named after `function`.
    func sql(for function: String, placement: AdminStatement.Placement) -> String {
        switch (self, placement) {
        case (.value(let value, let type), .targetEntry(let alias)):
            return "(\(SQL.literal(value))::\(type))" + (alias == nil ? " AS \(SQL.identifier(function))" : "")
        case (.value(let value, let type), .expression):
            return "(\(SQL.literal(value))::\(type))"
        case (.value(let value, let type), .fromItem(let hasAlias)):
            return "(SELECT \(SQL.literal(value))::\(type) AS \(SQL.identifier(function)))" + (hasAlias ? "" : " AS \(SQL.identifier(function))")
        case (.rows(let columns, let rows), .fromItem(let hasAlias)):
            return "(\(Self.relation(columns: columns, rows: rows)))" + (hasAlias ? "" : " AS \(SQL.identifier(function))")
        case (.rows(let columns, let rows), _):
            // A set-returning call outside FROM yields one composite per row, as in PostgreSQL.
            return "(SELECT ROW(\(columns.map { SQL.identifier($0.name) }.joined(separator: ", "))) FROM (\(Self.relation(columns: columns, rows: rows))) AS r)"
        }
    }

    static func relation(columns: [Column], rows: [[String?]]) -> String {
        let names = columns.map { SQL.identifier($0.name) }.joined(separator: ", ")
        guard !rows.isEmpty else {
            let nulls = columns.map { "NULL::\($0.type) AS \(SQL.identifier($0.name))" }.joined(separator: ", ")
            return "SELECT \(nulls) WHERE false"
        }
        let values = rows.map { row in
            "(" + zip(row, columns).map { "\(SQL.literal($0.0))::\($0.1.type)" }.joined(separator: ", ") + ")"
        }.joined(separator: ",\n")
        return "SELECT \(names) FROM (VALUES \(values)) AS v(\(names))"
    }
}

extension AdminStatement {
    /// The statement with every reference replaced by its result.
    func rewritten(with results: [AdminResult]) -> String {
        var bytes = Array(text.utf8)
        for (reference, result) in zip(references, results).reversed() {
            let replacement = Array(result.sql(for: reference.function, placement: reference.placement).utf8)
            bytes.replaceSubrange(reference.range, with: replacement)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
