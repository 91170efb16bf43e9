import JSON
import Masking

/// The options of a clone call, from its JSON argument and boolean parameters.
public struct CloneOptions: Sendable, Hashable {
    public enum Conflict: String, Sendable, Hashable, CaseIterable {
        case error, skip, replace, rename
    }

    public var copyData = true
    public var columns: [String]?
    public var whereFilter: String?
    public var indexes = true
    public var constraints = true
    public var triggers = true
    public var conflict = Conflict.error
    /// Masks by column name: in a table clone, columns of that table; in a schema or database
    /// clone, of every table that has that column (one that no table has is an error).
    public var mask: [String: MaskStrategy] = [:]
    /// Masks for one table, by `schema.table` or `table`: `{"users": {"email": "email"}}`, the
    /// shape discover_sensitive gives (round 27: it was refused, and a column mask had to exist
    /// in every table of a schema clone).
    public var tableMasks: [String: [String: MaskStrategy]] = [:]
    /// Set by a schema clone, not by callers: the indexes (by table `schema.name`) that wait for
    /// functions made after the tables.
    var indexesAfterFunctions: [String: Set<String>] = [:]
    /// Keys of `mask` that read both as a column's strategy and as a table's masks; both apply.
    public var ambiguousMasks: Set<String> = []
    public var parallel = 1
    /// With `conflict: replace`: objects outside the clone that depend on a replaced table
    /// (views, foreign keys of other tables...) may be dropped with it.
    public var cascade = false
    /// With `parallel` above 1: tables larger than this many bytes (heap and TOAST) are copied
    /// in parts at once; nil: decided from the data (see CloneEngine.splitCandidates).
    public var splitLargerThan: Int64?
    /// What the target sessions that build indexes get as maintenance_work_mem, in bytes, when the
    /// server gives less (0: the server's setting). 1 GB, as pgcopydb: a primary key of a few
    /// million rows then sorts in memory (measured: 6M rows, 256 MB -> 1 GB, 1.9 s -> 1.5 s).
    public var maintenanceWorkMem: Int64 = 1 << 30

    public init() {}

    /// Whether the clone masks anything at all.
    public var masksAnything: Bool { !mask.isEmpty || !tableMasks.isEmpty }

    /// The options for one table of the clone: its masks only. `strict` (a table clone): a
    /// column mask it lacks is an error; otherwise such a mask is for other tables.
    func forTable(_ definition: TableDefinition, strict: Bool) throws(CloneError) -> CloneOptions {
        var copy = self
        var effective: [String: MaskStrategy] = [:]
        let has = { (column: String) in definition.columns.contains(where: { $0.name == column }) }
        let tables = definition.ancestors.reversed().map { (table: $0, isItself: false) } + [((definition.schema, definition.name), true)]
        let names = Set(tables.flatMap { [$0.table.name, "\($0.table.schema).\($0.table.name)"] })
        if strict {
            // A table clone: every mask must be for this table; one for another table (a typo,
            // the target name, another schema) would leave this one's values as they are
            // (round 28: it was dropped silently).
            for key in tableMasks.keys.sorted() where !names.contains(key) && !(ambiguousMasks.contains(key) && has(key)) {
                throw CloneError("42P01", "the mask names table \"\(key)\", but this clone is of \(definition.displayName)",
                                 hint: "Name the table cloned (\"\(definition.name)\" or \"\(definition.schema).\(definition.name)\"), or give its columns' masks directly.")
            }
            for key in ambiguousMasks.sorted() where !has(key) && !(names.contains(key) && (tableMasks[key] ?? [:]).keys.allSatisfy(has)) {
                throw CloneError("42703", "the mask for \"\(key)\" names neither a column of \(definition.displayName) nor the table with the columns it masks")
            }
        }
        for (column, strategy) in mask where (strict && !ambiguousMasks.contains(column)) || has(column) {
            effective[column] = strategy
        }
        // A parent's masks cover its children's and partitions' rows (the parent shows them);
        // nearer tables win over farther ones, the qualified name over the plain one.
        for (table, isItself) in tables {
            for key in [table.name, "\(table.schema).\(table.name)"] {
                // The table's own masks all count (one it lacks is an error later); an ancestor's,
                // and those of a mask that reads two ways, for the columns this table has.
                for (column, strategy) in tableMasks[key] ?? [:] where (isItself && !ambiguousMasks.contains(key)) || has(column) {
                    effective[column] = strategy
                }
            }
        }
        copy.mask = effective
        copy.tableMasks = [:]
        copy.ambiguousMasks = []
        return copy
    }

    public static let keys = ["columns", "where", "indexes", "constraints", "triggers", "conflict", "mask", "parallel", "data", "cascade", "split_larger_than",
                               "maintenance_work_mem"]

