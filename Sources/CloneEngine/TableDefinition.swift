import Masking
import PQ

/// Everything about one source table that a clone recreates, read from the catalog.
/// Definitions come from the server's own deparsers (format_type, pg_get_expr,
/// pg_get_constraintdef, pg_get_indexdef, pg_get_triggerdef) under an empty
/// search_path, so every name in them is schema-qualified.
public struct TableDefinition: Sendable {
    public struct Column: Sendable {
        public var number: Int
        public var name: String
        public var type: String
        public var notNull: Bool
        public var defaultExpression: String?
        /// "a" (ALWAYS), "d" (BY DEFAULT) or nil.
        public var identity: String?
        public var generatedExpression: String?
        public var collation: String?
        /// A built-in type whose binary COPY form reads back the same on another server.
        public var copiesInBinary: Bool
        /// pg_type.typcategory: S string, N numeric, ...
        public var typeCategory: String
        /// For a domain: the type under it (what a mask strategy computes on).
        public var baseType: String? = nil
        public var comment: String?
        /// Defined by the table itself, not only inherited from a parent (pg_attribute.attislocal).
        public var isLocal: Bool = true
        /// ALTER COLUMN ... SET STATISTICS / SET STORAGE when they differ from the defaults.
        public var statisticsTarget: Int? = nil
        public var storage: String? = nil
        /// For a generated column: the columns its expression reads.
        public var generatedFrom: [String] = []
        /// ALTER COLUMN ... SET COMPRESSION (pglz, lz4) when the column has one of its own.
        public var compression: String? = nil
        /// ALTER COLUMN ... SET (n_distinct=...): pg_attribute.attoptions, as `name=value`.
        public var attributeOptions: [String] = []
    }

    public struct Constraint: Sendable {
        public var name: String
        /// p primary key, u unique, c check, f foreign key, x exclusion.
        public var kind: String
        public var definition: String
        /// For foreign keys: the referenced table, qualified and quoted.
        public var referencedTable: String?
        public var referencedSchema: String?
        public var referencedName: String?
        public var comment: String? = nil
        /// Comes from a parent table only (inheritance): created by INHERITS, not by the child.
        public var isInheritedOnly: Bool = false
    }

    public struct Index: Sendable {
        public var name: String
        /// The name as the server's deparser prints it (quote_ident).
        public var printedName: String
        public var isUnique: Bool
        public var definition: String
        public var comment: String? = nil
        /// ALTER INDEX ... ALTER COLUMN n SET STATISTICS m, by column number (expression columns).
        public var columnStatistics: [(column: Int, target: Int)] = []
    }

    public struct Trigger: Sendable {
        public var name: String
        public var definition: String
        public var functionSchema: String
        public var functionName: String
        public var functionSignature: String
        public var comment: String? = nil
        /// pg_trigger.tgenabled: O (origin, the default), D (disabled), R (replica), A (always).
        public var enabled: String = "O"
    }

    /// A rule of the table (`CREATE RULE ... TO table ...`, as pg_get_ruledef prints it).
    public struct Rule: Sendable {
        public var name: String
        public var definition: String
        public var isEnabled: String = "O"
        public var comment: String? = nil
    }

    public struct OwnedSequence: Sendable {
        public var column: String
        public var schema: String
        public var name: String
        /// As regclass output prints it (quote_ident each part).
        public var printedName: String
        public var isIdentity: Bool
        public var options: String
        public var lastValue: String
        public var isCalled: Bool
        /// Privileges granted on the sequence (USAGE for nextval through the column's default).
        var privileges = Privileges()
        var isUnlogged = false
    }

    /// A row-level security policy.
    public struct RowSecurityPolicy: Sendable {
        public var name: String
        public var isPermissive: Bool
        /// ALL, SELECT, INSERT, UPDATE or DELETE.
        public var command: String
        /// Quoted role names, nil for PUBLIC.
        public var roles: String?
        public var using: String?
        public var withCheck: String?
        public var comment: String? = nil
    }

    /// An extended statistics object on the table (CREATE STATISTICS).
    public struct Statistics: Sendable {
        public var name: String
        /// `schema.name` as pg_get_statisticsobjdef prints it.
        public var printedName: String
        public var definition: String
        public var comment: String?
        /// ALTER STATISTICS ... SET STATISTICS, when set.
        public var statisticsTarget: Int? = nil
    }

