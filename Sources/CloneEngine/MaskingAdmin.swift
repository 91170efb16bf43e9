import Foundation
import JSON
import Masking
import PQ

/// The masking toolset of the SQL API: discovery, static masking, masked views, reports.
public struct MaskingAdmin: Sendable {
    /// Whose credentials source connections may use.
    public let sourceCredentials: SourceCredentials
    /// Where the source connections' libpq calls run.
    public let pool: PQThreadPool

    public init(sourceCredentials: SourceCredentials = .any, pool: PQThreadPool = .shared) {
        self.sourceCredentials = sourceCredentials
        self.pool = pool
    }

    public struct ColumnInfo: Sendable {
        public var table: String
        public var column: String
        public var type: String
        public var typeCategory: String
    }

    public static func columns(_ connection: PQConnection, schema: String) async throws -> [ColumnInfo] {
        let rows = try await connection.query("""
            SELECT c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), t.typcategory
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
            WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
            ORDER BY c.relname, a.attnum
            """, [schema])
        return rows.rows.indices.map {
            ColumnInfo(table: rows.text($0, 0), column: rows.text($0, 1), type: rows.text($0, 2), typeCategory: rows.string($0, 3) ?? "")
        }
    }

    /// Name rules first; text columns the name says nothing about are judged by a sample of values.
    public static func classify(_ connection: PQConnection, schema: String, _ column: ColumnInfo) async throws -> SensitivityRules.Finding? {
        switch SensitivityRules.byName(column.column, typeCategory: column.typeCategory) {
        case .some(let finding):
            return finding
        case .none:
            guard column.typeCategory == "S" else { return nil }
            let sample = try await connection.exec(
                "SELECT \(SQL.identifier(column.column))::pg_catalog.text FROM \(SQL.qualified(schema, column.table)) WHERE \(SQL.identifier(column.column)) IS NOT NULL LIMIT 100")
            return SensitivityRules.byValues(sample.strings.compactMap { $0 })
        }
    }

    /// `{"table": {"column": strategy, ...}, ...}`, each table's object usable as a `mask` option.
    public func discoverSensitive(source: String, schema: String) async throws(CloneError) -> String {
        let session = try await SourceSession.open(source, credentials: sourceCredentials, pool: pool)
        do {
            let exists = try await session.primary.query("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1", [schema])
            guard exists.rows.count == 1 else { throw CloneError("3F000", "schema \"\(schema)\" does not exist on source") }
            var result: [String: JSONNode] = [:]
            for column in try await Self.columns(session.primary, schema: schema) {
                guard let finding = try await Self.classify(session.primary, schema: schema, column) else { continue }
                var table = result[column.table]?.objectFields ?? [:]
                table[column.column] = finding.strategy.json
                result[column.table] = .object(table)
            }
            return JSONNode.object(result).text
        } catch {
            throw CloneError.from(error, context: "discovering sensitive columns")
        }
    }