    /// Parses the JSON options text; unknown keys and wrong types are errors, never ignored.
    public static func parse(_ text: String?, base: CloneOptions = CloneOptions()) throws(CloneError) -> CloneOptions {
        var options = base
        guard let text, !text.trimmingWhitespace().isEmpty else { return options }
        let json: JSONNode
        do {
            json = try JSONReader.parse(text)
        } catch {
            throw CloneError("22P02", "invalid JSON in options: \(error.message)")
        }
        guard case .object(let fields) = json else {
            throw CloneError.invalidOption("options must be a JSON object")
        }
        for key in fields.keys.sorted() where !keys.contains(key) {
            throw CloneError.invalidOption("unknown option \"\(key)\"", hint: "Known options: \(keys.joined(separator: ", ")).")
        }
        func bool(_ key: String) throws(CloneError) -> Bool? {
            switch fields[key] {
            case nil: return nil
            case .bool(let value)?: return value
            default: throw CloneError.invalidOption("option \"\(key)\" must be true or false")
            }
        }
        if let value = try bool("indexes") { options.indexes = value }
        if let value = try bool("constraints") { options.constraints = value }
        if let value = try bool("triggers") { options.triggers = value }
        if let value = try bool("data") { options.copyData = value }
        if let value = try bool("cascade") { options.cascade = value }
        if let columns = fields["columns"] {
            guard case .array(let items) = columns, !items.isEmpty else {
                throw CloneError.invalidOption("option \"columns\" must be a non-empty array of column names")
            }
            var names: [String] = []
            for item in items {
                guard let name = item.string, !name.isEmpty else {
                    throw CloneError.invalidOption("option \"columns\" must contain column names (strings)")
                }
                guard !names.contains(name) else {
                    throw CloneError.invalidOption("column \"\(name)\" appears twice in option \"columns\"")
                }
                names.append(name)
            }
            options.columns = names
        }
        if let filter = fields["where"] {
            guard let text = filter.string else { throw CloneError.invalidOption("option \"where\" must be a string") }
            options.whereFilter = text
        }
        if let conflict = fields["conflict"] {
            guard let text = conflict.string, let value = Conflict(rawValue: text) else {
                throw CloneError.invalidOption("option \"conflict\" must be one of error, skip, replace, rename")
            }
            options.conflict = value
        }
        if let parallel = fields["parallel"] {
            guard case .number(let value) = parallel, value == value.rounded(), value >= 1, value <= 64 else {
                throw CloneError.invalidOption("option \"parallel\" must be an integer from 1 to 64")
            }
            options.parallel = Int(value)
        }
        if let split = fields["split_larger_than"] {
            options.splitLargerThan = try parseBytes(split, option: "split_larger_than")
        }
        if let memory = fields["maintenance_work_mem"] {
            let bytes = try parseBytes(memory, option: "maintenance_work_mem")
            guard bytes == 0 || (bytes >= 1 << 20 && bytes <= 1 << 40) else {
                throw CloneError.invalidOption("option \"maintenance_work_mem\" must be 0 (the server's setting) or from 1MB to 1TB")
            }
            options.maintenanceWorkMem = bytes
        }
        if let mask = fields["mask"] {
            do throws(MaskError) {
                guard case .object(let entries) = mask else { _ = try parseMaskObject(mask); return options }
                var strategies: [String: MaskStrategy] = [:]
                for (key, value) in entries.sorted(by: { $0.key < $1.key }) {
                    guard case .object(let inner) = value else {
                        strategies[key] = try MaskStrategy(json: value, column: key)
                        continue
                    }
                    guard !inner.isEmpty else { throw MaskError("mask for \"\(key)\" is an empty object") }
                    // An object is a table's masks ({"column": strategy, ...}) or a strategy with
                    // parameters ({"type": "constant", "value": ...}); {"type": "hash"} reads as
                    // both (table "users", column "type"; or column "users"): then both apply, as
                    // far as the tables have such columns (round 28: it was taken as a strategy
                    // only, and the column "type" went unmasked).
                    let asStrategy: MaskStrategy?
                    do throws(MaskError) { asStrategy = try MaskStrategy(json: value, column: key) } catch { asStrategy = nil }
                    var asTable: [String: MaskStrategy]?
                    do throws(MaskError) {
                        var table: [String: MaskStrategy] = [:]
                        for (column, strategy) in try parseMaskObject(value) { table[column] = strategy }
                        asTable = table
                    } catch {
                        if asStrategy == nil { throw error }
                    }
                    if let asStrategy { strategies[key] = asStrategy }
                    if let asTable { options.tableMasks[key] = asTable }
                    if asStrategy != nil && asTable != nil { options.ambiguousMasks.insert(key) }
                }
                options.mask = strategies
            } catch {
                throw CloneError.invalidOption(error.message, hint: error.hint)
            }
        }
        return options
    }
}

/// A size in bytes: a number, or a string with a unit (`"100MB"`, `"1 GB"`, `"512kB"`; powers of 1024, as PostgreSQL's settings).
func parseBytes(_ node: JSONNode, option: String) throws(CloneError) -> Int64 {
    let problem = CloneError.invalidOption("option \"\(option)\" must be a size in bytes: a number or a string such as \"256MB\"")
    if case .number(let value) = node {
        guard value >= 0, value == value.rounded(), value < 9e18 else { throw problem }
        return Int64(value)
    }
    guard let text = node.string?.trimmingWhitespace(), !text.isEmpty else { throw problem }
    let digits = text.prefix(while: { $0.isNumber })
    let unit = String(text.dropFirst(digits.count)).trimmingWhitespace().lowercased()
    guard let number = Int64(digits) else { throw problem }
    let factors: [String: Int64] = ["": 1, "b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40]
    guard let factor = factors[unit] else { throw problem }
    let (bytes, overflow) = number.multipliedReportingOverflow(by: factor)
    guard !overflow else { throw problem }
    return bytes
}

extension String {
    func trimmingWhitespace() -> String {
        String(drop(while: { $0.isWhitespace }).reversed().drop(while: { $0.isWhitespace }).reversed())
    }
}
