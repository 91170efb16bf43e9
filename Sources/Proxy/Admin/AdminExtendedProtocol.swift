import CloneEngine
import NIOCore
import PQ
import PostgresWire

/// Admin work waiting for its turn in a session.
enum PendingAdmin {
    /// A simple Query; needs the caller's role.
    case simple(AdminStatement)
    /// A Parse of an admin statement; needs the caller's role.
    case parse(name: String, statement: AdminStatement, types: [UInt32])
    /// A Bind of a prepared admin statement: the call runs with these parameters.
    case bind(FrontendMessage.Bind, AdminPrepared)
}

/// An admin statement prepared under a name: who may run it, or why it fails.
struct AdminPrepared: Sendable {
    var statement: AdminStatement
    /// The caller, or the error every execution reports (e.g. permission denied).
    var caller: Result<AdminCaller, AdminError>
    var parameterTypes: [UInt32]
}

extension AdminStatement {
    /// The highest `$n` used by the admin calls' arguments.
    var parameterCount: Int {
        references.flatMap(\.arguments).reduce(0) { count, argument in
            if case .parameter(let number) = argument { return max(count, number) }
            return count
        }
    }

    /// A statement with the same result columns and the same parameters, for the
    /// server to Parse and Describe in place of the admin statement. It is never
    /// executed: Bind swaps in the computed result.
    /// The type of each `$n`: that of the argument it stands for, as the real function would declare it.
    var parameterTypeNames: [Int: String] {
        var types: [Int: String] = [:]
        for reference in references {
            for (position, argument) in reference.arguments.enumerated() {
                if case .parameter(let number) = argument, types[number] == nil {
                    types[number] = AdminRegistry.parameterType(function: reference.function, position: position)
                }
            }
        }
        return types
    }

    /// Parameter type OIDs as the server will describe them (declared ones win).
    func parameterTypes(declared: [UInt32]) -> [UInt32] {
        let names = parameterTypeNames
        return (0..<max(parameterCount, declared.count)).map { index in
            if index < declared.count, declared[index] != 0 { return declared[index] }
            return names[index + 1] == "bool" ? 16 : 25
        }
    }

    /// A statement of the same parameters that reads nothing, for where the client's own text
    /// may not be prepared (a session that may be masked, when it cannot be masked here).
    var neutralPlaceholder: String {
        let guardClause = parameterGuard
        return "SELECT NULL::pg_catalog.text AS pgclone" + (guardClause.isEmpty ? "" : " WHERE (\(guardClause)) OR true")
    }

    /// `$1::type IS NULL AND ...` over every parameter (so that the server infers their types),
    /// or "" when there are none.
    private var parameterGuard: String {
        let types = parameterTypeNames
        return (0..<parameterCount).map { "$\($0 + 1)::pg_catalog.\(types[$0 + 1] ?? "text") IS NULL" }.joined(separator: " AND ")
    }

    var placeholder: String {
        let guardClause = parameterGuard
        var bytes = Array(text.utf8)
        for (index, reference) in references.enumerated().reversed() {
            let type = AdminRegistry.resultType(function: reference.function)
            let value = index == 0 && !guardClause.isEmpty
                ? "CASE WHEN \(guardClause) THEN NULL::\(type) ELSE NULL::\(type) END"
                : "NULL::\(type)"
            let replacement: String
            if let columns = AdminRegistry.resultColumns(function: reference.function), case .fromItem(let hasAlias) = reference.placement {
                let nulls = columns.map { "NULL::\($0.type) AS \(SQL.identifier($0.name))" }.joined(separator: ", ")
                let filter = index == 0 && !guardClause.isEmpty ? "(\(guardClause)) AND false" : "false"
                bytes.replaceSubrange(reference.range, with: Array(("(SELECT \(nulls) WHERE \(filter))" + (hasAlias ? "" : " AS \(SQL.identifier(reference.function))")).utf8))
                continue
            }
            switch reference.placement {
            case .targetEntry(let alias):
                replacement = "(\(value))" + (alias == nil ? " AS \(SQL.identifier(reference.function))" : "")
            case .expression:
                replacement = "(\(value))"
            case .fromItem(let hasAlias):
                replacement = "(SELECT \(value) AS \(SQL.identifier(reference.function)))" + (hasAlias ? "" : " AS \(SQL.identifier(reference.function))")
            }
            bytes.replaceSubrange(reference.range, with: Array(replacement.utf8))
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

enum AdminParameters {
    /// Bind values as text, decoding the binary forms drivers use for admin arguments.
    static func decode(_ bind: FrontendMessage.Bind, types: [UInt32]) throws(AdminError) -> [String?] {
        var values: [String?] = []
        for (index, value) in bind.parameters.enumerated() {
            guard var value else {
                values.append(nil)
                continue
            }
            let format: Int16 = bind.parameterFormats.count == 1 ? bind.parameterFormats[0]
                : (index < bind.parameterFormats.count ? bind.parameterFormats[index] : 0)
            let type = index < types.count ? types[index] : 0
            guard format == 1 else {
                values.append(value.readString(length: value.readableBytes) ?? "")
                continue
            }
            switch (type, value.readableBytes) {
            case (16, 1): values.append(value.readInteger(as: UInt8.self) == 0 ? "false" : "true")
            case (21, 2): values.append(String(value.readInteger(as: Int16.self)!))
            case (23, 4): values.append(String(value.readInteger(as: Int32.self)!))
            case (20, 8): values.append(String(value.readInteger(as: Int64.self)!))
            case (3802, let length) where length >= 1:
                _ = value.readInteger(as: UInt8.self)
                values.append(value.readString(length: value.readableBytes) ?? "")
            case (0, _), (25, _), (1043, _), (19, _), (705, _), (114, _):
                values.append(value.readString(length: value.readableBytes) ?? "")
            default:
                throw AdminError("0A000", "binary parameter $\(index + 1) of type \(type) is not supported in pgclone calls; send it as text")
            }
        }
        return values
    }
}
