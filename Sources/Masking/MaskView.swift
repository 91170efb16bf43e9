import Foundation
import JSON
import PQ

/// The relation a masked role reads instead of a policy table: a view owned by pgclone's
/// service role, in schema `pgclone_masked` of the table's database, with the table's
/// column names, order and types and the strategies' expressions in place of the
/// sensitive columns.
///
/// Masked roles lose SELECT on the sensitive columns of the table itself (the server
/// backstop) and read the view, whose owner may read the table. The view has no row
/// filter, so it is not a security_barrier view: every column a query can name is
/// already masked, and a barrier would only stop quals (`lower(name) = ...`) from
/// reaching the table's indexes. Row-level security on the table applies to the view's
/// owner, which is why a table with row-level security is not given one (see
/// `PrivilegeReconciler`).
public enum MaskView {
    /// pgclone's schema in each database that holds a policy table.
    public static let schema = "pgclone_masked"
    /// The pads of keyed strategies, readable only by the service role.
    public static let keyTable = SQL.qualified(schema, "_key")
    /// What pgclone changed in the table's privileges, to give it back exactly.
    public static let changesTable = SQL.qualified(schema, "_changes")

    public struct Column: Sendable, Hashable {
        public var name: String
        /// `format_type` of the column, with ` COLLATE ...` when the column's collation is not its type's.
        public var type: String
        public var strategy: MaskStrategy?
        /// The type under the column's domains (`format_type`), when it has one.
        public var baseType: String?

        public init(name: String, type: String, strategy: MaskStrategy?, baseType: String? = nil) {
            self.name = name
            self.type = type
            self.strategy = strategy
            self.baseType = baseType
        }
    }

    /// The SQL expression for the type under the domains of type `oid` (an expression), as
    /// format_type prints it: what a strategy computes on (round 45 N1: `truncate_date` on a
    /// domain over timestamptz truncated in the reader's time zone).
    public static func baseTypeSQL(_ oid: String) -> String {
        """
        (WITH RECURSIVE b(oid, base, typtype) AS (
           SELECT bt.oid, bt.typbasetype, bt.typtype FROM pg_catalog.pg_type bt WHERE bt.oid OPERATOR(pg_catalog.=) \(oid)
           UNION ALL SELECT bt.oid, bt.typbasetype, bt.typtype FROM b JOIN pg_catalog.pg_type bt ON bt.oid OPERATOR(pg_catalog.=) b.base WHERE b.typtype OPERATOR(pg_catalog.=) 'd')
         SELECT pg_catalog.format_type(b.oid, NULL) FROM b WHERE b.typtype OPERATOR(pg_catalog.<>) 'd' LIMIT 1)
        """
    }

    /// The view's name: `schema.table` (`schema.table (only)` for the view of the table's own
    /// rows, when it has inheritance children or partitions), or `oid N` when that is longer
    /// than an identifier may be. Errors then name the real table: `permission denied for
    /// view sec.emp`.
    public static func name(schema: String, table: String, oid: UInt32, only: Bool, system: Bool = false) -> String {
        let suffix = suffix(only: only, system: system)
        let readable = "\(schema).\(table)" + suffix
        if readable.utf8.count <= 63 { return readable }
        return "oid \(oid)" + suffix
    }

    /// ` (only)`, ` (system)`, ` (only, system)` or nothing.
    static func suffix(only: Bool, system: Bool) -> String {
        switch (only, system) {
        case (false, false): return ""
        case (true, false): return " (only)"
        case (false, true): return " (system)"
        case (true, true): return " (only, system)"
        }
    }

    /// The system columns a masked role may read of a policy table (they hold no column's
    /// values): the views ending in ` (system)` carry them after the table's columns, for the
    /// statements that name one (`SELECT xmin, id FROM t`, as optimistic locking does).
    public static let systemColumns = ["tableoid", "ctid", "xmin", "cmin", "xmax", "cmax"]

