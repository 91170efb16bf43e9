import Foundation
import Masking
import PQ

/// What one table clone did.
public struct TableCloneOutcome: Sendable, Hashable {
    public enum Action: Sendable, Hashable { case cloned, skipped }
    public var source: String
    public var target: String
    public var action: Action
    public var rows: Int?
    /// COPY data bytes moved.
    public var bytes = 0
    public var replacedExisting = false
    public var renamedExistingTo: String?
    /// Things deliberately left out (with why), reported in the result text.
    public var notes: [String] = []
    public var indexes = 0
    public var constraints = 0
    public var triggers = 0
    /// Foreign keys left for the caller to add after all tables exist (schema clones).
    /// Each foreign key with its comment, to add once every table exists.
    var deferredForeignKeys: [[String]] = []
    /// For a table kept as it was (conflict skip): the source's foreign keys it lacks, added
    /// after all tables where its rows allow (a skip run finishing a failed or resumed clone
    /// otherwise never added them; round 35).
    var keptTableForeignKeys: [KeptForeignKey] = []
    /// Rules of the table, created once every table of a schema clone exists (a rule's actions
    /// may write to any of them).
    var deferredRules: [[String]] = []
    /// Indexes that call a function made after the tables (which needs this table): made then.
    var indexesAfterFunctions: [[String]] = []
}

/// A foreign key of the source that a table kept as it was lacks.
struct KeptForeignKey: Sendable, Hashable {
    var name: String
    var statements: [String]
}

/// The validated plan for copying one table: columns, expressions, filter.
struct CopyPlan: Sendable {
    var columns: [TableDefinition.Column]
    /// Columns that receive data (generated columns are computed by the target).
    var copiedColumns: [TableDefinition.Column]
    var selectExpressions: [String]
    var filter: WhereFilter?
    var binary: Bool

    static func make(_ definition: TableDefinition, options: CloneOptions, source: PQConnection) async throws(CloneError) -> CopyPlan {
        var columns = definition.columns
        if let wanted = options.columns {
            var picked: [TableDefinition.Column] = []
            for name in wanted {
                guard let column = definition.columns.first(where: { $0.name == name }) else {
                    throw CloneError("42703", "column \"\(name)\" does not exist in source table \(definition.displayName)")
                }
                picked.append(column)
            }
            columns = picked.sorted { $0.number < $1.number }
            // A generated column computes from others: they must come along.
            for column in columns {
                for needed in column.generatedFrom where !columns.contains(where: { $0.name == needed }) {
                    throw CloneError("42703", "generated column \"\(column.name)\" of \(definition.displayName) is computed from column \"\(needed)\", which \"columns\" leaves out",
                                     hint: "Add \"\(needed)\" to \"columns\", or leave \"\(column.name)\" out too.")
                }
            }
        }
        for (column, strategy) in options.mask.sorted(by: { $0.key < $1.key }) {
            guard let definitionColumn = definition.columns.first(where: { $0.name == column }) else {
                throw CloneError("42703", "cannot mask column \"\(column)\": it does not exist in source table \(definition.displayName)")
            }
            if definitionColumn.generatedExpression != nil {
                // The target computes it again from the columns it is generated from: a mask on
                // it alone would be dropped with its data (attack round 22).
                throw CloneError("428C9", "cannot mask generated column \"\(column)\" of \(definition.displayName): the target computes it from \(definitionColumn.generatedFrom.map { "\"\($0)\"" }.joined(separator: ", "))",
                                 hint: "Mask the columns it is generated from.")
            }
            if let key = definition.partitionKeyColumns.first(where: { $0.column == column }) {
                // The partitions' bounds (FOR VALUES IN ('...')) are values of the key (attack round 22).
                let whose = key.partition.map { "the partition key of partition \($0)" } ?? "the partition key"
                throw CloneError("0A000", "cannot mask column \"\(column)\" of \(definition.displayName): it is in \(whose) (\(key.key)), and the partitions' bounds hold its real values",
                                 hint: "Clone the partitions as tables of their own, or leave the column unmasked.")
            }
            try checkCompatible(strategy, definitionColumn, table: definition.displayName)
        }
        let copied = columns.filter { $0.generatedExpression == nil }
        let expressions = copied.map { column -> String in
            let name = SQL.identifier(column.name)
            guard let strategy = options.mask[column.name] else { return name }
            return strategy.expression(for: name, type: column.type, baseType: column.baseType) + " AS " + name
        }
        var filter: WhereFilter?
        if let text = options.whereFilter {
            filter = try await WhereFilter.validate(text, source: source)
        }
        return CopyPlan(columns: columns, copiedColumns: copied, selectExpressions: expressions, filter: filter,
                        binary: copied.allSatisfy(\.copiesInBinary))
    }

    /// A strategy must be able to produce a value of the column's own type.
    static func checkCompatible(_ strategy: MaskStrategy, _ column: TableDefinition.Column, table: String) throws(CloneError) {
        let textual = column.typeCategory == "S"
        let numeric = column.typeCategory == "N"
        let fits: Bool
        switch strategy {
        case .email, .name, .phone, .partial, .hash, .cardLast4, .regexReplace, .fakeName, .fakeEmail: fits = textual
        case .randomInt, .pseudonym: fits = numeric || textual
        case .noise: fits = numeric
        case .null: fits = !column.notNull
        case .constant: fits = true
        case .truncateDate: fits = column.typeCategory == "D"
        }
        guard fits else {
            if case .null = strategy {
                throw CloneError("23502", "cannot mask column \"\(column.name)\" of \(table) with \"null\": the column is NOT NULL")
            }
            throw CloneError("42804", "mask strategy \"\(strategy.name)\" cannot produce a value of type \(column.type) for column \"\(column.name)\" of \(table)")
        }
    }

    /// The copied columns as COPY's column list; none for a table without columns (COPY then
    /// moves one empty line per row, as pg_dump; `()` is a syntax error).
    var columnList: String {
        copiedColumns.isEmpty ? "" : " (" + copiedColumns.map { SQL.identifier($0.name) }.joined(separator: ", ") + ")"
    }

    /// Rows of this table only: inheritance children are cloned as tables of their own
    /// (partitions are not: their rows come through the partitioned parent).
    func sourceCopySQL(_ definition: TableDefinition, masked: Bool, range: String? = nil) -> String {
        let format = binary ? " (FORMAT binary)" : ""
        if !masked, filter == nil, range == nil, !definition.isPartitioned {
            // Plain COPY of the table reads the heap directly, faster than going through a query.
            return "COPY \(definition.qualifiedName)\(columnList) TO STDOUT" + format
        }
        var select = "SELECT \(selectExpressions.joined(separator: ", ")) FROM \(Self.rowSource(definition))"
        let conditions = [filter.map { "(\($0.text)\n)" }, range.map { "(\($0))" }].compactMap { $0 }
        if !conditions.isEmpty { select += " WHERE " + conditions.joined(separator: " AND ") }
        return "COPY (\(select)) TO STDOUT" + format
    }

    /// Where a table's rows are read: this table only (inheritance children are cloned as tables
    /// of their own), a partitioned table's partitions through it, except foreign partitions:
    /// their rows belong to another server (pg_dump copies leaf by leaf and never reads them),
    /// so the table's local leaves are read one by one, under the table's name.
    static func rowSource(_ definition: TableDefinition) -> String {
        guard definition.isPartitioned else { return "ONLY " + definition.qualifiedName }
        guard !definition.foreignLeaves.isEmpty else { return definition.qualifiedName }
        let columns = definition.columns.map { SQL.identifier($0.name) }.joined(separator: ", ")
        let leaves = definition.localLeaves.isEmpty ? ["ONLY " + definition.qualifiedName] : definition.localLeaves.map { "ONLY " + $0 }
        return "(" + leaves.map { "SELECT \(columns) FROM \($0)" }.joined(separator: " UNION ALL ") + ") AS \(SQL.identifier(definition.name))"
    }

    /// FREEZE: the table was created in this same transaction, so rows can be written
    /// frozen; nothing has to revisit them for hint bits or freezing later (not allowed
    /// for partitioned tables).
    func targetCopySQL(_ qualifiedTarget: String, freeze: Bool) -> String {
        var options: [String] = []
        if binary { options.append("FORMAT binary") }
        if freeze { options.append("FREEZE") }
        return "COPY \(qualifiedTarget)\(columnList) FROM STDIN"
            + (options.isEmpty ? "" : " (\(options.joined(separator: ", ")))")
    }
}

