import CLibPQ

/// A fully read query result. Values are raw bytes as the server sent them
/// (text or binary format); `nil` is SQL NULL.
public struct PQResult: Sendable {
    public enum Status: Sendable, Hashable {
        case commandOK, tuplesOK, copyIn, copyOut, emptyQuery, pipelineSync, singleTuple, other(Int)
    }

    public var status: Status
    public var columnNames: [String]
    public var columnTypes: [UInt32]
    public var rows: [[[UInt8]?]]
    public var commandTag: String

    /// Number of rows a command affected, from the command tag.
    public var affectedRows: Int? {
        commandTag.split(separator: " ").last.flatMap { Int($0) }
    }

    /// A value decoded as UTF-8 text (meaningful for text-format results); nil for NULL and for
    /// a row or column the result does not have (a server that answers with fewer rows or
    /// columns than asked for is an error for the caller to report, never a crash).
    public func string(_ row: Int, _ column: Int) -> String? {
        guard rows.indices.contains(row), rows[row].indices.contains(column) else { return nil }
        return rows[row][column].map { String(decoding: $0, as: UTF8.self) }
    }

    /// The value as text, "" for NULL or a missing column: for catalog columns a real server
    /// never sends as NULL. A server that does anyway gets statements that fail with its own
    /// error, not a crashed proxy.
    public func text(_ row: Int, _ column: Int) -> String {
        string(row, column) ?? ""
    }

    /// Column-wise convenience for single-column results.
    public var strings: [String?] {
        rows.indices.map { string($0, 0) }
    }

    init(_ result: OpaquePointer) {
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK: status = .commandOK
        case PGRES_TUPLES_OK: status = .tuplesOK
        case PGRES_COPY_IN: status = .copyIn
        case PGRES_COPY_OUT: status = .copyOut
        case PGRES_EMPTY_QUERY: status = .emptyQuery
        case PGRES_PIPELINE_SYNC: status = .pipelineSync
        case PGRES_SINGLE_TUPLE: status = .singleTuple
        case let other: status = .other(Int(other.rawValue))
        }
        let columnCount = Int(PQnfields(result))
        let rowCount = Int(PQntuples(result))
        columnNames = (0..<columnCount).map { String(cString: PQfname(result, Int32($0))) }
        columnTypes = (0..<columnCount).map { UInt32(PQftype(result, Int32($0))) }
        var rows: [[[UInt8]?]] = []
        rows.reserveCapacity(rowCount)
        for row in 0..<rowCount {
            var values: [[UInt8]?] = []
            values.reserveCapacity(columnCount)
            for column in 0..<columnCount {
                if PQgetisnull(result, Int32(row), Int32(column)) != 0 {
                    values.append(nil)
                } else {
                    let length = Int(PQgetlength(result, Int32(row), Int32(column)))
                    let pointer = PQgetvalue(result, Int32(row), Int32(column))!
                    values.append(pointer.withMemoryRebound(to: UInt8.self, capacity: length) {
                        Array(UnsafeBufferPointer(start: $0, count: length))
                    })
                }
            }
            rows.append(values)
        }
        self.rows = rows
        commandTag = String(cString: PQcmdStatus(result))
    }
}