    /// The same rule as `name(schema:table:oid:only:)` as an SQL expression over a namespace name,
    /// a relation name and an OID (used by queries that find the views of many tables at once).
    public static func nameSQL(schema: String, table: String, oid: String, only: Bool) -> String {
        let suffix = only ? " OPERATOR(pg_catalog.||) ' (only)'" : ""
        let readable = "(\(schema)::pg_catalog.text OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) \(table)::pg_catalog.text\(suffix))"
        return "CASE WHEN pg_catalog.octet_length\(readable) OPERATOR(pg_catalog.<=) 63 THEN \(readable)"
            + " ELSE ('oid ' OPERATOR(pg_catalog.||) \(oid)::pg_catalog.text\(suffix)) END"
    }

    /// `pgclone_masked."<name>"`.
    public static func qualifiedName(schema: String, table: String, oid: UInt32, only: Bool, system: Bool = false) -> String {
        SQL.qualified(Self.schema, name(schema: schema, table: table, oid: oid, only: only, system: system))
    }

    /// The masked select list over `columns` of a relation, each entry named as the column.
    /// Keyed strategies read their pads from the key table, never from literals.
    public static func selectList(_ columns: [Column], keys: MaskingKey.Source) -> String {
        columns.map { column in
            let name = SQL.identifier(column.name)
            guard let strategy = column.strategy else { return name }
            return strategy.expression(for: name, type: column.type, baseType: column.baseType, keys: keys) + " AS " + name
        }.joined(separator: ", ")
    }

    /// The view's query. Its `tableoid` is the relation's own: which partition or child holds
    /// a row can be the value of a sensitive column (round 44 F2: a table partitioned LIST on a
    /// diagnosis).
    public static func definition(schema: String, table: String, oid: UInt32, columns: [Column], only: Bool, system: Bool = false) -> String {
        let extra = system ? ", " + systemColumns.map { $0 == "tableoid" ? "\(oid)::pg_catalog.oid AS tableoid" : $0 }.joined(separator: ", ") : ""
        return "SELECT \(selectList(columns, keys: .table(keyTable)))\(extra) FROM \(only ? "ONLY " : "")\(SQL.qualified(schema, table))"
    }