    /// Masks existing rows in one transaction, as the caller.
    public func maskInPlace(target: CloneTarget, schema: String, table: String, mask: String) async throws(CloneError) -> String {
        let strategies = try Self.parseMask(mask)
        let connection = try await target.connect()
        do {
            guard let definition = try await TableDefinition.load(connection, schema: schema, table: table) else {
                throw CloneError("42P01", "relation \"\(schema).\(table)\" does not exist")
            }
            var assignments: [String] = []
            for (column, strategy) in strategies {
                guard let info = definition.columns.first(where: { $0.name == column }) else {
                    throw CloneError("42703", "column \"\(column)\" of relation \"\(schema).\(table)\" does not exist")
                }
                try CopyPlan.checkCompatible(strategy, info, table: "\(schema).\(table)")
                assignments.append("\(SQL.identifier(column)) = \(strategy.expression(for: SQL.identifier(column), type: info.type))")
            }
            // The table and what inherits from it (partitions, children): the UPDATE reaches them all.
            let tree = try await connection.query("""
                WITH RECURSIVE tree(oid) AS (
                    SELECT $1::pg_catalog.regclass::pg_catalog.oid
                    UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN tree ON i.inhparent OPERATOR(pg_catalog.=) tree.oid)
                SELECT oid::pg_catalog.text, oid::pg_catalog.regclass::pg_catalog.text FROM tree
                """, [definition.qualifiedName])
            let relations = tree.rows.indices.map { (oid: tree.text($0, 0), name: tree.text($0, 1)) }
            // Foreign keys with ON UPDATE CASCADE (SET NULL, SET DEFAULT) carry the UPDATE into
            // the tables that reference the masked columns, and on from there: their triggers
            // would see the real values too, their materialized views and statistics keep them
            // (round 33).
            let cascade = try await connection.query("""
                WITH RECURSIVE changed(relid, attnum) AS (
                    SELECT a.attrelid, a.attnum FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[]) AND a.attname OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.name[])
                    UNION
                    SELECT c.conrelid, c.conkey[k.i]
                    FROM changed ch JOIN pg_catalog.pg_constraint c ON c.contype OPERATOR(pg_catalog.=) 'f' AND c.confrelid OPERATOR(pg_catalog.=) ch.relid
                      AND c.confupdtype OPERATOR(pg_catalog.=) ANY ('{c,n,d}')
                    CROSS JOIN LATERAL pg_catalog.generate_subscripts(c.confkey, 1) k(i)
                    WHERE c.confkey[k.i] OPERATOR(pg_catalog.=) ch.attnum
                )
                SELECT DISTINCT relid::pg_catalog.text, relid::pg_catalog.regclass::pg_catalog.text FROM changed
                WHERE relid OPERATOR(pg_catalog.<>) ALL ($1::pg_catalog.oid[]) ORDER BY 2
                """, [SQL.oidArray(relations.map(\.oid)), SQL.textArray(strategies.map(\.0))])
            let cascaded = cascade.rows.indices.map { (oid: cascade.text($0, 0), name: cascade.text($0, 1)) }
            try await Self.refuseWhatWouldKeepRealValues(connection, definition, tree: relations.map(\.oid), cascaded: cascaded.map(\.oid), role: target.role)
            let materialized = try await Self.materializedViews(over: (relations + cascaded).map(\.oid), connection)
            try await connection.exec("BEGIN")
            let rows: Int
            do {
                let updated = try await connection.exec("UPDATE \(definition.qualifiedName) SET \(assignments.joined(separator: ", "))")
                // Materialized views over the table hold copies of its rows (attack round 22):
                // refreshed from the masked rows in the same transaction, or nothing changes.
                for view in materialized {
                    do {
                        try await connection.exec("REFRESH MATERIALIZED VIEW \(view)")
                    } catch let error as PQError {
                        throw CloneError(error.sqlState ?? "55000", "cannot mask \(definition.displayName) in place: materialized view \(view) holds its rows and could not be refreshed from the masked ones: \(error.message)",
                                         hint: "Run it as the owner of the materialized views over the table (or a superuser), or drop the views first.")
                    }
                }
                try await connection.exec("COMMIT")
                rows = updated.affectedRows ?? 0
            } catch {
                _ = try? await connection.exec("ROLLBACK")
                throw error
            }
            var result = "OK: masked \(rows) \(rows == 1 ? "row" : "rows") in \(schema).\(table) (\(strategies.count) \(strategies.count == 1 ? "column" : "columns"))"
            if !cascaded.isEmpty {
                result += "; foreign keys ON UPDATE carried the masked values into \(cascaded.map(\.name).joined(separator: ", "))"
            }
            if !materialized.isEmpty {
                result += "; refreshed materialized \(materialized.count == 1 ? "view" : "views") \(materialized.joined(separator: ", "))"
            }
            // The planner's statistics still hold the values just masked (pg_stats shows them to
            // whoever may read the column; attack round 22): gathered again, by the service login,
            // since ANALYZE needs the owner and runs as the owner whoever asks.
            do {
                let service = try await target.serviceConnection()
                for relation in (relations + cascaded).map(\.name) + materialized { try await service.execute("ANALYZE \(relation)") }
            } catch {
                result += "; WARNING: statistics not gathered again (\((error as? PQError)?.message ?? "\(error)")): run ANALYZE on it, until then pg_stats still shows the old values"
            }
            return result
        } catch {
            throw CloneError.from(error, context: "masking \(schema).\(table)")
        }
    }

