import JSON
import PQ

/// Compares a clone with its source, table by table, each side read from one snapshot and both
/// sides at once. Modes:
/// * `count` (the default): exact row counts;
/// * `estimate`: the planner's row estimates (pg_class.reltuples, as of the last ANALYZE), an
///   exact count where a table has never been analysed;
/// * `checksum`: row counts and an order-independent hash of every row's text, computed by each
///   server (no rows leave it); a table that differs and has a single-column integer key is then
///   narrowed down by bisection over key ranges, to the keys that differ.
struct Verifier {
    enum Mode: String, Sendable {
        case count, estimate, checksum
    }

    struct Options: Sendable, Equatable {
        var mode = Mode.count
        /// Keys listed at most per table.
        var maximumKeys = 20

        static let keys = ["mode", "max_keys"]

        static func parse(_ text: String?) throws(CloneError) -> Options {
            var options = Options()
            guard let text, !text.trimmingSpaces().isEmpty else { return options }
            let json: JSONNode
            do {
                json = try JSONReader.parse(text)
            } catch {
                throw CloneError("22P02", "invalid JSON in options: \(error.message)")
            }
            guard case .object(let fields) = json else { throw CloneError.invalidOption("options must be a JSON object") }
            for key in fields.keys.sorted() where !keys.contains(key) {
                throw CloneError.invalidOption("unknown option \"\(key)\"", hint: "Known options of verify: \(keys.joined(separator: ", ")).")
            }
            if let mode = fields["mode"] {
                guard let name = mode.string, let parsed = Mode(rawValue: name == "exact" ? "count" : name) else {
                    throw CloneError.invalidOption("option \"mode\" must be \"count\" (or \"exact\"), \"estimate\" or \"checksum\"")
                }
                options.mode = parsed
            }
            if let keys = fields["max_keys"] {
                guard let count = keys.int, count >= 0, count <= 10_000 else { throw CloneError.invalidOption("option \"max_keys\" must be an integer from 0 to 10000") }
                options.maximumKeys = count
            }
            return options
        }
    }

    /// One row of the result.
    struct Row: Sendable, Equatable {
        var schema: String
        var table: String
        var sourceRows: Int64?
        var targetRows: Int64?
        var match: String
        var detail: String?
    }

    /// A table on one side: its kind and columns (name, type) in order.
    struct Table: Sendable, Equatable {
        var schema: String
        var name: String
        var isPartitioned: Bool
        var columns: [String]
        /// The single-column integer primary key (or unique not-null column), if any.
        var integerKey: String?
        /// A partitioned table with foreign partitions: its other leaves (quoted, qualified),
        /// whose rows are the table's here (a clone copies no foreign rows, as pg_dump).
        var localLeaves: [String]? = nil
        /// A partitioned table's partitions, at every depth, each `name: bound` (sorted; foreign
        /// ones left out: a clone does not make them).
        var partitions: [String] = []
    }

    let source: PQConnection
    let target: PQConnection
    let options: Options

    /// Both sides render values the same way (row text is hashed).
    static let settings = PortableSettings.sql + "; SET TimeZone = 'UTC'; SET search_path = ''"