    /// What a view masks, as a short fingerprint kept in its comment: a session uses the view
    /// only when it masks exactly what the session's policies say (a view left from an older
    /// policy could show a newly sensitive column). Computed from column names and strategies
    /// only, so that a session reading the columns under its own search_path (which changes how
    /// `format_type` prints a type) gets the same answer as the service role.
    public static func fingerprint(_ columns: [Column]) -> String {
        // v2: the system views' tableoid became the relation's own (round 44 F2); v3: strategies
        // compute on a domain's base type (round 45 N1); v4: noise on money keyed on its stored
        // integer, not its lc_monetary text (round 46).
        let text = "v4|" + columns.map { column in
            column.name + "=" + (column.strategy?.json.text ?? "")
        }.joined(separator: "|")
        // FNV-1a, 64 bits: stable across processes and platforms (Hasher is seeded per process).
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// The view's comment: what it masks and the fingerprint of its columns.
    public static func comment(schema: String, table: String, columns: [Column]) -> String {
        "pgclone: masked values of \(schema).\(table) (mask \(fingerprint(columns)))"
    }

    /// The fingerprint in a view's comment, if it has one.
    public static func fingerprint(inComment comment: String) -> String? {
        guard let range = comment.range(of: "(mask "), comment.hasSuffix(")") else { return nil }
        return String(comment[range.upperBound...].dropLast())
    }

    /// The names of the generated columns of table `table` (an oid expression) computed from a
    /// column named in `sensitive` (a text[] expression): they hold that column's value
    /// (`ssn_upper GENERATED ALWAYS AS (upper(ssn))`), so they are masked too, as NULL, unless a
    /// policy names them (round 44 F8).
    public static func derivedColumnsSQL(table: String, sensitive: String) -> String {
        """
        ARRAY(SELECT DISTINCT g.attname::pg_catalog.text FROM pg_catalog.pg_attribute g
              JOIN pg_catalog.pg_attrdef ad ON ad.adrelid OPERATOR(pg_catalog.=) g.attrelid AND ad.adnum OPERATOR(pg_catalog.=) g.attnum
              JOIN pg_catalog.pg_depend d ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.objid OPERATOR(pg_catalog.=) ad.oid
                AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid OPERATOR(pg_catalog.=) g.attrelid
              JOIN pg_catalog.pg_attribute s ON s.attrelid OPERATOR(pg_catalog.=) g.attrelid AND s.attnum OPERATOR(pg_catalog.=) d.refobjsubid
              WHERE g.attrelid OPERATOR(pg_catalog.=) \(table) AND g.attgenerated OPERATOR(pg_catalog.<>) '' AND NOT g.attisdropped
                AND s.attname::pg_catalog.text OPERATOR(pg_catalog.=) ANY (\(sensitive))
                AND g.attname::pg_catalog.text OPERATOR(pg_catalog.<>) ALL (\(sensitive)))
        """
    }

    /// Built-in functions that run SQL given as a string: what they read leaves no dependency.
    static let sqlFromStringFunctions = ["query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "cursor_to_xml", "cursor_to_xmlschema",
                                         "table_to_xml", "table_to_xmlschema", "table_to_xml_and_xmlschema", "schema_to_xml", "schema_to_xmlschema",
                                         "schema_to_xml_and_xmlschema", "database_to_xml", "database_to_xmlschema", "database_to_xml_and_xmlschema",
                                         "ts_stat", "ts_rewrite"].map { "'\($0)'" }.joined(separator: ", ")

    /// Two CTEs, `name_code(oid)` then the recursive `name(oid, i)`.
    ///
    /// `name`: the views and materialized views that read a sensitive column of a table in
    /// `tables` (a query of `(i, reloid, sens text[])`: a policy's index, a table and its
    /// sensitive column names), directly (a whole-row reference counts, however the server
    /// recorded the view's dependency) or through other such views; `i` says which policy.
    /// pgclone's own mask views are left out.
    ///
    /// `name_code`: views whose query runs code the server records no table dependency for (a
    /// function or operator of the database's own: plpgsql records none; pg_stats, whose
    /// histograms hold the values of every column the reader may read; with `scanQueryTrees`, the
    /// built-ins that run SQL from a string, found in the query tree since calls of built-ins
    /// leave no pg_depend entry), and views over those. A materialized view among them holds what
    /// its owner's query read at REFRESH, any table's values: it counts for every policy (rounds
    /// 42 N3, 43 F2). The scan reads every user view's query tree, so the proxy's per-statement
    /// read leaves it to the backstop's passes.
    public static func exposingViewsCTE(name: String, tables: String, scanQueryTrees: Bool = true) -> String {
        let builtins = scanQueryTrees ? """
                   OR r.ev_action::pg_catalog.text OPERATOR(pg_catalog.~) (SELECT ':funcid (' OPERATOR(pg_catalog.||) pg_catalog.string_agg(fp.oid::pg_catalog.text, '|') OPERATOR(pg_catalog.||) ') '
                        FROM pg_catalog.pg_proc fp WHERE fp.pronamespace OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace
                          AND fp.proname::pg_catalog.text OPERATOR(pg_catalog.=) ANY (ARRAY[\(sqlFromStringFunctions)]))
            """ : ""
        return """
        \(name)_code(oid) AS (
              SELECT r.ev_class FROM pg_catalog.pg_rewrite r
              WHERE r.ev_class OPERATOR(pg_catalog.>=) 16384
                AND (EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                             WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid OPERATOR(pg_catalog.=) r.oid
                               AND ((d.refclassid OPERATOR(pg_catalog.=) ANY (ARRAY['pg_catalog.pg_proc'::pg_catalog.regclass, 'pg_catalog.pg_operator'::pg_catalog.regclass])
                                     AND d.refobjid OPERATOR(pg_catalog.>=) 16384)
                                    OR (d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                                        AND d.refobjid OPERATOR(pg_catalog.=) ANY (ARRAY['pg_catalog.pg_stats'::pg_catalog.regclass, 'pg_catalog.pg_stats_ext'::pg_catalog.regclass,
                                                                                          'pg_catalog.pg_stats_ext_exprs'::pg_catalog.regclass]::pg_catalog.oid[]))))
            \(builtins))
              UNION
              SELECT r.ev_class FROM \(name)_code c
              JOIN pg_catalog.pg_depend d ON d.refobjid OPERATOR(pg_catalog.=) c.oid AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
              JOIN pg_catalog.pg_rewrite r ON r.oid OPERATOR(pg_catalog.=) d.objid
              WHERE r.ev_class OPERATOR(pg_catalog.<>) c.oid
            ),
        \(name)(oid, i) AS (
              SELECT DISTINCT r.ev_class, t.i FROM \(tables) t
              JOIN pg_catalog.pg_depend d ON d.refobjid OPERATOR(pg_catalog.=) t.reloid AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
              JOIN pg_catalog.pg_rewrite r ON r.oid OPERATOR(pg_catalog.=) d.objid
              JOIN pg_catalog.pg_class vc ON vc.oid OPERATOR(pg_catalog.=) r.ev_class
              JOIN pg_catalog.pg_namespace vn ON vn.oid OPERATOR(pg_catalog.=) vc.relnamespace
              WHERE r.ev_class OPERATOR(pg_catalog.<>) t.reloid AND vn.nspname OPERATOR(pg_catalog.<>) 'pgclone_masked'
                AND (d.refobjsubid OPERATOR(pg_catalog.=) 0 OR EXISTS (
                     SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid OPERATOR(pg_catalog.=) t.reloid AND a.attnum OPERATOR(pg_catalog.=) d.refobjsubid
                       AND a.attname::pg_catalog.text OPERATOR(pg_catalog.=) ANY (t.sens))
                     -- A whole-row reference (row_to_json(t), t AS r) next to a plain column of the
                     -- same table is recorded as that column only (round 41 H2): a view whose query
                     -- holds a whole-row Var reads every column.
                     OR pg_catalog.strpos(r.ev_action::pg_catalog.text, ':varattno 0 ') OPERATOR(pg_catalog.>) 0)
              UNION
              SELECT c.oid, t.i FROM \(tables) t, \(name)_code c JOIN pg_catalog.pg_class vc ON vc.oid OPERATOR(pg_catalog.=) c.oid
              WHERE vc.relkind OPERATOR(pg_catalog.=) 'm'
              UNION
              SELECT r.ev_class, e.i FROM \(name) e
              JOIN pg_catalog.pg_depend d ON d.refobjid OPERATOR(pg_catalog.=) e.oid AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass
              JOIN pg_catalog.pg_rewrite r ON r.oid OPERATOR(pg_catalog.=) d.objid
              WHERE r.ev_class OPERATOR(pg_catalog.<>) e.oid
            )
        """
    }

    /// The SQL expression (over `pg_attribute a`) that `Column.type` holds: the type, with
    /// the column's collation when it is not the type's, so that masked values sort and
    /// compare as the real ones.
    public static let columnTypeSQL = """
        pg_catalog.format_type(a.atttypid, a.atttypmod)
        OPERATOR(pg_catalog.||) COALESCE((SELECT ' COLLATE ' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(cn.nspname) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(co.collname)
                     FROM pg_catalog.pg_type ty, pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn ON cn.oid OPERATOR(pg_catalog.=) co.collnamespace
                     WHERE ty.oid OPERATOR(pg_catalog.=) a.atttypid AND co.oid OPERATOR(pg_catalog.=) a.attcollation AND a.attcollation OPERATOR(pg_catalog.<>) ty.typcollation), '')
        """
}