/// How a large table's rows are copied in parts: `copy(plan, targetCopySQL)` runs every part
/// (each on its own pair of connections, in its own transaction) and returns the rows copied.
struct SplitCopy: Sendable {
    var parts: Int
    var copy: @Sendable (CopyPlan, String) async throws -> (rows: Int, bytes: Int)
}

/// Clones one table into the target inside one target transaction: a failure
/// at any step leaves the target exactly as it was.
struct TableCloner {
    let source: PQConnection
    let target: PQConnection

    func clone(
        _ definition: TableDefinition,
        into targetSchema: String,
        as targetName: String,
        options: CloneOptions,
        deferForeignKeys: Bool = false,
        clonedTogether: Set<String> = [],
        split: SplitCopy? = nil
    ) async throws(CloneError) -> TableCloneOutcome {
        let plan = try await CopyPlan.make(definition, options: options, source: source)
        let qualifiedTarget = SQL.qualified(targetSchema, targetName)
        var outcome = TableCloneOutcome(source: definition.displayName, target: "\(targetSchema).\(targetName)", action: .cloned)
        // Inheritance is kept when every parent is cloned by the same call (and so exists, under
        // its own name, before this table); otherwise the table gets the inherited columns and
        // CHECK constraints as its own.
        var inherits: [String]?
        if !definition.parents.isEmpty {
            if definition.parents.allSatisfy({ clonedTogether.contains("\($0.schema).\($0.name)") }) {
                inherits = definition.parents.map { SQL.qualified($0.schema, $0.name) }
            } else {
                outcome.notes.append("\(definition.displayName) inherits from \(definition.parents.map { "\($0.schema).\($0.name)" }.joined(separator: ", ")), which is not cloned with it: its inherited columns and CHECK constraints became its own")
            }
        }

        var exists: Bool
        do {
            let found = try await target.query("""
                SELECT pg_catalog.obj_description(c.oid, 'pg_class') IS NOT DISTINCT FROM $3
                FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = $1 AND c.relname = $2
                """, [targetSchema, targetName, Self.incompleteMarker])
            exists = found.rows.count > 0
            if exists && found.string(0, 0) == "t" {
                // A split copy that never finished (its process died): ours to remove, whatever the conflict mode.
                try await target.execute("DROP TABLE \(qualifiedTarget) CASCADE")
                outcome.notes.append("removed the incomplete copy of \(targetSchema).\(targetName) left by an interrupted clone")
                exists = false
            }
        } catch {
            throw CloneError.from(error, context: "target")
        }
        if let split, options.copyData, !exists, inherits == nil, !definition.isPartitioned {
            return try await cloneSplit(definition, plan: plan, schema: targetSchema, name: targetName, options: options,
                                        deferForeignKeys: deferForeignKeys, split: split, outcome: outcome)
        }
        if exists {
            switch options.conflict {
            case .error:
                throw CloneError("42P07", "relation \"\(targetSchema).\(targetName)\" already exists on target",
                                 hint: "Use the \"conflict\" option (skip, replace or rename), or drop the table first.")
            case .skip:
                outcome.action = .skipped
                if deferForeignKeys && options.constraints {
                    outcome.keptTableForeignKeys = try await missingForeignKeys(definition, schema: targetSchema, name: targetName)
                }
                if deferForeignKeys {
                    outcome.deferredRules = try await missingRules(definition, schema: targetSchema, name: targetName)
                }
                return outcome
            case .replace, .rename:
                break
            }
        }

        let createdSchema = try await ensureSchemaShared(targetSchema)
        do {
            try await target.execute("BEGIN")
            do {
                var kept = Dependents.Plan()
                if exists {
                    if options.conflict == .replace {
                        // What the drop would take along that this clone does not recreate: foreign
                        // keys and views are put back below; anything else needs "cascade".
                        kept = try await Dependents.plan(qualifiedTarget, replacing: clonedTogether.union(["\(targetSchema).\(targetName)"]), on: target)
                        if !kept.blocking.isEmpty {
                            guard options.cascade else { throw Dependents.refusal("table \(targetSchema).\(targetName)", kept.blocking) }
                            outcome.notes.append("dropped with the replaced table \(targetSchema).\(targetName) (cascade): "
                                                 + Dependents.describe(kept.blocking).joined(separator: ", "))
                        }
                        try await target.execute("DROP TABLE \(qualifiedTarget) CASCADE")
                        outcome.replacedExisting = true
                    } else {
                        let (renamed, readers) = try await renameExisting(schema: targetSchema, table: targetName)
                        outcome.renamedExistingTo = renamed
                        if !readers.isEmpty {
                            // Views keep reading the table they were made on (round 28: silently).
                            outcome.notes.append("views reading \(targetSchema).\(targetName) now read \(renamed): \(readers.joined(separator: ", ")) (in a schema clone, the schema's own views are made again on the new table)")
                        }
                    }
                }
                try await createTable(definition, plan: plan, schema: targetSchema, name: targetName, inherits: inherits, outcome: &outcome)
                if let partitionOf = definition.partitionOf {
                    outcome.notes.append("\(definition.displayName) is a partition of \(partitionOf.parent) (\(partitionOf.bound)) on the source: cloned as a table of its own, without that bound")
                }
                if options.copyData {
                    let copied = try await source.copyCounting(plan.sourceCopySQL(definition, masked: !options.mask.isEmpty), into: target,
                                                               plan.targetCopySQL(qualifiedTarget, freeze: !definition.isPartitioned))
                    outcome.rows = copied.rows
                    outcome.bytes = copied.bytes
                    if !definition.foreignLeaves.isEmpty {
                        outcome.notes.append("rows of \(definition.displayName)'s foreign partitions not copied (they live on another server; the foreign tables are not cloned): \(definition.foreignLeaves.joined(separator: ", "))")
                    }
                }
                try await completeTable(definition, plan: plan, schema: targetSchema, name: targetName, options: options,
                                        deferForeignKeys: deferForeignKeys, inherits: inherits != nil, outcome: &outcome)
                if !kept.restore.isEmpty {
                    do {
                        for statement in kept.restore { try await target.execute(statement) }
                    } catch let error as PQError {
                        throw CloneError(error.sqlState ?? "XX000", "cannot replace table \(targetSchema).\(targetName): what depends on it on the target cannot be put back: \(error.message)",
                                         detail: "Put back after the replace: \(kept.restored.joined(separator: ", ")).",
                                         hint: "Fix or drop the dependent objects first.")
                    }
                    outcome.notes.append("kept on the replaced table \(targetSchema).\(targetName): \(kept.restored.joined(separator: ", "))")
                }
                try await target.execute("COMMIT")
            } catch {
                _ = try? await target.execute("ROLLBACK")
                throw error
            }
            if options.copyData {
                // The table is committed: a failed ANALYZE does not undo the clone.
                do {
                    try await target.execute("ANALYZE \(qualifiedTarget)")
                } catch {
                    outcome.notes.append("WARNING: \(qualifiedTarget) was cloned and committed, but ANALYZE failed (\((error as? PQError)?.message ?? "\(error)")); run ANALYZE on it")
                }
            }
        } catch {
            await dropSchemaIfEmpty(targetSchema, created: createdSchema)
            throw CloneError.from(error, context: "cloning \(definition.displayName)")
        }
        return outcome
    }