    static let tablesQuery = """
        SELECT n.nspname::pg_catalog.text, c.relname::pg_catalog.text, c.relkind OPERATOR(pg_catalog.=) 'p',
               (SELECT pg_catalog.string_agg(a.attname::pg_catalog.text, E'\\x1f' ORDER BY a.attnum) FROM pg_catalog.pg_attribute a
                WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped),
               (SELECT a.attname::pg_catalog.text FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a
                  ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0]
                WHERE i.indrelid OPERATOR(pg_catalog.=) c.oid AND (i.indisprimary OR (i.indisunique AND a.attnotnull)) AND i.indnkeyatts OPERATOR(pg_catalog.=) 1
                  AND i.indpred IS NULL AND i.indexprs IS NULL AND a.atttypid OPERATOR(pg_catalog.=) ANY ('{int2,int4,int8}'::pg_catalog.regtype[]::pg_catalog.oid[])
                ORDER BY i.indisprimary DESC LIMIT 1),
               CASE WHEN c.relkind OPERATOR(pg_catalog.=) 'p' AND EXISTS (
                      SELECT 1 FROM pg_catalog.pg_partition_tree(c.oid) t JOIN pg_catalog.pg_class l ON l.oid OPERATOR(pg_catalog.=) t.relid
                      WHERE l.relkind OPERATOR(pg_catalog.=) 'f')
                    THEN COALESCE((SELECT pg_catalog.string_agg(pg_catalog.format('%I.%I', ln.nspname, l.relname), E'\\x1f' ORDER BY l.oid)
                                   FROM pg_catalog.pg_partition_tree(c.oid) t JOIN pg_catalog.pg_class l ON l.oid OPERATOR(pg_catalog.=) t.relid
                                   JOIN pg_catalog.pg_namespace ln ON ln.oid OPERATOR(pg_catalog.=) l.relnamespace
                                   WHERE t.isleaf AND l.relkind OPERATOR(pg_catalog.<>) 'f'), '') END,
               CASE WHEN c.relkind OPERATOR(pg_catalog.=) 'p' THEN
                 (SELECT pg_catalog.string_agg(pg_catalog.format('%I.%I: %s', pn.nspname, p.relname, pg_catalog.pg_get_expr(p.relpartbound, p.oid)), E'\\x1f' ORDER BY 1)
                  FROM pg_catalog.pg_partition_tree(c.oid) t JOIN pg_catalog.pg_class p ON p.oid OPERATOR(pg_catalog.=) t.relid
                  JOIN pg_catalog.pg_namespace pn ON pn.oid OPERATOR(pg_catalog.=) p.relnamespace
                  WHERE t.level OPERATOR(pg_catalog.>) 0 AND p.relkind OPERATOR(pg_catalog.<>) 'f') END
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
        WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p}') AND NOT c.relispartition
          AND n.nspname OPERATOR(pg_catalog.!~) '^pg_' AND n.nspname OPERATOR(pg_catalog.<>) ALL ('{information_schema,pgclone,pgclone_masked}')
          AND ($1::pg_catalog.text IS NULL OR n.nspname OPERATOR(pg_catalog.=) $1)
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                          AND d.objid OPERATOR(pg_catalog.=) c.oid AND d.deptype OPERATOR(pg_catalog.=) 'e')
        ORDER BY 1, 2
        """

    static func tables(in result: PQResult) -> [Table] {
        result.rows.indices.map { row in
            Table(schema: result.string(row, 0) ?? "", name: result.string(row, 1) ?? "", isPartitioned: result.string(row, 2) == "t",
                  // Quoted here: names from a server never go into SQL as they come.
                  columns: (result.string(row, 3) ?? "").split(separator: "\u{1F}").map { SQL.identifier(String($0)) }, integerKey: result.string(row, 4),
                  localLeaves: result.string(row, 5).map { $0.split(separator: "\u{1F}").map(String.init) },
                  partitions: (result.string(row, 6) ?? "").split(separator: "\u{1F}").map(String.init).sorted())
        }
    }

