import NIOCore

/// RowDescription: one entry per result column.
public struct RowDescription: Hashable, Sendable {
    public struct Column: Hashable, Sendable {
        public var name: String
        /// OID of the table the column comes from, or 0.
        public var tableOID: UInt32
        /// Attribute number within that table, or 0.
        public var columnAttributeNumber: Int16
        public var dataTypeOID: UInt32
        public var dataTypeSize: Int16
        public var dataTypeModifier: Int32
        /// 0 text, 1 binary.
        public var format: Int16

        public init(name: String, tableOID: UInt32 = 0, columnAttributeNumber: Int16 = 0, dataTypeOID: UInt32, dataTypeSize: Int16 = -1, dataTypeModifier: Int32 = -1, format: Int16 = 0) {
            self.name = name
            self.tableOID = tableOID
            self.columnAttributeNumber = columnAttributeNumber
            self.dataTypeOID = dataTypeOID
            self.dataTypeSize = dataTypeSize
            self.dataTypeModifier = dataTypeModifier
            self.format = format
        }
    }

    public var columns: [Column]
    public init(columns: [Column]) { self.columns = columns }

    static func decode(_ payload: inout ByteBuffer) throws(WireError) -> RowDescription {
        let count = try payload.readWireCount()
        var columns: [Column] = []
        columns.reserveCapacity(count)
        for _ in 0..<count {
            let name = try payload.readCString()
            columns.append(Column(
                name: name,
                tableOID: try payload.readWireInteger(),
                columnAttributeNumber: try payload.readWireInteger(),
                dataTypeOID: try payload.readWireInteger(),
                dataTypeSize: try payload.readWireInteger(),
                dataTypeModifier: try payload.readWireInteger(),
                format: try payload.readWireInteger()
            ))
        }
        return RowDescription(columns: columns)
    }

    func encode(into out: inout ByteBuffer) {
        out.writeInteger(Int16(columns.count))
        for column in columns {
            out.writeCString(column.name)
            out.writeInteger(column.tableOID)
            out.writeInteger(column.columnAttributeNumber)
            out.writeInteger(column.dataTypeOID)
            out.writeInteger(column.dataTypeSize)
            out.writeInteger(column.dataTypeModifier)
            out.writeInteger(column.format)
        }
    }
}

/// DataRow: the values stay one slice; lengths are validated once at decode.
public struct DataRow: Hashable, Sendable {
    public var columnCount: Int
    /// The column values, each `Int32 length` + bytes (-1 for NULL).
    public var bytes: ByteBuffer

    public init(values: [ByteBuffer?]) {
        var bytes = ByteBuffer()
        for value in values { bytes.writeWireValue(value) }
        self.columnCount = values.count
        self.bytes = bytes
    }

    public var values: [ByteBuffer?] {
        var copy = bytes
        var result: [ByteBuffer?] = []
        result.reserveCapacity(columnCount)
        for _ in 0..<columnCount { result.append(try! copy.readWireValue()) }
        return result
    }

    static func decode(_ payload: inout ByteBuffer) throws(WireError) -> DataRow {
        let count = try payload.readWireCount()
        let values = payload
        for _ in 0..<count { _ = try payload.readWireValue() }
        let bytes = values.getSlice(at: values.readerIndex, length: payload.readerIndex - values.readerIndex)!
        var row = DataRow(values: [])
        row.columnCount = count
        row.bytes = bytes
        return row
    }

    func encode(into out: inout ByteBuffer) {
        out.writeInteger(Int16(columnCount))
        var bytes = self.bytes
        out.writeBuffer(&bytes)
    }
}