    /// Creates the target schema when missing, committed at once: clones running side by side
    /// into one new schema must not wait on each other's uncommitted CREATE SCHEMA (nor fail on
    /// it). Returns whether this call created it.
    private func ensureSchemaShared(_ schema: String) async throws(CloneError) -> Bool {
        do {
            return try await ensureSchema(schema, on: target)
        } catch let error as PQError where error.sqlState == "23505" || error.sqlState == "42P06" {
            return false
        } catch {
            throw CloneError.from(error, context: "creating schema \(schema) on target")
        }
    }

    /// A schema this clone created is removed again when the clone failed and left it empty.
    private func dropSchemaIfEmpty(_ schema: String, created: Bool) async {
        guard created else { return }
        let connection = target
        await Task {
            _ = try? await connection.execute("DROP SCHEMA IF EXISTS \(SQL.identifier(schema)) RESTRICT")
        }.value
    }

    /// Everything after the rows: constraints, indexes, triggers, row security, grants, sequences.
    private func completeTable(_ definition: TableDefinition, plan: CopyPlan, schema targetSchema: String, name targetName: String,
                               options: CloneOptions, deferForeignKeys: Bool, inherits: Bool, outcome: inout TableCloneOutcome) async throws {
        let qualifiedTarget = SQL.qualified(targetSchema, targetName)
        if options.maintenanceWorkMem > 0 && (!definition.indexes.isEmpty || !definition.constraints.isEmpty) {
            // For this transaction only (SET LOCAL), and never lower than the server's own.
            let kilobytes = String(options.maintenanceWorkMem >> 10)
            try await target.query("""
                SELECT pg_catalog.set_config('maintenance_work_mem', $1, true)
                FROM pg_catalog.pg_settings WHERE name = 'maintenance_work_mem' AND setting::pg_catalog.int8 OPERATOR(pg_catalog.<) $2::pg_catalog.int8
                """, [kilobytes + "kB", kilobytes])
        }
        try await addConstraints(definition, plan: plan, schema: targetSchema, name: targetName, options: options,
                                 deferForeignKeys: deferForeignKeys, inherits: inherits, outcome: &outcome)
        if options.indexes {
            let later = options.indexesAfterFunctions["\(definition.schema).\(definition.name)"] ?? []
            for index in definition.indexes {
                let statements = try indexSQL(index, definition: definition, schema: targetSchema, name: targetName)
                if later.contains(index.name) {
                    outcome.indexesAfterFunctions.append(statements)
                    continue
                }
                if try await runUnlessColumnMissing(statements, options: options) {
                    outcome.indexes += 1
                } else {
                    outcome.notes.append("index \(index.name) skipped: it uses a column that was not cloned")
                }
            }
        }
        if options.indexes { try await setClusterIndex(definition, schema: targetSchema, name: targetName) }
        try await setReplicaIdentity(definition, schema: targetSchema, name: targetName, outcome: &outcome)
        try await addStatistics(definition, schema: targetSchema, name: targetName, options: options, outcome: &outcome)
        if options.triggers {
            try await addTriggers(definition, schema: targetSchema, name: targetName, options: options, outcome: &outcome)
        }
        try await addRules(definition, schema: targetSchema, name: targetName, deferred: deferForeignKeys, outcome: &outcome)
        try await addRowSecurity(definition, schema: targetSchema, name: targetName, outcome: &outcome)
        try await Privileges.resetToDefault("TABLE \(qualifiedTarget)", named: qualifiedTarget, in: .relation, on: target, notes: &outcome.notes)
        try await Privileges.apply(definition.privileges.statements(on: "TABLE \(qualifiedTarget)"), on: target, notes: &outcome.notes)
        for (column, privileges) in definition.columnPrivileges where plan.columns.contains(where: { $0.name == column }) {
            try await Privileges.apply(privileges.statements(column: column, on: "TABLE \(qualifiedTarget)"), on: target, notes: &outcome.notes)
        }
        try await setSequences(definition, plan: plan, schema: targetSchema, name: targetName, outcome: &outcome)
        try await completePartitions(definition, schema: targetSchema, name: targetName, options: options, outcome: &outcome)
    }

    /// ALTER TABLE ... CLUSTER ON as on the source, once the index (or the constraint that made
    /// it) exists; none when it went with a column that was not cloned.
    private func setClusterIndex(_ definition: TableDefinition, schema: String, name: String) async throws {
        guard let clustered = definition.clusterIndex else { return }
        let index = NameMapping.rename(clustered, table: definition.name, to: name)
        if try await target.query("SELECT pg_catalog.to_regclass($1) IS NOT NULL", [SQL.qualified(schema, index)]).string(0, 0) == "t" {
            try await target.execute("ALTER TABLE \(SQL.qualified(schema, name)) CLUSTER ON \(SQL.identifier(index))")
        }
    }