    /// A column a partition key uses: the table itself (`partition` nil) or one of its
    /// partitions (quoted, qualified) is partitioned by `key`.
    public struct PartitionKeyColumn: Sendable, Equatable {
        public var column: String
        public var partition: String?
        public var key: String
    }

    public struct Partition: Sendable {
        public var schema: String
        public var name: String
        public var bound: String
        public var isDefaultPartition: Bool
    }

    public var oid: UInt32
    public var schema: String
    public var name: String
    public var isPartitioned: Bool
    public var partitionKey: String?
    /// The columns the partition keys of this table and of its sub-partitioned partitions
    /// use, plain or inside expressions; this table's own first.
    public var partitionKeyColumns: [PartitionKeyColumn] = []
    public var isUnlogged: Bool
    /// The composite type of a typed table (`CREATE TABLE ... OF type`), as format_type prints it.
    public var ofType: String?
    public var comment: String?
    public var columns: [Column]
    public var constraints: [Constraint]
    public var indexes: [Index]
    public var triggers: [Trigger]
    public var sequences: [OwnedSequence]
    public var partitions: [Partition]
    /// Every table this one inherits from or is a partition of, nearest first.
    public var ancestors: [(schema: String, name: String)] = []
    /// Parents by (non-partition) inheritance, in INHERITS order.
    public var parents: [(schema: String, name: String)] = []
    /// For a partition: triggers it has from its parent's whose state (pg_trigger.tgenabled)
    /// differs from the parent's, by name.
    public var inheritedTriggerStates: [(name: String, enabled: String)] = []
    /// The index CLUSTER uses (ALTER TABLE ... CLUSTER ON), if one is marked.
    public var clusterIndex: String?
    /// For a partitioned table with foreign tables among its partitions (at any depth): those
    /// (their rows live on another server and are not copied) and the leaf partitions that are
    /// tables here, each quoted and qualified. Empty when no partition is foreign.
    public var foreignLeaves: [String] = []
    public var localLeaves: [String] = []
    /// For a partition: its parent (quoted, qualified) and bound. Cloned on its own, it becomes
    /// a table of its own (as `pg_dump -t` of a partition), which the result says.
    public var partitionOf: (parent: String, bound: String)?
    /// Storage parameters (`fillfactor=70`, ...), as pg_class.reloptions lists them.
    public var storageParameters: [String] = []
    public var rowSecurity = false
    public var forceRowSecurity = false
    public var policies: [RowSecurityPolicy] = []
    /// Privileges granted on the table (not to its owner).
    var privileges = Privileges()
    /// Column privileges (`GRANT SELECT (c) ...`), by column name.
    var columnPrivileges: [(column: String, privileges: Privileges)] = []
    /// pg_class.relreplident (d default, n nothing, f full, i index) and, for i, the index.
    public var replicaIdentity = "d"
    public var replicaIdentityIndex: String?
    public var rules: [Rule] = []
    public var statistics: [Statistics] = []

    /// `schema.table` as the server's deparsers print it (quote_ident each part).
    public var printedName: String

    public var qualifiedName: String { SQL.qualified(schema, name) }
    public var displayName: String { "\(schema).\(name)" }