    func run(schema: String?) async throws -> [Row] {
        // Rows that row-level security would hide are an error, not a smaller count.
        try await target.exec(Self.settings + "; SET row_security = off")
        try await target.exec("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        try await source.exec(Self.settings)
        async let sourceList = source.query(Self.tablesQuery, [schema])
        async let targetList = target.query(Self.tablesQuery, [schema])
        let sourceTables = Self.tables(in: try await sourceList)
        let targetTables = Self.tables(in: try await targetList)
        if let schema, sourceTables.isEmpty, targetTables.isEmpty {
            let exists = try await source.query("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) $1", [schema]).rows.isEmpty == false
            if !exists { throw CloneError("3F000", "schema \"\(schema)\" does not exist on source") }
        }
        let targetByName = Dictionary(targetTables.map { ($0.schema + "." + $0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let sourceNames = Set(sourceTables.map { $0.schema + "." + $0.name })
        var rows: [Row] = []
        for table in sourceTables {
            guard let other = targetByName[table.schema + "." + table.name] else {
                let count = try await measure(table, on: source).count
                rows.append(Row(schema: table.schema, table: table.name, sourceRows: count, targetRows: nil, match: "✗ (missing on target)"))
                continue
            }
            rows.append(try await compare(table, other))
        }
        for table in targetTables where !sourceNames.contains(table.schema + "." + table.name) {
            let count = try await measure(table, on: target).count
            rows.append(Row(schema: table.schema, table: table.name, sourceRows: nil, targetRows: count, match: "✗ (only on target)"))
        }
        try await target.exec("COMMIT")
        return rows.sorted { ($0.schema, $0.table) < ($1.schema, $1.table) }
    }

    /// Count (or estimate) and, in checksum mode, the hash of a table on one side.
    struct Measure: Equatable {
        var count: Int64
        var hash: Int64?
    }

    private func relation(_ table: Table) -> String {
        // A partitioned table's rows are its partitions'; an inheritance parent's own rows only.
        guard let leaves = table.localLeaves else { return (table.isPartitioned ? "" : "ONLY ") + SQL.qualified(table.schema, table.name) }
        let sources = leaves.isEmpty ? ["ONLY " + SQL.qualified(table.schema, table.name)] : leaves.map { "ONLY " + $0 }
        return "(" + sources.map { "SELECT \(table.columns.joined(separator: ", ")) FROM \($0)" }.joined(separator: " UNION ALL ") + ")"
    }

    /// Stands for "hash the output text" of a bpchar column in `rowHashes`' functions.
    static let blankPaddedText = "pgclone:bpchar"

    /// The candidate row hashes, cheapest first; each is an int8 in [-2³¹, 2³¹) (KeyMoments
    /// multiplies it by a key below 2³²). `columns` are quoted names, `functions` each column's
    /// extended hash function (nil where its type has none that hashes the same on every server).
    /// 1. Each column's own extended hash (its text's where nil), seeded by its position (values
    ///    swapped between columns differ), XORed, the high half kept: no row is built.
    /// 2. The same over every column's text (where a type's function fails on a value).
    /// 3. hashtext of the row's text.
    static func rowHashes(_ columns: [String], functions: [String?]) -> [String] {
        func combined(_ functions: [String?]) -> String {
            let parts = zip(columns, functions).enumerated().map { index, pair in
                let hash: String
                switch pair.1 {
                case Self.blankPaddedText?:
                    // bpchar's cast to text drops trailing blanks; its output function keeps them.
                    hash = "pg_catalog.hashtextextended(pg_catalog.textin(pg_catalog.bpcharout(\(pair.0))) COLLATE pg_catalog.\"C\", \(index + 1))"
                case let function?:
                    hash = "\(function)(\(pair.0), \(index + 1))"
                case nil:
                    hash = "pg_catalog.hashtextextended(\(pair.0)::pg_catalog.text COLLATE pg_catalog.\"C\", \(index + 1))"
                }
                // NULL gets a value of its own per column.
                return "COALESCE(\(hash), \(-7_046_029_254_386_353_131 &+ Int64(index) &* 40_503))"
            }
            return "((\(parts.joined(separator: " OPERATOR(pg_catalog.#) "))) OPERATOR(pg_catalog.>>) 32)"
        }
        var candidates: [String] = []
        if !columns.isEmpty, functions.count == columns.count {
            let asText = functions.map { $0 == Self.blankPaddedText ? $0 : nil }
            if functions != asText { candidates.append(combined(functions)) }
            candidates.append(combined(asText))
        }
        candidates.append("pg_catalog.hashtext(ROW(\(columns.joined(separator: ", ")))::pg_catalog.text)::pg_catalog.int8")
        return candidates
    }

    /// Each column's extended hash function (the type's default hash operator class, support
    /// function 2; domains hash as their base type), by column name, as a qualified name, for
    /// the types whose equal values are the same value only. A hash follows equality, and
    /// equality is looser than sameness for many types: 1.5 = 1.50, -0 = 0, '1 day' = '24
    /// hours', jsonb 1.0 = 1, citext and nondeterministic collations ignore case; verify said ✓
    /// for such changed rows (fidelity round 25). Those, enums (their OIDs differ between
    /// servers) and everything else are hashed as their text under COLLATE "C".
    private func extendedHashFunctions(_ table: Table) async throws -> [String: String] {
        let rows = try await source.query("""
            WITH c AS (
              SELECT a.attname::pg_catalog.text AS name, CASE WHEN t.typtype OPERATOR(pg_catalog.=) 'd' THEN t.typbasetype ELSE t.oid END AS type
              FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid
              WHERE a.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
            )
            SELECT c.name, COALESCE(
              (SELECT pg_catalog.format('%I.%I', pn.nspname, pr.proname)
               FROM pg_catalog.pg_opclass oc JOIN pg_catalog.pg_am am ON am.oid OPERATOR(pg_catalog.=) oc.opcmethod AND am.amname OPERATOR(pg_catalog.=) 'hash'
               JOIN pg_catalog.pg_amproc ap ON ap.amprocfamily OPERATOR(pg_catalog.=) oc.opcfamily AND ap.amprocnum OPERATOR(pg_catalog.=) 2
                 AND ap.amproclefttype OPERATOR(pg_catalog.=) oc.opcintype AND ap.amprocrighttype OPERATOR(pg_catalog.=) oc.opcintype
               JOIN pg_catalog.pg_proc pr ON pr.oid OPERATOR(pg_catalog.=) ap.amproc JOIN pg_catalog.pg_namespace pn ON pn.oid OPERATOR(pg_catalog.=) pr.pronamespace
               WHERE oc.opcdefault AND (oc.opcintype OPERATOR(pg_catalog.=) c.type OR EXISTS (
                 SELECT 1 FROM pg_catalog.pg_cast k WHERE k.castsource OPERATOR(pg_catalog.=) c.type AND k.casttarget OPERATOR(pg_catalog.=) oc.opcintype
                   AND k.castmethod OPERATOR(pg_catalog.=) 'b' AND k.castcontext OPERATOR(pg_catalog.=) 'i'))
               ORDER BY oc.opcintype OPERATOR(pg_catalog.=) c.type DESC LIMIT 1),
              NULL)
            FROM c
            WHERE c.type OPERATOR(pg_catalog.=) ANY ('{int2,int4,int8,oid,bool,date,time,timestamp,timestamptz,uuid,bytea}'::pg_catalog.regtype[]::pg_catalog.oid[])
            UNION ALL
            SELECT c.name, \(SQL.literal(Self.blankPaddedText)) FROM c WHERE c.type OPERATOR(pg_catalog.=) 'pg_catalog.bpchar'::pg_catalog.regtype
            """, [SQL.qualified(table.schema, table.name)])
        var functions: [String: String] = [:]
        for row in rows.rows.indices {
            if let name = rows.string(row, 0), let function = rows.string(row, 1) { functions[SQL.identifier(name)] = function }
        }
        return functions
    }

    /// The cheapest row hash that works on both sides for the table's columns (a type without a
    /// hash function, such as json or point, makes the first candidates fail on the first row).
    private func chooseRowHash(_ table: Table, _ other: Table, columns: [String]) async throws -> String {
        let functions = try await extendedHashFunctions(table)
        let candidates = Self.rowHashes(columns, functions: columns.map { functions[$0] })
        for candidate in candidates.dropLast() {
            async let left = probe(candidate, table, on: source)
            async let right = probe(candidate, other, on: target)
            let (a, b) = try await (left, right)
            if a && b { return candidate }
        }
        return candidates.last!
    }

    private func probe(_ hash: String, _ table: Table, on connection: PQConnection) async throws -> Bool {
        try await connection.exec("SAVEPOINT pgclone_verify_probe")
        do {
            _ = try await connection.exec("SELECT \(hash) FROM \(relation(table)) AS t LIMIT 1")
            try await connection.exec("RELEASE SAVEPOINT pgclone_verify_probe")
            return true
        } catch {
            try await connection.exec("ROLLBACK TO SAVEPOINT pgclone_verify_probe")
            return false
        }
    }

    /// The count (or estimate) of a table on one side, and with `hash` (checksum mode, a table
    /// on both sides) the sum of its rows' hashes.
    private func measure(_ table: Table, on connection: PQConnection, hash: String? = nil) async throws -> Measure {
        if options.mode == .estimate {
            let estimate = try await connection.query("""
                SELECT CASE WHEN pg_catalog.bool_or(c.reltuples OPERATOR(pg_catalog.<) 0) THEN NULL ELSE pg_catalog.sum(c.reltuples)::pg_catalog.int8 END
                FROM pg_catalog.pg_partition_tree($1::pg_catalog.regclass) t JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.relid
                WHERE c.relkind OPERATOR(pg_catalog.=) 'r'
                """, [SQL.qualified(table.schema, table.name)]).string(0, 0)
            if let estimate, let count = Int64(estimate) { return Measure(count: count, hash: nil) }
        }
        if let hash {
            let result = try await connection.exec("SELECT pg_catalog.count(*), COALESCE(pg_catalog.sum(\(hash)), 0) FROM \(relation(table)) AS t")
            return Measure(count: Int64(result.string(0, 0) ?? "0") ?? 0, hash: Int64(result.string(0, 1) ?? "0"))
        }
        let result = try await connection.exec("SELECT pg_catalog.count(*) FROM \(relation(table)) AS t")
        return Measure(count: Int64(result.string(0, 0) ?? "0") ?? 0, hash: nil)
    }

    private func compare(_ table: Table, _ other: Table) async throws -> Row {
        var row = Row(schema: table.schema, table: table.name, sourceRows: nil, targetRows: nil, match: "✓")
        // Hashes compare rows in the source's column order, by name; columns must be the same set.
        var columns = table.columns
        if options.mode == .checksum && Set(table.columns) != Set(other.columns) {
            row.detail = "columns differ: " + describeColumns(table.columns, other.columns)
            columns = table.columns.filter(other.columns.contains)
        }
        // Partitioned tables are counted whole: partitions laid out otherwise hold other rows
        // each, whatever the totals (round 37: ✓ for different bounds).
        if table.partitions != other.partitions {
            let onlySource = table.partitions.filter { !other.partitions.contains($0) }, onlyTarget = other.partitions.filter { !table.partitions.contains($0) }
            row.detail = [row.detail, "partitions differ: " + (onlySource.map { "source has \($0)" } + onlyTarget.map { "target has \($0)" }).joined(separator: ", ")]
                .compactMap { $0 }.joined(separator: "; ")
        }
        let hash = options.mode == .checksum ? try await chooseRowHash(table, other, columns: columns) : nil
        if let hash, let key = table.integerKey, key == other.integerKey,
           let keyed = try await compareByKey(table, other, key: key, hash: hash, row: row) {
            return keyed
        }
        async let sourceMeasure = measure(table, on: source, hash: hash)
        async let targetMeasure = measure(other, on: target, hash: hash)
        let (mine, theirs) = (try await sourceMeasure, try await targetMeasure)
        row.sourceRows = mine.count
        row.targetRows = theirs.count
        guard mine != theirs || row.detail != nil else { return row }
        row.match = "✗"
        if options.mode == .checksum, mine != theirs, row.detail == nil, mine.count == theirs.count {
            row.detail = "same row count, different content (no single-column integer key to narrow it down)"
        }
        return row
    }

    /// Checksum mode for a table with an integer key. The first pass is one scan per side (both
    /// at once) of three sums: the row count, Σh and Σh·k over the rows' hashes h and keys k
    /// (relative to an offset that keeps each product within int8). Equal sums: the table
    /// matches. Where exactly one row differs (changed, or on one side only), the differences
    /// of the sums name it: k = ΔΣh·k / ΔΣh, confirmed by reading that row's hash on both
    /// sides, so one changed row costs two index lookups more than an identical table. Anything
    /// else is narrowed down by bisection over key ranges.
    /// nil when the key range is too wide to split in buckets (then the table is hashed whole).
    private func compareByKey(_ table: Table, _ other: Table, key: String, hash: String, row: Row) async throws -> Row? {
        var row = row
        let column = SQL.identifier(key)
        let bounds = { (table: Table) in "SELECT pg_catalog.min(\(column))::pg_catalog.int8, pg_catalog.max(\(column))::pg_catalog.int8 FROM \(self.relation(table)) AS t" }
        let (sourceSQL, targetSQL) = (bounds(table), bounds(other))
        async let sourceBounds = source.exec(sourceSQL)
        async let targetBounds = target.exec(targetSQL)
        let (mine, theirs) = (try await sourceBounds, try await targetBounds)
        let lows = [mine.string(0, 0), theirs.string(0, 0)].compactMap { $0.flatMap { Int64($0) } }
        let highs = [mine.string(0, 1), theirs.string(0, 1)].compactMap { $0.flatMap { Int64($0) } }
        guard let low = lows.min(), let high = highs.max() else {
            row.sourceRows = 0
            row.targetRows = 0
            return row
        }
        let (width, overflow) = high.subtractingReportingOverflow(low)
        guard !overflow, width < 1 << 62 else { return nil }
        if let offset = KeyMoments.offset(low: low, high: high) {
            let moments = { (table: Table) in KeyMoments.sql(relation: self.relation(table), column: column, hash: hash, offset: offset) }
            let (leftSQL, rightSQL) = (moments(table), moments(other))
            async let left = source.exec(leftSQL)
            async let right = target.exec(rightSQL)
            let (a, b) = (try KeyMoments(try await left), try KeyMoments(try await right))
            row.sourceRows = a.count
            row.targetRows = b.count
            if a == b {
                if row.detail != nil { row.match = "✗" }
                return row
            }
            row.match = "✗"
            if let candidate = a.singleDifferingKey(comparedWith: b, offset: offset, range: low...high),
               try await rowDiffers(table, other, column: column, hash: hash, key: candidate, explaining: a, b, offset: offset) {
                row.detail = [row.detail, "1 row differs at \(key) \(candidate)"].compactMap { $0 }.joined(separator: "; ")
                return row
            }
        }
        // Rows in key order (the planner's statistics say so) are read by key ranges.
        let correlation = try await source.query("""
            SELECT pg_catalog.abs(s.correlation) FROM pg_catalog.pg_stats s
            WHERE s.schemaname OPERATOR(pg_catalog.=) $1 AND s.tablename OPERATOR(pg_catalog.=) $2 AND s.attname OPERATOR(pg_catalog.=) $3
            """, [table.schema, table.name, key]).string(0, 0).flatMap(Double.init) ?? 0
        let ordered = correlation >= 0.9
        let scan = try await bucketScan(table, other, column: column, hash: hash, range: low...high,
                                        fanOut: ordered ? Self.fanOut : Self.firstFanOut, ordered: ordered)
        row.sourceRows = scan.sourceRows
        row.targetRows = scan.targetRows
        guard !scan.differing.isEmpty || row.detail != nil else { return row }
        row.match = "✗"
        if !scan.differing.isEmpty {
            let keys = try await differingKeys(table, other, column: column, hash: hash, ranges: scan.differing, ordered: ordered)
            // The search stops once more keys than `max_keys` are found: then their number is a
            // lower bound (round 37: "21 rows differ" where 142 did).
            let shown = keys.prefix(options.maximumKeys).map(String.init).joined(separator: ", ")
            let found: String
            if keys.isEmpty || options.maximumKeys == 0 {
                found = "rows differ"
            } else if keys.count > options.maximumKeys {
                found = "more than \(options.maximumKeys) \(options.maximumKeys == 1 ? "row differs" : "rows differ")"
                    + (shown.isEmpty ? "" : ", among them at \(key) \(shown)")
            } else {
                found = "\(keys.count) \(keys.count == 1 ? "row differs" : "rows differ") at \(key) \(shown)"
            }
            row.detail = [row.detail, found].compactMap { $0 }.joined(separator: "; ")
        }
        return row
    }

    /// Whether the row with key `key` alone accounts for every difference between the sums:
    /// its hash on each side (absent: no row) must make up the differences exactly.
    private func rowDiffers(_ table: Table, _ other: Table, column: String, hash: String, key: Int64,
                            explaining a: KeyMoments, _ b: KeyMoments, offset: Int64) async throws -> Bool {
        let lookup = { (table: Table) in "SELECT COALESCE(\(hash)::pg_catalog.int8, 0) FROM \(self.relation(table)) AS t WHERE \(column) OPERATOR(pg_catalog.=) \(key)::pg_catalog.int8" }
        let (leftSQL, rightSQL) = (lookup(table), lookup(other))
        async let left = source.exec(leftSQL)
        async let right = target.exec(rightSQL)
        let (x, y) = (try await left, try await right)
        func row(_ result: PQResult) -> Int128? { result.rows.isEmpty ? nil : Int128(result.string(0, 0) ?? "0") ?? 0 }
        return KeyMoments.explains(sourceHash: row(x), targetHash: row(y), key: key, offset: offset, a, b)
    }

    private func describeColumns(_ mine: [String], _ theirs: [String]) -> String {
        let onlySource = mine.filter { !theirs.contains($0) }
        let onlyTarget = theirs.filter { !mine.contains($0) }
        return [onlySource.isEmpty ? nil : "only on source: \(onlySource.joined(separator: ", "))",
                onlyTarget.isEmpty ? nil : "only on target: \(onlyTarget.joined(separator: ", "))"].compactMap { $0 }.joined(separator: "; ")
    }

    // MARK: - Bisection

    /// Buckets of the first pass, buckets per range at each later step, and the key width below
    /// which a range's keys are compared one by one.
    static let firstFanOut: Int64 = 256
    static let fanOut: Int64 = 16
    static let leafRows: Int64 = 256

    /// One pass over `range` in `fanOut` buckets of equal key width on both servers: the row
    /// counts of each side and the sub-ranges whose count or hash differ. Where the table's rows
    /// lie in key order (`ordered`: the key's correlation), each bucket is a range scan of the
    /// key's index (about 1.2 times a plain scan); otherwise one scan groups rows by bucket.
    private func bucketScan(_ table: Table, _ other: Table, column: String, hash: String, range: ClosedRange<Int64>, fanOut: Int64,
                            ordered: Bool) async throws -> (sourceRows: Int64, targetRows: Int64, differing: [ClosedRange<Int64>]) {
        let width = range.upperBound - range.lowerBound + 1
        let step = (width + fanOut - 1) / fanOut
        let sql: (Table) -> String
        if ordered {
            // (OPERATOR(...) forms all share one precedence, left to right: the parentheses matter.)
            // The bucket number is qualified: the table may have a column of that name.
            let low = "(\(range.lowerBound)::pg_catalog.int8 OPERATOR(pg_catalog.+) (pgclone_buckets.b OPERATOR(pg_catalog.*) \(step)))"
            sql = { table in
                """
                SELECT pgclone_buckets.b, s.n, s.h FROM pg_catalog.generate_series(0::pg_catalog.int8, \(fanOut - 1)) AS pgclone_buckets(b),
                LATERAL (SELECT pg_catalog.count(*) AS n, pg_catalog.sum(\(hash)) AS h FROM \(self.relation(table)) AS t
                         WHERE \(column) BETWEEN \(low) AND LEAST(\(range.upperBound)::pg_catalog.int8, \(low) OPERATOR(pg_catalog.+) \(step - 1))) s
                WHERE s.n OPERATOR(pg_catalog.>) 0
                """
            }
        } else {
            let bucket = "((\(column)::pg_catalog.int8 OPERATOR(pg_catalog.-) \(range.lowerBound)) OPERATOR(pg_catalog./) \(step))"
            let filter = "WHERE \(column) BETWEEN \(range.lowerBound) AND \(range.upperBound)"
            sql = { table in "SELECT \(bucket), pg_catalog.count(*), pg_catalog.sum(\(hash)) FROM \(self.relation(table)) AS t \(filter) GROUP BY 1" }
        }
        let (leftSQL, rightSQL) = (sql(table), sql(other))
        // Grouping by bucket wants a hash aggregate over a few groups; the planner, who cannot
        // tell the buckets are few, would sort the whole table. Only for this query: for the
        // whole session, enable_sort off turns the catalog queries' plans bad (200 ms for the
        // table list of a small database).
        let grouping = ordered ? "" : "SET enable_sort = off; "
        async let left = source.exec(grouping + leftSQL)
        async let right = target.exec(grouping + rightSQL)
        let (a, b) = (try await left, try await right)
        if !ordered {
            async let resetLeft = source.exec("RESET enable_sort")
            async let resetRight = target.exec("RESET enable_sort")
            _ = try await (resetLeft, resetRight)
        }
        func buckets(_ result: PQResult) -> (rows: Int64, buckets: [Int64: String]) {
            var out: [Int64: String] = [:]
            var rows: Int64 = 0
            for row in result.rows.indices {
                rows += Int64(result.string(row, 1) ?? "") ?? 0
                out[Int64(result.string(row, 0) ?? "") ?? 0] = (result.string(row, 1) ?? "") + "/" + (result.string(row, 2) ?? "")
            }
            return (rows, out)
        }
        let (x, y) = (buckets(a), buckets(b))
        let differing = Set(x.buckets.keys).union(y.buckets.keys).sorted().filter { x.buckets[$0] != y.buckets[$0] }.map { index in
            let start = range.lowerBound + index * step
            return start...min(range.upperBound, start + step - 1)
        }
        return (x.rows, y.rows, differing)
    }

    /// The keys whose rows differ (or exist on one side only), by bisection of `ranges`: each
    /// step hashes `fanOut` buckets of a range on both servers and descends into those that
    /// differ; a small range compares its keys' hashes.
    private func differingKeys(_ table: Table, _ other: Table, column: String, hash: String, ranges start: [ClosedRange<Int64>], ordered: Bool) async throws -> [Int64] {
        var found: [Int64] = []
        var ranges = Array(start.reversed())
        while let range = ranges.popLast(), found.count <= options.maximumKeys {
            let width = range.upperBound - range.lowerBound + 1
            guard width <= Self.leafRows else {
                ranges += try await bucketScan(table, other, column: column, hash: hash, range: range, fanOut: Self.fanOut, ordered: ordered).differing.reversed()
                continue
            }
            let filter = "WHERE \(column) BETWEEN \(range.lowerBound) AND \(range.upperBound)"
            let sql = { (table: Table) in "SELECT \(column)::pg_catalog.int8, \(hash) FROM \(self.relation(table)) AS t \(filter)" }
            let (leftSQL, rightSQL) = (sql(table), sql(other))
            async let left = source.exec(leftSQL)
            async let right = target.exec(rightSQL)
            let (a, b) = (try await left, try await right)
            var hashes: [Int64: String?] = [:]
            for row in a.rows.indices { hashes[Int64(a.string(row, 0) ?? "") ?? 0] = a.string(row, 1) }
            var seen: Set<Int64> = []
            for row in b.rows.indices {
                let keyValue = Int64(b.string(row, 0) ?? "") ?? 0
                seen.insert(keyValue)
                if hashes[keyValue] == nil || hashes[keyValue]! != b.string(row, 1) { found.append(keyValue) }
            }
            found += hashes.keys.filter { !seen.contains($0) }
        }
        return found.sorted()
    }
}