    /// What would leave real values behind, refused before anything changes (attack round 22):
    /// rows that row-level security hides from the caller (the UPDATE would skip them), and
    /// triggers (on the table or what inherits from it) and rules that an UPDATE sets off (an
    /// audit trigger would store the old rows, one that keeps a column would keep them all).
    /// `cascaded`: the tables foreign keys ON UPDATE CASCADE (SET NULL, SET DEFAULT) carry the
    /// UPDATE into; their triggers and rules would see the real values too.
    static func refuseWhatWouldKeepRealValues(_ connection: PQConnection, _ definition: TableDefinition, tree: [String], cascaded: [String] = [], role: String) async throws {
        let hidden = try await connection.query("SELECT pg_catalog.row_security_active($1::pg_catalog.regclass)", [definition.qualifiedName])
        if hidden.string(0, 0) == "t" {
            throw CloneError("42501", "row-level security hides rows of \(definition.displayName) from role \"\(role)\": masking in place would leave them as they are",
                             hint: "Run it as a superuser, a role with BYPASSRLS, or the table's owner when the table does not FORCE ROW LEVEL SECURITY.")
        }
        let firing = try await connection.query("""
            SELECT 'trigger ' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(t.tgname) OPERATOR(pg_catalog.||) ' on '
                   OPERATOR(pg_catalog.||) t.tgrelid::pg_catalog.regclass::pg_catalog.text
            FROM pg_catalog.pg_trigger t
            WHERE (t.tgrelid OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.oid[]) OR t.tgrelid OPERATOR(pg_catalog.=) ANY ($3::pg_catalog.oid[]))
              AND NOT t.tgisinternal AND t.tgenabled OPERATOR(pg_catalog.<>) 'D'
              AND (t.tgtype::pg_catalog.int4 OPERATOR(pg_catalog.&) 16) OPERATOR(pg_catalog.<>) 0
            UNION ALL
            SELECT 'rule ' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(r.rulename) OPERATOR(pg_catalog.||) ' on '
                   OPERATOR(pg_catalog.||) r.ev_class::pg_catalog.regclass::pg_catalog.text
            FROM pg_catalog.pg_rewrite r
            WHERE (r.ev_class OPERATOR(pg_catalog.=) $1::pg_catalog.regclass OR r.ev_class OPERATOR(pg_catalog.=) ANY ($3::pg_catalog.oid[]))
              AND r.ev_type OPERATOR(pg_catalog.=) '2' AND r.ev_enabled OPERATOR(pg_catalog.<>) 'D'
            ORDER BY 1
            """, [definition.qualifiedName, SQL.oidArray(tree), SQL.oidArray(cascaded)]).strings.compactMap { $0 }
        if !firing.isEmpty {
            throw CloneError("55000", "cannot mask \(definition.displayName) in place: \(firing.joined(separator: ", ")) would run for every masked row and see its real values",
                             hint: "Disable them for the masking (ALTER TABLE ... DISABLE TRIGGER / DISABLE RULE) and enable them again afterwards.")
        }
    }

    /// The populated materialized views built on these relations, directly or through views
    /// and other materialized views, innermost first (each is refreshed after those it reads).
    static func materializedViews(over relations: [String], _ connection: PQConnection) async throws -> [String] {
        try await connection.query("""
            WITH RECURSIVE reading(oid, depth) AS (
                SELECT r.ev_class, 1
                FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_rewrite r ON r.oid OPERATOR(pg_catalog.=) d.objid
                WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                  AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                  AND d.refobjid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[]) AND r.ev_class OPERATOR(pg_catalog.<>) d.refobjid
                UNION
                SELECT r.ev_class, reading.depth OPERATOR(pg_catalog.+) 1
                FROM reading
                JOIN pg_catalog.pg_depend d ON d.refobjid OPERATOR(pg_catalog.=) reading.oid
                  AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                  AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                JOIN pg_catalog.pg_rewrite r ON r.oid OPERATOR(pg_catalog.=) d.objid
                WHERE r.ev_class OPERATOR(pg_catalog.<>) reading.oid AND reading.depth OPERATOR(pg_catalog.<) 100
            )
            SELECT c.oid::pg_catalog.regclass::pg_catalog.text
            FROM reading JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) reading.oid
            WHERE c.relkind OPERATOR(pg_catalog.=) 'm' AND c.relispopulated
            GROUP BY c.oid
            ORDER BY pg_catalog.max(reading.depth), 1
            """, [SQL.oidArray(relations)]).strings.compactMap { $0 }
    }

    public static func parseMask(_ text: String) throws(CloneError) -> [(String, MaskStrategy)] {
        let json: JSONNode
        do {
            json = try JSONReader.parse(text)
        } catch {
            throw CloneError("22P02", "invalid JSON in mask: \(error.message)")
        }
        do {
            let parsed = try parseMaskObject(json)
            guard !parsed.isEmpty else { throw CloneError.invalidOption("the mask names no columns") }
            return parsed.map { ($0.column, $0.strategy) }
        } catch let error as MaskError {
            throw CloneError.invalidOption(error.message, hint: error.hint)
        } catch {
            throw CloneError.from(error, context: "mask")
        }
    }
}

extension JSONNode {
    var objectFields: [String: JSONNode]? {
        if case .object(let fields) = self { return fields }
        return nil
    }
}