    /// Extended statistics objects (named after the table when it is renamed, in its schema).
    private func addStatistics(_ definition: TableDefinition, schema: String, name: String, options: CloneOptions, outcome: inout TableCloneOutcome) async throws {
        for statistics in definition.statistics {
            let prefix = "CREATE STATISTICS \(statistics.printedName)"
            let suffix = " FROM \(definition.printedName)"
            guard statistics.definition.hasPrefix(prefix), statistics.definition.hasSuffix(suffix) else {
                throw CloneError("XX000", "unexpected definition of statistics \(statistics.name) on \(definition.displayName)")
            }
            let newName = SQL.qualified(schema, NameMapping.rename(statistics.name, table: definition.name, to: name))
            var statements = ["CREATE STATISTICS \(newName)" + statistics.definition.dropFirst(prefix.count).dropLast(suffix.count) + " FROM \(SQL.qualified(schema, name))"]
            if let comment = statistics.comment { statements.append("COMMENT ON STATISTICS \(newName) IS \(SQL.literal(comment))") }
            if let target = statistics.statisticsTarget { statements.append("ALTER STATISTICS \(newName) SET STATISTICS \(target)") }
            if let error = try await target.executeTolerating(["42710", "42703"], statements) {
                outcome.notes.append("statistics \(statistics.name) not created: \(error.message)")
            }
        }
    }

    /// The ALTER TABLE that gives a trigger or rule its state (pg_trigger.tgenabled,
    /// pg_rewrite.ev_enabled: D disabled, R replica, A always); nil for O, the default.
    static func enabledState(_ state: String, of kind: String, named name: String, on table: String) -> String? {
        switch state {
        case "D": return "ALTER TABLE \(table) DISABLE \(kind) \(SQL.identifier(name))"
        case "R": return "ALTER TABLE \(table) ENABLE REPLICA \(kind) \(SQL.identifier(name))"
        case "A": return "ALTER TABLE \(table) ENABLE ALWAYS \(kind) \(SQL.identifier(name))"
        default: return nil
        }
    }

    /// REPLICA IDENTITY as on the source (logical replication and change capture read it).
    private func setReplicaIdentity(_ definition: TableDefinition, schema: String, name: String, outcome: inout TableCloneOutcome) async throws {
        let qualified = SQL.qualified(schema, name)
        switch definition.replicaIdentity {
        case "f": try await target.execute("ALTER TABLE \(qualified) REPLICA IDENTITY FULL")
        case "n": try await target.execute("ALTER TABLE \(qualified) REPLICA IDENTITY NOTHING")
        case "i":
            guard let index = definition.replicaIdentityIndex else { return }
            let newName = NameMapping.rename(index, table: definition.name, to: name)
            let present = try await target.query("SELECT pg_catalog.to_regclass($1) IS NOT NULL", [SQL.qualified(schema, newName)])
            guard present.string(0, 0) == "t" else {
                outcome.notes.append("replica identity of \(definition.displayName) left as default: its index \(index) was not cloned")
                return
            }
            try await target.execute("ALTER TABLE \(qualified) REPLICA IDENTITY USING INDEX \(SQL.identifier(newName))")
        default: return
        }
    }

    /// Rules (`CREATE RULE ... TO table`), enabled as on the source. In a schema clone they wait
    /// until every table exists; alone, a rule whose action names a table missing on the target
    /// is reported and left out.
    /// A rule of the source's table, made on `qualified` (with its state and comment).
    private static func ruleStatements(_ rule: TableDefinition.Rule, of definition: TableDefinition, on qualified: String) throws -> [String] {
        guard let statement = rule.definition.replacingFirst(" TO \(definition.printedName)", with: " TO \(qualified)") else {
            throw CloneError("XX000", "unexpected definition of rule \(rule.name) on \(definition.displayName)")
        }
        var statements = [statement]
        if let state = enabledState(rule.isEnabled, of: "RULE", named: rule.name, on: qualified) { statements.append(state) }
        if let comment = rule.comment {
            statements.append("COMMENT ON RULE \(SQL.identifier(rule.name)) ON \(qualified) IS \(SQL.literal(comment))")
        }
        return statements
    }

    /// The rules a table kept on the target (conflict skip) lacks: a skip run finishes a schema
    /// clone that failed before its rules were made (round 41 F3).
    private func missingRules(_ definition: TableDefinition, schema: String, name: String) async throws(CloneError) -> [[String]] {
        let qualified = SQL.qualified(schema, name)
        var missing: [[String]] = []
        do {
            for rule in definition.rules {
                let present = try await target.query("""
                    SELECT 1 FROM pg_catalog.pg_rewrite WHERE ev_class OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1) AND rulename OPERATOR(pg_catalog.=) $2
                    """, [qualified, rule.name])
                if present.rows.isEmpty { missing.append(try Self.ruleStatements(rule, of: definition, on: qualified)) }
            }
        } catch {
            throw CloneError.from(error, context: "target")
        }
        return missing
    }

    private func addRules(_ definition: TableDefinition, schema: String, name: String, deferred: Bool, outcome: inout TableCloneOutcome) async throws {
        let qualified = SQL.qualified(schema, name)
        for rule in definition.rules {
            let statements = try Self.ruleStatements(rule, of: definition, on: qualified)
            if deferred {
                outcome.deferredRules.append(statements)
            } else if let error = try await target.executeTolerating(["42P01", "42703"], statements) {
                outcome.notes.append("rule \(rule.name) not created: \(error.message)")
            }
        }
    }

    /// What a table left half-copied says about itself until its copy is complete.
    static let incompleteMarker = "pgclone: incomplete copy in progress (split into parts); if no clone is running, drop this table"