    /// Reads the definition; `nil` when there is no such ordinary or partitioned table.
    /// `asTableOfItsOwn`: the table is the clone's own (not made by PARTITION OF under a parent
    /// that is cloned too), so a partition's indexes attached to its parent's are its own.
    public static func load(_ connection: PQConnection, schema: String, table: String, asTableOfItsOwn: Bool = false) async throws -> TableDefinition? {
        let info = try await connection.query("""
            SELECT c.oid, c.relkind, c.relpersistence, pg_catalog.pg_get_partkeydef(c.oid),
                   pg_catalog.obj_description(c.oid, 'pg_class'),
                   pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname),
                   c.relrowsecurity, c.relforcerowsecurity, c.reloptions,
                   \(Privileges.sqlEntries(acl: "c.relacl", owner: "c.relowner")), c.relreplident,
                   (SELECT ic.relname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
                    WHERE i.indrelid = c.oid AND i.indisreplident),
                   (SELECT pg_catalog.array_to_string(t.reloptions, ',') FROM pg_catalog.pg_class t WHERE t.oid = c.reltoastrelid),
                   CASE WHEN c.reloftype <> 0 THEN pg_catalog.format_type(c.reloftype, NULL) END
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
            """, [schema, table])
        guard info.rows.count == 1, let oidText = info.string(0, 0), let oid = UInt32(oidText) else { return nil }
        let oidParameter = [oidText]

        // attcompression from PostgreSQL 14 on.
        let compression = try await connection.serverVersion >= 140000 ? "NULLIF(a.attcompression, '')" : "NULL::pg_catalog.char"
        let columnRows = try await connection.query("""
            SELECT a.attnum, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
                   CASE WHEN a.attgenerated = '' THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) END,
                   NULLIF(a.attidentity, ''),
                   CASE WHEN a.attgenerated <> '' THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) END,
                   CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN
                     (SELECT pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname)
                      FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
                      WHERE co.oid = a.attcollation) END,
                   -- Binary COPY only for built-in types whose binary form means the same on
                   -- another server: reg* types travel as the source's OIDs (names in text), and
                   -- aclitem has no binary form at all (fidelity round 25).
                   a.atttypid < 16384 AND t.typsend::pg_catalog.oid <> 0 AND t.typreceive::pg_catalog.oid <> 0
                     AND COALESCE(NULLIF(t.typelem, 0), t.oid) <> ALL ('{regclass,regtype,regproc,regprocedure,regoper,regoperator,regnamespace,regrole,regconfig,regdictionary,regcollation,aclitem}'::pg_catalog.regtype[]::pg_catalog.oid[]),
                   t.typcategory, pg_catalog.col_description(a.attrelid, a.attnum), a.attislocal,
                   NULLIF(a.attstattarget, -1),
                   CASE WHEN a.attstorage <> t.typstorage THEN
                     CASE a.attstorage WHEN 'p' THEN 'PLAIN' WHEN 'e' THEN 'EXTERNAL' WHEN 'm' THEN 'MAIN' WHEN 'x' THEN 'EXTENDED' END END,
                   CASE WHEN a.attgenerated <> '' THEN
                     (SELECT pg_catalog.string_agg(ra.attname, E'\\x1f' ORDER BY ra.attnum) FROM pg_catalog.pg_depend dd
                      JOIN pg_catalog.pg_attribute ra ON ra.attrelid = dd.refobjid AND ra.attnum = dd.refobjsubid
                      WHERE dd.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND dd.objid = d.oid
                        AND dd.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND dd.refobjid = a.attrelid AND dd.refobjsubid > 0) END,
                   CASE \(compression) WHEN 'p' THEN 'pglz' WHEN 'l' THEN 'lz4' END,
                   pg_catalog.array_to_string(a.attoptions, E'\\x1f'),
                   CASE WHEN t.typtype = 'd' THEN \(MaskView.baseTypeSQL("a.atttypid")) END
            FROM pg_catalog.pg_attribute a
            JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
            LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum
            """, oidParameter)
        let columns = columnRows.rows.indices.map { row in
            var column = Column(
                number: Int(columnRows.text(row, 0)) ?? 0,
                name: columnRows.text(row, 1),
                type: columnRows.text(row, 2),
                notNull: columnRows.string(row, 3) == "t",
                defaultExpression: columnRows.string(row, 4),
                identity: columnRows.string(row, 5),
                generatedExpression: columnRows.string(row, 6),
                collation: columnRows.string(row, 7),
                copiesInBinary: columnRows.string(row, 8) == "t",
                typeCategory: columnRows.string(row, 9) ?? "",
                comment: columnRows.string(row, 10),
                isLocal: columnRows.string(row, 11) != "f",
                statisticsTarget: columnRows.string(row, 12).flatMap(Int.init),
                storage: columnRows.string(row, 13),
                generatedFrom: (columnRows.string(row, 14) ?? "").split(separator: "\u{1F}").map(String.init),
                compression: columnRows.string(row, 15),
                attributeOptions: (columnRows.string(row, 16) ?? "").split(separator: "\u{1F}").map(String.init))
            column.baseType = columnRows.string(row, 17)
            return column
        }

        let constraintRows = try await connection.query("""
            SELECT co.conname, co.contype, pg_catalog.pg_get_constraintdef(co.oid),
                   rn.nspname, rc.relname, pg_catalog.obj_description(co.oid, 'pg_constraint'), NOT co.conislocal
            FROM pg_catalog.pg_constraint co
            LEFT JOIN pg_catalog.pg_class rc ON rc.oid = co.confrelid
            LEFT JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace
            WHERE co.conrelid = $1 AND co.contype IN ('p', 'u', 'c', 'f', 'x')
              -- A foreign key to a partitioned table has a child constraint per partition on
              -- this same table, which the parent's ADD CONSTRAINT makes again.
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint pc WHERE pc.oid = co.conparentid AND pc.conrelid = co.conrelid)
            ORDER BY CASE co.contype WHEN 'p' THEN 0 WHEN 'u' THEN 1 WHEN 'x' THEN 2 WHEN 'c' THEN 3 ELSE 4 END, co.conname
            """, oidParameter)
        let constraints = constraintRows.rows.indices.map { row in
            let referencedSchema = constraintRows.string(row, 3)
            let referencedName = constraintRows.string(row, 4)
            return Constraint(
                name: constraintRows.text(row, 0),
                kind: constraintRows.text(row, 1),
                definition: constraintRows.text(row, 2),
                referencedTable: referencedSchema.flatMap { s in referencedName.map { SQL.qualified(s, $0) } },
                referencedSchema: referencedSchema,
                referencedName: referencedName,
                comment: constraintRows.string(row, 5),
                isInheritedOnly: constraintRows.string(row, 6) == "t")
        }

        // Indexes that do not back a constraint and are not attached children of a partitioned index.
        let indexRows = try await connection.query("""
            SELECT ic.relname, pg_catalog.pg_get_indexdef(i.indexrelid), pg_catalog.quote_ident(ic.relname), i.indisunique,
                   pg_catalog.obj_description(i.indexrelid, 'pg_class'),
                   (SELECT pg_catalog.string_agg(a.attnum::pg_catalog.text || ':' || a.attstattarget::pg_catalog.text, ',' ORDER BY a.attnum)
                    FROM pg_catalog.pg_attribute a WHERE a.attrelid = i.indexrelid AND a.attstattarget >= 0)
            FROM pg_catalog.pg_index i
            JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
            WHERE i.indrelid = $1
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c WHERE c.conindid = i.indexrelid AND c.contype IN ('p', 'u', 'x'))
              -- A partition's index attached to its parent's comes with PARTITION OF; a partition
              -- cloned as a table of its own needs it made.
              AND ($2::pg_catalog.bool OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h WHERE h.inhrelid = i.indexrelid))
            ORDER BY ic.relname
            """, oidParameter + [asTableOfItsOwn ? "true" : "false"])
        let clustered = try await connection.query("""
            SELECT ic.relname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
            WHERE i.indrelid = $1 AND i.indisclustered
            """, oidParameter)
        let indexes = indexRows.rows.indices.map {
            Index(name: indexRows.text($0, 0), printedName: indexRows.text($0, 2), isUnique: indexRows.string($0, 3) == "t", definition: indexRows.text($0, 1),
                  comment: indexRows.string($0, 4),
                  columnStatistics: (indexRows.string($0, 5) ?? "").split(separator: ",").compactMap { pair in
                      let parts = pair.split(separator: ":")
                      guard parts.count == 2, let column = Int(parts[0]), let target = Int(parts[1]) else { return nil }
                      return (column, target)
                  })
        }

        let triggerRows = try await connection.query("""
            SELECT t.tgname, pg_catalog.pg_get_triggerdef(t.oid), pn.nspname, p.proname,
                   pg_catalog.pg_get_function_identity_arguments(p.oid), pg_catalog.obj_description(t.oid, 'pg_trigger'), t.tgenabled
            FROM pg_catalog.pg_trigger t
            JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
            JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
            WHERE t.tgrelid = $1 AND NOT t.tgisinternal AND t.tgparentid = 0
            ORDER BY t.tgname
            """, oidParameter)
        let triggers = triggerRows.rows.indices.map { row in
            Trigger(name: triggerRows.text(row, 0), definition: triggerRows.text(row, 1),
                    functionSchema: triggerRows.text(row, 2), functionName: triggerRows.text(row, 3),
                    functionSignature: triggerRows.string(row, 4) ?? "", comment: triggerRows.string(row, 5),
                    enabled: triggerRows.string(row, 6) ?? "O")
        }

        // Sequences owned by a column: serial columns ('a' dependency) and identity columns ('i').
        let sequenceRows = try await connection.query("""
            SELECT a.attname, sn.nspname, sc.relname,
                   'AS ' || pg_catalog.format_type(s.seqtypid, NULL) || ' INCREMENT BY ' || s.seqincrement
                   || ' MINVALUE ' || s.seqmin || ' MAXVALUE ' || s.seqmax || ' START WITH ' || s.seqstart
                   || ' CACHE ' || s.seqcache || CASE WHEN s.seqcycle THEN ' CYCLE' ELSE ' NO CYCLE' END,
                   pg_catalog.quote_ident(sn.nspname) || '.' || pg_catalog.quote_ident(sc.relname), d.deptype = 'i',
                   \(Privileges.sqlEntries(acl: "sc.relacl", owner: "sc.relowner")), sc.relpersistence = 'u'
            FROM pg_catalog.pg_depend d
            JOIN pg_catalog.pg_class sc ON sc.oid = d.objid AND sc.relkind = 'S'
            JOIN pg_catalog.pg_namespace sn ON sn.oid = sc.relnamespace
            JOIN pg_catalog.pg_sequence s ON s.seqrelid = sc.oid
            JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
            WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
              AND d.refobjid = $1 AND d.deptype IN ('a', 'i')
            ORDER BY a.attnum
            """, oidParameter)
        var sequences: [OwnedSequence] = []
        for row in sequenceRows.rows.indices {
            let sequenceSchema = sequenceRows.text(row, 1)
            let sequenceName = sequenceRows.text(row, 2)
            let state = try await connection.exec("SELECT last_value, is_called FROM \(SQL.qualified(sequenceSchema, sequenceName))")
            sequences.append(OwnedSequence(
                column: sequenceRows.text(row, 0), schema: sequenceSchema, name: sequenceName,
                printedName: sequenceRows.text(row, 4), isIdentity: sequenceRows.string(row, 5) == "t",
                options: sequenceRows.text(row, 3), lastValue: state.text(0, 0), isCalled: state.string(0, 1) == "t",
                privileges: Privileges(encoded: sequenceRows.string(row, 6)), isUnlogged: sequenceRows.string(row, 7) == "t"))
        }

        let partitionRows = try await connection.query("""
            SELECT n.nspname, c.relname, pg_catalog.pg_get_expr(c.relpartbound, c.oid)
            FROM pg_catalog.pg_inherits i
            JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE i.inhparent = $1 AND c.relkind IN ('r', 'p') AND c.relispartition
            ORDER BY c.relname
            """, oidParameter)
        let partitions = partitionRows.rows.indices.map { row in
            let bound = partitionRows.string(row, 2) ?? "DEFAULT"
            return Partition(schema: partitionRows.text(row, 0), name: partitionRows.text(row, 1), bound: bound, isDefaultPartition: bound == "DEFAULT")
        }

        let parentRows = try await connection.query("""
            SELECT pn.nspname, p.relname
            FROM pg_catalog.pg_inherits i
            JOIN pg_catalog.pg_class p ON p.oid = i.inhparent JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
            JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
            WHERE i.inhrelid = $1 AND NOT c.relispartition
            ORDER BY i.inhseqno
            """, oidParameter)
        var definition = TableDefinition(
            oid: oid, schema: schema, name: table,
            isPartitioned: info.string(0, 1) == "p", partitionKey: info.string(0, 3),
            isUnlogged: info.string(0, 2) == "u", comment: info.string(0, 4),
            columns: columns, constraints: constraints, indexes: indexes, triggers: triggers,
            sequences: sequences, partitions: partitions, printedName: info.text(0, 5))
        definition.clusterIndex = clustered.rows.isEmpty ? nil : clustered.string(0, 0)
        definition.ofType = info.string(0, 13)
        let partitionOf = try await connection.query("""
            SELECT pg_catalog.format('%I.%I', pn.nspname, p.relname), pg_catalog.pg_get_expr(c.relpartbound, c.oid)
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid
            JOIN pg_catalog.pg_class p ON p.oid = i.inhparent JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
            WHERE c.oid = $1 AND c.relispartition
            """, oidParameter)
        if !partitionOf.rows.isEmpty { definition.partitionOf = (partitionOf.text(0, 0), partitionOf.text(0, 1)) }
        if definition.isPartitioned {
            let leaves = try await connection.query("""
                SELECT pg_catalog.format('%I.%I', n.nspname, c.relname), c.relkind OPERATOR(pg_catalog.=) 'f'
                FROM pg_catalog.pg_partition_tree($1::pg_catalog.oid) t JOIN pg_catalog.pg_class c ON c.oid = t.relid
                JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE t.isleaf ORDER BY 1
                """, oidParameter)
            let foreign = leaves.rows.indices.filter { leaves.string($0, 1) == "t" }.map { leaves.text($0, 0) }
            if !foreign.isEmpty {
                definition.foreignLeaves = foreign
                definition.localLeaves = leaves.rows.indices.filter { leaves.string($0, 1) != "t" }.map { leaves.text($0, 0) }
            }
        }
        let triggerStates = try await connection.query("""
            SELECT t.tgname, t.tgenabled FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_trigger pt ON pt.oid = t.tgparentid
            WHERE t.tgrelid = $1 AND t.tgenabled <> pt.tgenabled ORDER BY t.tgname
            """, oidParameter)
        definition.inheritedTriggerStates = triggerStates.rows.indices.map { (triggerStates.text($0, 0), triggerStates.text($0, 1)) }
        definition.parents = parentRows.rows.indices.map { (parentRows.text($0, 0), parentRows.text($0, 1)) }
        // Every table it inherits from, partitioned parents too, nearest first: a clone's masks
        // for a parent cover the rows the parent shows, its children's and partitions' included.
        let ancestorRows = try await connection.query("""
            WITH RECURSIVE up(relid, depth) AS (
                SELECT i.inhparent, 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid = $1
                UNION
                SELECT i.inhparent, up.depth + 1 FROM pg_catalog.pg_inherits i JOIN up ON i.inhrelid = up.relid WHERE up.depth < 100
            )
            SELECT n.nspname, c.relname FROM up JOIN pg_catalog.pg_class c ON c.oid = up.relid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            GROUP BY n.nspname, c.relname ORDER BY pg_catalog.min(up.depth), 1, 2
            """, oidParameter)
        definition.ancestors = ancestorRows.rows.indices.map { (ancestorRows.text($0, 0), ancestorRows.text($0, 1)) }
        if definition.isPartitioned {
            // PostgreSQL makes every column the key uses (in an expression too) internally
            // dependent on the table itself.
            // Sub-partitioned partitions have keys of their own, whose bounds hold values too.
            let keyRows = try await connection.query("""
                WITH RECURSIVE tree(relid) AS (
                    SELECT $1::pg_catalog.oid
                    UNION ALL
                    SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN tree t ON i.inhparent OPERATOR(pg_catalog.=) t.relid
                )
                SELECT a.attname, pg_catalog.format('%I.%I', n.nspname, c.relname), pg_catalog.pg_get_partkeydef(c.oid),
                       c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid
                FROM tree
                JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) tree.relid AND c.relkind OPERATOR(pg_catalog.=) 'p'
                JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                JOIN pg_catalog.pg_depend d ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                  AND d.objid OPERATOR(pg_catalog.=) c.oid AND d.objsubid OPERATOR(pg_catalog.>) 0
                  AND d.refclassid OPERATOR(pg_catalog.=) d.classid AND d.refobjid OPERATOR(pg_catalog.=) d.objid
                  AND d.refobjsubid OPERATOR(pg_catalog.=) 0 AND d.deptype OPERATOR(pg_catalog.=) 'i'
                JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) d.objid AND a.attnum OPERATOR(pg_catalog.=) d.objsubid
                ORDER BY c.oid OPERATOR(pg_catalog.<>) $1::pg_catalog.oid, 2, a.attnum
                """, oidParameter)
            definition.partitionKeyColumns = keyRows.rows.indices.map {
                PartitionKeyColumn(column: keyRows.text($0, 0), partition: keyRows.text($0, 3) == "t" ? nil : keyRows.text($0, 1), key: keyRows.text($0, 2))
            }
        }
        definition.rowSecurity = info.string(0, 6) == "t"
        definition.privileges = Privileges(encoded: info.string(0, 9))
        definition.forceRowSecurity = info.string(0, 7) == "t"
        if let options = info.string(0, 8) {
            let list = try await connection.query("SELECT pg_catalog.unnest($1::pg_catalog.text[])", [options])
            definition.storageParameters = list.rows.indices.compactMap { list.string($0, 0) }
        }
        // The TOAST table's own parameters are the table's `toast.` ones.
        if let toast = info.string(0, 12), !toast.isEmpty {
            let list = try await connection.query("SELECT pg_catalog.unnest(pg_catalog.string_to_array($1, ','))", [toast])
            definition.storageParameters += list.rows.indices.compactMap { list.string($0, 0).map { "toast." + $0 } }
        }
        definition.replicaIdentity = info.string(0, 10) ?? "d"
        definition.replicaIdentityIndex = info.string(0, 11)
        let columnACLs = try await connection.query("""
            SELECT a.attname, \(Privileges.sqlEntries(acl: "a.attacl", owner: "c.relowner"))
            FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
            WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL
            ORDER BY a.attnum
            """, oidParameter)
        definition.columnPrivileges = columnACLs.rows.indices.map { (columnACLs.text($0, 0), Privileges(encoded: columnACLs.string($0, 1))) }
        let ruleRows = try await connection.query("""
            SELECT r.rulename, pg_catalog.pg_get_ruledef(r.oid), r.ev_enabled, pg_catalog.obj_description(r.oid, 'pg_rewrite')
            FROM pg_catalog.pg_rewrite r WHERE r.ev_class = $1 AND r.rulename <> '_RETURN' ORDER BY r.rulename
            """, oidParameter)
        definition.rules = ruleRows.rows.indices.map {
            Rule(name: ruleRows.text($0, 0), definition: ruleRows.text($0, 1), isEnabled: ruleRows.string($0, 2) ?? "O", comment: ruleRows.string($0, 3))
        }
        let policyRows = try await connection.query("""
            SELECT p.polname, p.polpermissive,
                   CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                   CASE WHEN p.polroles = '{0}' THEN NULL
                        ELSE (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(r.rolname), ', ' ORDER BY r.rolname) FROM pg_catalog.pg_roles r WHERE r.oid = ANY (p.polroles)) END,
                   pg_catalog.pg_get_expr(p.polqual, p.polrelid), pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid),
                   pg_catalog.obj_description(p.oid, 'pg_policy')
            FROM pg_catalog.pg_policy p WHERE p.polrelid = $1 ORDER BY p.polname
            """, oidParameter)
        definition.policies = policyRows.rows.indices.map { row in
            RowSecurityPolicy(name: policyRows.text(row, 0), isPermissive: policyRows.string(row, 1) == "t", command: policyRows.text(row, 2),
                              roles: policyRows.string(row, 3), using: policyRows.string(row, 4), withCheck: policyRows.string(row, 5),
                              comment: policyRows.string(row, 6))
        }
        let statisticsRows = try await connection.query("""
            SELECT s.stxname, pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(s.stxname), pg_catalog.pg_get_statisticsobjdef(s.oid),
                   pg_catalog.obj_description(s.oid, 'pg_statistic_ext'), NULLIF(s.stxstattarget, -1)
            FROM pg_catalog.pg_statistic_ext s JOIN pg_catalog.pg_namespace n ON n.oid = s.stxnamespace
            WHERE s.stxrelid = $1 ORDER BY s.stxname
            """, oidParameter)
        definition.statistics = statisticsRows.rows.indices.map {
            Statistics(name: statisticsRows.text($0, 0), printedName: statisticsRows.text($0, 1), definition: statisticsRows.text($0, 2),
                       comment: statisticsRows.string($0, 3), statisticsTarget: statisticsRows.string($0, 4).flatMap(Int.init))
        }
        return definition
    }
}