    /// A large table copied in parts by several connections at once. The parts cannot share one
    /// transaction, so the table is created (marked incomplete) and committed first, each part
    /// commits on its own, and the rest (constraints, indexes...) follows in a last transaction.
    /// On failure the table is dropped again; a process that dies leaves it marked, and the next
    /// clone of it (a resumed job) removes it before starting.
    private func cloneSplit(_ definition: TableDefinition, plan: CopyPlan, schema targetSchema: String, name targetName: String,
                            options: CloneOptions, deferForeignKeys: Bool, split: SplitCopy,
                            outcome initial: TableCloneOutcome) async throws(CloneError) -> TableCloneOutcome {
        var outcome = initial
        let qualifiedTarget = SQL.qualified(targetSchema, targetName)
        let createdSchema = try await ensureSchemaShared(targetSchema)
        do {
            try await target.execute("BEGIN")
            do {
                try await createTable(definition, plan: plan, schema: targetSchema, name: targetName, inherits: nil, outcome: &outcome)
                try await target.execute("COMMENT ON TABLE \(qualifiedTarget) IS \(SQL.literal(Self.incompleteMarker))")
                try await target.execute("COMMIT")
            } catch {
                _ = try? await target.execute("ROLLBACK")
                throw error
            }
        } catch {
            await dropSchemaIfEmpty(targetSchema, created: createdSchema)
            throw CloneError.from(error, context: "cloning \(definition.displayName)")
        }
        do {
            let copied = try await split.copy(plan, plan.targetCopySQL(qualifiedTarget, freeze: false))
            outcome.rows = copied.rows
            outcome.bytes = copied.bytes
            try await target.execute("BEGIN")
            try await completeTable(definition, plan: plan, schema: targetSchema, name: targetName, options: options,
                                    deferForeignKeys: deferForeignKeys, inherits: false, outcome: &outcome)
            try await target.execute("COMMENT ON TABLE \(qualifiedTarget) IS \(definition.comment.map(SQL.literal) ?? "NULL")")
            try await target.execute("COMMIT")
            outcome.notes.append("\(definition.displayName) copied in \(split.parts) parts at once")
        } catch {
            // Dropped in a task of its own: a cancelled call's statements do not run.
            let connection = target
            _ = await Task {
                _ = try? await connection.execute("ROLLBACK")
                _ = try? await connection.execute("DROP TABLE IF EXISTS \(qualifiedTarget) CASCADE")
            }.value
            await dropSchemaIfEmpty(targetSchema, created: createdSchema)
            throw CloneError.from(error, context: "cloning \(definition.displayName)")
        }
        do {
            try await target.execute("ANALYZE \(qualifiedTarget)")
        } catch {
            outcome.notes.append("WARNING: \(qualifiedTarget) was cloned and committed, but ANALYZE failed (\((error as? PQError)?.message ?? "\(error)")); run ANALYZE on it")
        }
        return outcome
    }

    // MARK: - Steps

    private func createTable(_ definition: TableDefinition, plan: CopyPlan, schema: String, name: String, inherits: [String]?,
                             outcome: inout TableCloneOutcome) async throws {
        let qualified = SQL.qualified(schema, name)
        var sequenceNames: [String: (printed: String, qualified: String)] = [:]
        for sequence in definition.sequences where plan.columns.contains(where: { $0.name == sequence.column }) {
            let newName = NameMapping.rename(sequence.name, table: definition.name, to: name)
            let newQualified = SQL.qualified(schema, newName)
            sequenceNames[sequence.column] = (sequence.printedName, newQualified)
            if !sequence.isIdentity {
                try await target.execute("CREATE \(sequence.isUnlogged ? "UNLOGGED " : "")SEQUENCE \(newQualified) \(sequence.options)")
            }
        }
        var lines: [String] = []
        for column in plan.columns where inherits == nil || column.isLocal {
            var line = "\(SQL.identifier(column.name)) \(column.type)"
            if let collation = column.collation { line += " COLLATE \(collation)" }
            if let generated = column.generatedExpression {
                line += " GENERATED ALWAYS AS (\(generated)) STORED"
            } else if let identity = column.identity,
                      let sequence = definition.sequences.first(where: { $0.column == column.name && $0.isIdentity }),
                      let names = sequenceNames[column.name] {
                line += identity == "a" ? " GENERATED ALWAYS AS IDENTITY" : " GENERATED BY DEFAULT AS IDENTITY"
                // An identity sequence takes its type from the column: drop the leading "AS type".
                let options = sequence.options.range(of: "INCREMENT BY").map { String(sequence.options[$0.lowerBound...]) } ?? sequence.options
                line += " (SEQUENCE NAME \(names.qualified) \(options))"
            } else if var expression = column.defaultExpression {
                if let names = sequenceNames[column.name] {
                    expression = expression.replacingFirst("'\(names.printed.replacingOccurrences(of: "'", with: "''"))'::regclass",
                                                           with: "\(SQL.literal(names.qualified))::regclass") ?? expression
                }
                line += " DEFAULT \(expression)"
            }
            if column.notNull { line += " NOT NULL" }
            lines.append(line)
        }
        var create = "CREATE \(definition.isUnlogged ? "UNLOGGED " : "")TABLE \(qualified) (\n    \(lines.joined(separator: ",\n    "))\n)"
        if let inherits { create += " INHERITS (\(inherits.joined(separator: ", ")))" }
        if let key = definition.partitionKey { create += " PARTITION BY \(key)" }
        if !definition.storageParameters.isEmpty {
            create += " WITH (\(try definition.storageParameters.map(Self.storageParameter).joined(separator: ", ")))"
        }
        try await target.execute(create)
        // A typed table is linked to its composite type as CREATE TABLE ... OF would have made it
        // (round 41 F1: it became a plain table). The type must exist on the target and match
        // the columns the clone made: otherwise the table stays plain, and says so.
        if let type = definition.ofType {
            if let error = try await target.executeTolerating(["42704", "42809", "42804", "42P16", "42601"], ["ALTER TABLE \(qualified) OF \(type)"]) {
                outcome.notes.append("\(schema).\(name) made as a plain table, not OF \(type) as on the source: \(error.message)")
            }
        }
        for column in plan.columns {
            for statement in try Self.columnSettings(column, of: qualified, inherited: nil) { try await target.execute(statement) }
        }
        // Inherited columns come from the parents; what the child changed on them is set again.
        for column in plan.columns where inherits != nil && column.generatedExpression == nil && column.identity == nil {
            if !column.isLocal, let expression = column.defaultExpression {
                try await target.execute("ALTER TABLE \(qualified) ALTER COLUMN \(SQL.identifier(column.name)) SET DEFAULT \(expression)")
            } else if column.defaultExpression == nil {
                // A child without a default of its own would take the parent's (pg_dump writes
                // DEFAULT NULL for the same reason; fidelity round 25).
                try await target.execute("ALTER TABLE \(qualified) ALTER COLUMN \(SQL.identifier(column.name)) DROP DEFAULT")
            }
        }
        for column in plan.columns where inherits != nil && !column.isLocal {
            if column.notNull {
                try await target.execute("ALTER TABLE \(qualified) ALTER COLUMN \(SQL.identifier(column.name)) SET NOT NULL")
            }
        }
        for sequence in definition.sequences where !sequence.isIdentity {
            if let names = sequenceNames[sequence.column] {
                try await target.execute("ALTER SEQUENCE \(names.qualified) OWNED BY \(qualified).\(SQL.identifier(sequence.column))")
            }
        }
        for partition in definition.partitions {
            try await createPartition(partition, parentDefinition: definition, parent: qualified, schema: schema, parentName: name)
        }
        if let comment = definition.comment {
            try await target.execute("COMMENT ON TABLE \(qualified) IS \(SQL.literal(comment))")
        }
        for column in plan.columns {
            if let comment = column.comment {
                try await target.execute("COMMENT ON COLUMN \(qualified).\(SQL.identifier(column.name)) IS \(SQL.literal(comment))")
            }
        }
    }

    /// `name=value` from pg_class.reloptions as a WITH item: the name checked, the value quoted.
    /// ALTER COLUMN ... SET STATISTICS / STORAGE / COMPRESSION / (options) for what the column
    /// sets of its own; storage and compression only where they differ from `inherited` (the
    /// parent's column a partition took them from).
    static func columnSettings(_ column: TableDefinition.Column, of table: String, inherited: TableDefinition.Column?) throws -> [String] {
        let alter = "ALTER TABLE \(table) ALTER COLUMN \(SQL.identifier(column.name))"
        var statements: [String] = []
        if let statistics = column.statisticsTarget { statements.append("\(alter) SET STATISTICS \(statistics)") }
        if let storage = column.storage, storage != inherited?.storage { statements.append("\(alter) SET STORAGE \(storage)") }
        if let compression = column.compression, compression != inherited?.compression { statements.append("\(alter) SET COMPRESSION \(compression)") }
        if !column.attributeOptions.isEmpty {
            statements.append("\(alter) SET (\(try column.attributeOptions.map(storageParameter).joined(separator: ", ")))")
        }
        return statements
    }

    static func storageParameter(_ option: String) throws -> String {
        guard let equals = option.firstIndex(of: "="),
              option[..<equals].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." }) else {
            throw CloneError("XX000", "unexpected storage parameter \(option)")
        }
        return "\(option[..<equals]) = \(SQL.literal(String(option[option.index(after: equals)...])))"
    }

    /// Row-level security as on the source. RLS is enabled even when a policy cannot be created
    /// (a role missing on the target, a table not there yet): the table is then closed more, not less.
    private func addRowSecurity(_ definition: TableDefinition, schema: String, name: String, outcome: inout TableCloneOutcome) async throws {
        let qualified = SQL.qualified(schema, name)
        if definition.rowSecurity { try await target.execute("ALTER TABLE \(qualified) ENABLE ROW LEVEL SECURITY") }
        if definition.forceRowSecurity { try await target.execute("ALTER TABLE \(qualified) FORCE ROW LEVEL SECURITY") }
        for policy in definition.policies {
            var statement = "CREATE POLICY \(SQL.identifier(policy.name)) ON \(qualified) AS \(policy.isPermissive ? "PERMISSIVE" : "RESTRICTIVE")"
                + " FOR \(policy.command) TO \(policy.roles ?? "PUBLIC")"
            if let using = policy.using { statement += " USING (\(using))" }
            if let check = policy.withCheck { statement += " WITH CHECK (\(check))" }
            var statements = [statement]
            if let comment = policy.comment {
                statements.append("COMMENT ON POLICY \(SQL.identifier(policy.name)) ON \(qualified) IS \(SQL.literal(comment))")
            }
            if let error = try await target.executeTolerating(["42704", "42P01", "42883", "42703"], statements) {
                outcome.notes.append("row-level security policy \(policy.name) on \(schema).\(name) not created (\(error.message)); row-level security stays enabled")
            }
        }
    }

    private func createPartition(_ partition: TableDefinition.Partition, parentDefinition: TableDefinition, parent: String, schema: String, parentName: String) async throws {
        let name = NameMapping.rename(partition.name, table: parentDefinition.name, to: parentName)
        let targetSchema = partition.schema == parentDefinition.schema ? schema : partition.schema
        let qualified = SQL.qualified(targetSchema, name)
        guard let child = try await TableDefinition.load(source, schema: partition.schema, table: partition.name) else { return }
        if targetSchema != schema {
            // A partition kept in a schema of its own (in the table's transaction: undone with it).
            try await target.execute("CREATE SCHEMA IF NOT EXISTS \(SQL.identifier(targetSchema))")
        }
        var create = "CREATE \(child.isUnlogged ? "UNLOGGED " : "")TABLE \(qualified) PARTITION OF \(parent) \(partition.bound)"
        if let key = child.partitionKey { create += " PARTITION BY \(key)" }
        let parameters = try child.storageParameters.map(Self.storageParameter)
        if !parameters.isEmpty { create += " WITH (\(parameters.joined(separator: ", ")))" }
        try await target.execute(create)
        if let comment = child.comment {
            try await target.execute("COMMENT ON TABLE \(qualified) IS \(SQL.literal(comment))")
        }
        // What a partition has of its own: PARTITION OF gives it the parent's columns, defaults
        // and NOT NULLs; a default, NOT NULL or column setting of its own is set again here
        // (round 26: they were lost, as were its RLS, rules and statistics, see completePartitions).
        for column in child.columns {
            let column_ = SQL.identifier(column.name)
            let inherited = parentDefinition.columns.first { $0.name == column.name }
            if column.generatedExpression == nil, column.identity == nil, column.defaultExpression != inherited?.defaultExpression {
                if let expression = column.defaultExpression {
                    try await target.execute("ALTER TABLE \(qualified) ALTER COLUMN \(column_) SET DEFAULT \(expression)")
                } else {
                    try await target.execute("ALTER TABLE \(qualified) ALTER COLUMN \(column_) DROP DEFAULT")
                }
            }
            if column.notNull, inherited?.notNull != true {
                try await target.execute("ALTER TABLE \(qualified) ALTER COLUMN \(column_) SET NOT NULL")
            }
            for statement in try Self.columnSettings(column, of: qualified, inherited: inherited) { try await target.execute(statement) }
            if let comment = column.comment {
                try await target.execute("COMMENT ON COLUMN \(qualified).\(column_) IS \(SQL.literal(comment))")
            }
        }
        for grandchild in child.partitions {
            try await createPartition(grandchild, parentDefinition: child, parent: qualified, schema: schema, parentName: name)
        }
    }

    /// What a partition has of its own (not from its parent), once the rows are in: checks,
    /// indexes, replica identity, triggers, grants.
    private func completePartitions(_ parentDefinition: TableDefinition, schema parentSchema: String, name parentName: String,
                                    options: CloneOptions, outcome: inout TableCloneOutcome) async throws {
        for partition in parentDefinition.partitions {
            let name = NameMapping.rename(partition.name, table: parentDefinition.name, to: parentName)
            let schema = partition.schema == parentDefinition.schema ? parentSchema : partition.schema
            let qualified = SQL.qualified(schema, name)
            guard let child = try await TableDefinition.load(source, schema: partition.schema, table: partition.name) else { continue }
            if options.constraints {
                for constraint in child.constraints where constraint.kind == "c" && !constraint.isInheritedOnly {
                    let constraintName = NameMapping.rename(constraint.name, table: child.name, to: name)
                    var statements = ["ALTER TABLE \(qualified) ADD CONSTRAINT \(SQL.identifier(constraintName)) \(constraint.definition)"]
                    if let comment = constraint.comment {
                        statements.append("COMMENT ON CONSTRAINT \(SQL.identifier(constraintName)) ON \(qualified) IS \(SQL.literal(comment))")
                    }
                    if try await runUnlessColumnMissing(statements, options: options) { outcome.constraints += 1 }
                }
            }
            if options.indexes {
                for index in child.indexes {
                    if try await runUnlessColumnMissing(try indexSQL(index, definition: child, schema: schema, name: name), options: options) { outcome.indexes += 1 }
                }
            }
            try await setReplicaIdentity(child, schema: schema, name: name, outcome: &outcome)
            if options.indexes { try await setClusterIndex(child, schema: schema, name: name) }
            try await addStatistics(child, schema: schema, name: name, options: options, outcome: &outcome)
            if options.triggers {
                try await addTriggers(child, schema: schema, name: name, options: options, outcome: &outcome)
                // Triggers it has from its parent's, in another state here (disabled on this partition only).
                for (trigger, enabled) in child.inheritedTriggerStates {
                    try await target.execute(Self.enabledState(enabled, of: "TRIGGER", named: trigger, on: qualified)
                                             ?? "ALTER TABLE \(qualified) ENABLE TRIGGER \(SQL.identifier(trigger))")
                }
            }
            try await addRules(child, schema: schema, name: name, deferred: false, outcome: &outcome)
            try await addRowSecurity(child, schema: schema, name: name, outcome: &outcome)
            try await Privileges.resetToDefault("TABLE \(qualified)", named: qualified, in: .relation, on: target, notes: &outcome.notes)
            try await Privileges.apply(child.privileges.statements(on: "TABLE \(qualified)"), on: target, notes: &outcome.notes)
            for (column, privileges) in child.columnPrivileges {
                try await Privileges.apply(privileges.statements(column: column, on: "TABLE \(qualified)"), on: target, notes: &outcome.notes)
            }
            try await completePartitions(child, schema: parentSchema, name: name, options: options, outcome: &outcome)
        }
    }

    /// The source's foreign keys that the target's table of the same name lacks (by name).
    private func missingForeignKeys(_ definition: TableDefinition, schema: String, name: String) async throws(CloneError) -> [KeptForeignKey] {
        let qualified = SQL.qualified(schema, name)
        var missing: [KeptForeignKey] = []
        for constraint in definition.constraints where constraint.kind == "f" {
            let constraintName = NameMapping.rename(constraint.name, table: definition.name, to: name)
            let present: PQResult
            do {
                present = try await target.query("""
                    SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1) AND conname OPERATOR(pg_catalog.=) $2
                    """, [qualified, constraintName])
            } catch {
                throw CloneError.from(error, context: "target")
            }
            guard present.rows.isEmpty else { continue }
            var statements = ["ALTER TABLE \(qualified) ADD CONSTRAINT \(SQL.identifier(constraintName)) \(constraint.definition)"]
            if let comment = constraint.comment {
                statements.append("COMMENT ON CONSTRAINT \(SQL.identifier(constraintName)) ON \(qualified) IS \(SQL.literal(comment))")
            }
            missing.append(KeptForeignKey(name: "\(constraintName) on \(schema).\(name)", statements: statements))
        }
        return missing
    }

    private func addConstraints(_ definition: TableDefinition, plan: CopyPlan, schema: String, name: String, options: CloneOptions,
                                deferForeignKeys: Bool, inherits: Bool, outcome: inout TableCloneOutcome) async throws {
        let qualified = SQL.qualified(schema, name)
        for constraint in definition.constraints where !(inherits && constraint.isInheritedOnly) {
            // The primary key is part of the table's shape; the others follow "constraints".
            guard constraint.kind == "p" || options.constraints else { continue }
            let constraintName = NameMapping.rename(constraint.name, table: definition.name, to: name)
            var statements = ["ALTER TABLE \(qualified) ADD CONSTRAINT \(SQL.identifier(constraintName)) \(constraint.definition)"]
            if let comment = constraint.comment {
                statements.append("COMMENT ON CONSTRAINT \(SQL.identifier(constraintName)) ON \(qualified) IS \(SQL.literal(comment))")
            }
            if constraint.kind == "f" {
                if deferForeignKeys {
                    outcome.deferredForeignKeys.append(statements)
                    continue
                }
                let referenced = try await target.query("SELECT pg_catalog.to_regclass($1) IS NOT NULL",
                                                        [SQL.qualified(constraint.referencedSchema ?? "", constraint.referencedName ?? "")])
                guard referenced.string(0, 0) == "t" else {
                    outcome.notes.append("foreign key \(constraint.name) skipped: referenced table \(constraint.referencedSchema ?? "").\(constraint.referencedName ?? "") is not on target")
                    continue
                }
            }
            if try await runUnlessColumnMissing(statements, options: options) {
                outcome.constraints += 1
            } else {
                outcome.notes.append("constraint \(constraint.name) skipped: it uses a column that was not cloned")
            }
        }
    }

    /// Runs `statements`; when only some columns are cloned, statements that need a
    /// missing column (42703) are rolled back to a savepoint and reported as `false`.
    private func runUnlessColumnMissing(_ statements: [String], options: CloneOptions) async throws -> Bool {
        guard options.columns != nil else {
            for statement in statements { try await target.execute(statement) }
            return true
        }
        return try await target.executeTolerating(["42703"], statements) == nil
    }

    /// Rewrites `CREATE [UNIQUE] INDEX name ON [ONLY] table USING ...` for the target table.
    private func indexSQL(_ index: TableDefinition.Index, definition: TableDefinition, schema: String, name: String) throws -> [String] {
        let only = definition.isPartitioned ? "ONLY " : ""
        let prefix = "CREATE \(index.isUnique ? "UNIQUE " : "")INDEX \(index.printedName) ON \(only)\(definition.printedName) USING "
        guard index.definition.hasPrefix(prefix) else {
            throw CloneError("XX000", "unexpected definition of index \(index.name) on \(definition.displayName)")
        }
        let newName = NameMapping.rename(index.name, table: definition.name, to: name)
        // Partitioned tables: create on the parent, which cascades to partitions.
        return ["CREATE \(index.isUnique ? "UNIQUE " : "")INDEX \(SQL.identifier(newName)) ON \(SQL.qualified(schema, name)) USING "
            + index.definition.dropFirst(prefix.count)]
            + (index.comment.map { ["COMMENT ON INDEX \(SQL.qualified(schema, newName)) IS \(SQL.literal($0))"] } ?? [])
            + index.columnStatistics.map { "ALTER INDEX \(SQL.qualified(schema, newName)) ALTER COLUMN \($0.column) SET STATISTICS \($0.target)" }
    }

    private func addTriggers(_ definition: TableDefinition, schema: String, name: String, options: CloneOptions, outcome: inout TableCloneOutcome) async throws {
        for trigger in definition.triggers {
            let signature = "\(SQL.qualified(trigger.functionSchema, trigger.functionName))(\(trigger.functionSignature))"
            let present = try await target.query("SELECT pg_catalog.to_regprocedure($1) IS NOT NULL", [signature])
            guard present.string(0, 0) == "t" else {
                outcome.notes.append("trigger \(trigger.name) skipped: function \(trigger.functionSchema).\(trigger.functionName)() is not on target")
                continue
            }
            guard let statement = trigger.definition.replacingFirst(" ON \(definition.printedName) ", with: " ON \(SQL.qualified(schema, name)) ") else {
                throw CloneError("XX000", "unexpected definition of trigger \(trigger.name) on \(definition.displayName)")
            }
            var statements = [statement]
            // Disabled or replica-only on the source: the same here (a disabled trigger must not start firing).
            if let state = Self.enabledState(trigger.enabled, of: "TRIGGER", named: trigger.name, on: SQL.qualified(schema, name)) { statements.append(state) }
            if let comment = trigger.comment {
                statements.append("COMMENT ON TRIGGER \(SQL.identifier(trigger.name)) ON \(SQL.qualified(schema, name)) IS \(SQL.literal(comment))")
            }
            if try await runUnlessColumnMissing(statements, options: options) {
                outcome.triggers += 1
            } else {
                outcome.notes.append("trigger \(trigger.name) skipped: it uses a column that was not cloned")
            }
        }
    }

    private func setSequences(_ definition: TableDefinition, plan: CopyPlan, schema: String, name: String, outcome: inout TableCloneOutcome) async throws {
        for sequence in definition.sequences where plan.columns.contains(where: { $0.name == sequence.column }) {
            let newName = NameMapping.rename(sequence.name, table: definition.name, to: name)
            try await target.query("SELECT pg_catalog.setval($1::pg_catalog.regclass, $2::pg_catalog.int8, $3::pg_catalog.bool)",
                                   [SQL.qualified(schema, newName), sequence.lastValue, sequence.isCalled ? "true" : "false"])
            try await Privileges.resetToDefault("SEQUENCE \(SQL.qualified(schema, newName))", named: SQL.qualified(schema, newName), in: .relation, on: target, notes: &outcome.notes)
            try await Privileges.apply(sequence.privileges.statements(on: "SEQUENCE \(SQL.qualified(schema, newName))"), on: target, notes: &outcome.notes)
        }
    }

    /// `<name>_old`, or `_old_2`, ...: the first name no relation of `schema` has.
    static func asideName(_ name: String, in schema: String, on connection: PQConnection) async throws -> String {
        var candidate = NameMapping.truncate(name + "_old")
        var suffix = 2
        while try await connection.query("""
            SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1 AND c.relname = $2
            """, [schema, candidate]).rows.count > 0 {
            candidate = NameMapping.truncate("\(name)_old_\(suffix)")
            suffix += 1
        }
        return candidate
    }

    /// Moves an existing target table out of the way as `<name>_old` (or `_old_2`, ...),
    /// with its indexes, constraints, owned sequences and statistics objects renamed so the new
    /// table gets its own names; a partitioned table's partitions (at every depth) go aside too,
    /// with theirs (the new partitions take their names).
    /// Returns its new name (`schema.name`) and the views that now read it.
    private func renameExisting(schema: String, table: String) async throws -> (name: String, readers: [String]) {
        let partitions = try await target.query("""
            SELECT n.nspname, c.relname FROM pg_catalog.pg_partition_tree($1::pg_catalog.regclass) t
            JOIN pg_catalog.pg_class c ON c.oid = t.relid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE t.level > 0 ORDER BY t.level DESC, 1, 2
            """, [SQL.qualified(schema, table)])
        for row in partitions.rows.indices {
            _ = try await moveAside(schema: partitions.text(row, 0), table: partitions.text(row, 1))
        }
        let candidate = try await moveAside(schema: schema, table: table)
        let renamedTable = SQL.qualified(schema, candidate)
        let readers = try await target.query("""
            SELECT DISTINCT r.ev_class::pg_catalog.regclass::pg_catalog.text FROM pg_catalog.pg_depend d
            JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
            WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
              AND d.refobjid = $1::pg_catalog.regclass AND r.ev_class <> d.refobjid
            ORDER BY 1
            """, [renamedTable]).strings.compactMap { $0 }
        return ("\(schema).\(candidate)", readers)
    }

    /// Renames one table to its aside name with the names that derive from it (inherited
    /// constraints keep theirs: they follow their parent's). Returns the new name.
    private func moveAside(schema: String, table: String) async throws -> String {
        let candidate = try await Self.asideName(table, in: schema, on: target)
        let qualified = SQL.qualified(schema, table)
        let dependents = try await target.query("""
            SELECT 'index', ic.relname, $2 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
            WHERE i.indrelid = $1::pg_catalog.regclass
            UNION ALL
            SELECT 'constraint', co.conname, $2 FROM pg_catalog.pg_constraint co
            WHERE co.conrelid = $1::pg_catalog.regclass AND co.conindid = 0 AND co.conislocal
            UNION ALL
            SELECT 'sequence', sc.relname, $2 FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class sc ON sc.oid = d.objid AND sc.relkind = 'S'
            WHERE d.refobjid = $1::pg_catalog.regclass AND d.deptype IN ('a', 'i')
            UNION ALL
            SELECT 'statistics', st.stxname, sn.nspname FROM pg_catalog.pg_statistic_ext st
            JOIN pg_catalog.pg_namespace sn ON sn.oid = st.stxnamespace
            WHERE st.stxrelid = $1::pg_catalog.regclass
            """, [qualified, schema])
        try await target.execute("ALTER TABLE \(qualified) RENAME TO \(SQL.identifier(candidate))")
        let renamedTable = SQL.qualified(schema, candidate)
        // A typed table's constraints cannot be renamed (the server says "cannot rename column
        // of typed table"): it leaves its type for the renames and takes it again (round 43 N4).
        let ofType = try await target.query("""
            SELECT pg_catalog.format_type(c.reloftype, NULL) FROM pg_catalog.pg_class c WHERE c.oid = $1::pg_catalog.regclass AND c.reloftype <> 0
            """, [renamedTable]).string(0, 0)
        let renamesConstraints = dependents.rows.indices.contains { dependents.text($0, 0) == "constraint" }
        if ofType != nil, renamesConstraints { try await target.execute("ALTER TABLE \(renamedTable) NOT OF") }
        for row in dependents.rows.indices {
            let kind = dependents.text(row, 0)
            let old = dependents.text(row, 1)
            let new = NameMapping.rename(old, table: table, to: candidate)
            guard new != old else { continue }
            switch kind {
            case "index": try await target.execute("ALTER INDEX \(SQL.qualified(schema, old)) RENAME TO \(SQL.identifier(new))")
            case "constraint": try await target.execute("ALTER TABLE \(renamedTable) RENAME CONSTRAINT \(SQL.identifier(old)) TO \(SQL.identifier(new))")
            case "statistics": try await target.execute("ALTER STATISTICS \(SQL.qualified(dependents.text(row, 2), old)) RENAME TO \(SQL.identifier(new))")
            default: try await target.execute("ALTER SEQUENCE \(SQL.qualified(schema, old)) RENAME TO \(SQL.identifier(new))")
            }
        }
        if let ofType, renamesConstraints { try await target.execute("ALTER TABLE \(renamedTable) OF \(ofType)") }
        return candidate
    }
}
