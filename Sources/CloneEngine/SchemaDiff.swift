import JSON
import PQ

/// What differs between two databases' definitions, by category: objects only in the source,
/// only in the target, and in both but defined differently (for tables: per column). Read-only
/// on both sides; definitions come from the servers' own deparsers (pg_get_indexdef,
/// pg_get_constraintdef, pg_get_viewdef, pg_get_functiondef...) run with an empty search_path,
/// so names compare schema-qualified.
struct SchemaDiff {
    /// One side's objects: category → name → definition.
    typealias Catalog = [String: [String: String]]

    struct Modified: Sendable, Equatable {
        var name: String
        var changes: [String]
    }

    struct Category: Sendable, Equatable {
        var onlyInSource: [String] = []
        var onlyInTarget: [String] = []
        var modified: [Modified] = []
        var isEmpty: Bool { onlyInSource.isEmpty && onlyInTarget.isEmpty && modified.isEmpty }
    }

    static let categories = ["tables", "indexes", "constraints", "triggers", "views", "materialized_views", "sequences",
                             "functions", "types", "extensions", "privileges"]

    /// The schemas compared: `$1` names one, or NULL for every user schema.
    static let schemaFilter = """
        n.nspname OPERATOR(pg_catalog.!~) '^pg_' AND n.nspname OPERATOR(pg_catalog.<>) ALL ('{information_schema,pgclone,pgclone_masked}')
        AND ($1::pg_catalog.text IS NULL OR n.nspname OPERATOR(pg_catalog.=) $1)
        """

    static func notExtensionMember(_ classID: String, _ objectID: String) -> String {
        """
        NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid OPERATOR(pg_catalog.=) '\(classID)'::pg_catalog.regclass
                    AND d.objid OPERATOR(pg_catalog.=) \(objectID) AND d.deptype OPERATOR(pg_catalog.=) 'e')
        """
    }

    /// (category, name, definition) rows of one side.
    static let catalogQuery = """
        SELECT 'tables', pg_catalog.format('%I.%I', n.nspname, c.relname),
               pg_catalog.string_agg(pg_catalog.format('%I %s%s%s%s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
                   CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
                   CASE WHEN ad.adbin IS NOT NULL THEN ' DEFAULT ' OPERATOR(pg_catalog.||) pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) ELSE '' END,
                   CASE WHEN a.attcollation OPERATOR(pg_catalog.<>) 0 AND a.attcollation OPERATOR(pg_catalog.<>) t.typcollation
                        THEN ' COLLATE ' OPERATOR(pg_catalog.||) (SELECT pg_catalog.format('%I.%I', cn.nspname, co.collname) FROM pg_catalog.pg_collation co
                             JOIN pg_catalog.pg_namespace cn ON cn.oid OPERATOR(pg_catalog.=) co.collnamespace WHERE co.oid OPERATOR(pg_catalog.=) a.attcollation)
                        ELSE '' END), E'\\n' ORDER BY a.attnum)
               -- Table-level properties, on a line of their own.
               OPERATOR(pg_catalog.||) E'\\n-- ' OPERATOR(pg_catalog.||) pg_catalog.concat_ws('; ',
                   CASE WHEN c.relpersistence OPERATOR(pg_catalog.=) 'u' THEN 'unlogged' END,
                   CASE WHEN c.reloftype OPERATOR(pg_catalog.<>) 0 THEN 'of ' OPERATOR(pg_catalog.||) pg_catalog.format_type(c.reloftype, NULL) END,
                   'with (' OPERATOR(pg_catalog.||) pg_catalog.array_to_string(c.reloptions, ', ') OPERATOR(pg_catalog.||) ')',
                   'toast with (' OPERATOR(pg_catalog.||) (SELECT pg_catalog.array_to_string(tt.reloptions, ', ') FROM pg_catalog.pg_class tt WHERE tt.oid OPERATOR(pg_catalog.=) c.reltoastrelid) OPERATOR(pg_catalog.||) ')',
                   'replica identity ' OPERATOR(pg_catalog.||) CASE c.relreplident WHEN 'f' THEN 'full' WHEN 'n' THEN 'nothing'
                       WHEN 'i' THEN 'index ' OPERATOR(pg_catalog.||) (SELECT pg_catalog.quote_ident(ri.relname) FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class ri ON ri.oid OPERATOR(pg_catalog.=) x.indexrelid
                                                                      WHERE x.indrelid OPERATOR(pg_catalog.=) c.oid AND x.indisreplident) END,
                   CASE WHEN c.relrowsecurity THEN 'row security' OPERATOR(pg_catalog.||) CASE WHEN c.relforcerowsecurity THEN ' forced' ELSE '' END END,
                   (SELECT 'rules ' OPERATOR(pg_catalog.||) pg_catalog.string_agg(pg_catalog.pg_get_ruledef(r.oid) OPERATOR(pg_catalog.||) CASE r.ev_enabled WHEN 'D' THEN ' (disabled)' WHEN 'R' THEN ' (replica)' WHEN 'A' THEN ' (always)' ELSE '' END, ' ' ORDER BY r.rulename)
                    FROM pg_catalog.pg_rewrite r WHERE r.ev_class OPERATOR(pg_catalog.=) c.oid),
                   (SELECT 'statistics ' OPERATOR(pg_catalog.||) pg_catalog.string_agg(pg_catalog.pg_get_statisticsobjdef(st.oid), ', ' ORDER BY st.stxname)
                    FROM pg_catalog.pg_statistic_ext st WHERE st.stxrelid OPERATOR(pg_catalog.=) c.oid))
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
        JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
        JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid
        LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid OPERATOR(pg_catalog.=) c.oid AND ad.adnum OPERATOR(pg_catalog.=) a.attnum
        WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,f}') AND \(schemaFilter) AND \(notExtensionMember("pg_catalog.pg_class", "c.oid"))
        GROUP BY n.nspname, c.relname, c.oid
        UNION ALL
        SELECT 'indexes', pg_catalog.format('%I.%I', n.nspname, c.relname), pg_catalog.pg_get_indexdef(c.oid)
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
        WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{i,I}') AND \(schemaFilter) AND \(notExtensionMember("pg_catalog.pg_class", "c.oid"))
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conindid OPERATOR(pg_catalog.=) c.oid AND k.contype OPERATOR(pg_catalog.=) ANY ('{p,u,x}'))
        UNION ALL
        SELECT 'constraints', pg_catalog.format('%I.%I.%I', n.nspname, c.relname, k.conname), pg_catalog.pg_get_constraintdef(k.oid)
        FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) k.conrelid
        JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
        WHERE \(schemaFilter) AND \(notExtensionMember("pg_catalog.pg_class", "c.oid"))
        UNION ALL
        SELECT 'triggers', pg_catalog.format('%I.%I.%I', n.nspname, c.relname, tg.tgname),
               pg_catalog.pg_get_triggerdef(tg.oid) OPERATOR(pg_catalog.||) CASE tg.tgenabled WHEN 'D' THEN ' (disabled)' WHEN 'R' THEN ' (replica)' WHEN 'A' THEN ' (always)' ELSE '' END
        FROM pg_catalog.pg_trigger tg JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) tg.tgrelid
        JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
        WHERE NOT tg.tgisinternal AND \(schemaFilter)
        UNION ALL
        SELECT CASE c.relkind WHEN 'v' THEN 'views' ELSE 'materialized_views' END, pg_catalog.format('%I.%I', n.nspname, c.relname),
               COALESCE('with (' OPERATOR(pg_catalog.||) pg_catalog.array_to_string(c.reloptions, ', ') OPERATOR(pg_catalog.||) ') ', '')
               OPERATOR(pg_catalog.||) CASE WHEN NOT c.relispopulated THEN '(not populated) ' ELSE '' END
               OPERATOR(pg_catalog.||) pg_catalog.pg_get_viewdef(c.oid)
               OPERATOR(pg_catalog.||) COALESCE((SELECT ' ' OPERATOR(pg_catalog.||) pg_catalog.string_agg(pg_catalog.pg_get_ruledef(r.oid), ' ' ORDER BY r.rulename)
                                                 FROM pg_catalog.pg_rewrite r WHERE r.ev_class OPERATOR(pg_catalog.=) c.oid AND r.rulename OPERATOR(pg_catalog.<>) '_RETURN'), '')
               OPERATOR(pg_catalog.||) COALESCE((SELECT ' defaults ' OPERATOR(pg_catalog.||) pg_catalog.string_agg(pg_catalog.format('%I = %s', va.attname, pg_catalog.pg_get_expr(vd.adbin, vd.adrelid)), ', ' ORDER BY va.attnum)
                                                 FROM pg_catalog.pg_attrdef vd JOIN pg_catalog.pg_attribute va ON va.attrelid OPERATOR(pg_catalog.=) vd.adrelid AND va.attnum OPERATOR(pg_catalog.=) vd.adnum
                                                 WHERE vd.adrelid OPERATOR(pg_catalog.=) c.oid), '')
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
        WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{v,m}') AND \(schemaFilter) AND \(notExtensionMember("pg_catalog.pg_class", "c.oid"))
        UNION ALL
        SELECT 'sequences', pg_catalog.format('%I.%I', s.schemaname, s.sequencename),
               pg_catalog.format('%s start %s increment %s min %s max %s%s; last value %s', s.data_type, s.start_value, s.increment_by,
                   s.min_value, s.max_value, CASE WHEN s.cycle THEN ' cycle' ELSE '' END, COALESCE(s.last_value::pg_catalog.text, 'none'))
        FROM pg_catalog.pg_sequences s JOIN pg_catalog.pg_namespace n ON n.nspname OPERATOR(pg_catalog.=) s.schemaname
        WHERE \(schemaFilter)
        UNION ALL
        SELECT 'functions', pg_catalog.format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)),
               CASE WHEN p.prokind OPERATOR(pg_catalog.=) 'a' THEN
                 (SELECT pg_catalog.concat_ws(', ', CASE ag.aggkind WHEN 'o' THEN 'ordered-set ' WHEN 'h' THEN 'hypothetical-set ' ELSE '' END
                          OPERATOR(pg_catalog.||) 'aggregate sfunc ' OPERATOR(pg_catalog.||) ag.aggtransfn::pg_catalog.text, 'stype ' OPERATOR(pg_catalog.||) pg_catalog.format_type(ag.aggtranstype, NULL),
                          'initcond ' OPERATOR(pg_catalog.||) ag.agginitval, CASE WHEN ag.aggfinalfn OPERATOR(pg_catalog.<>) 0 THEN 'finalfunc ' OPERATOR(pg_catalog.||) ag.aggfinalfn::pg_catalog.text END,
                          CASE WHEN ag.aggcombinefn OPERATOR(pg_catalog.<>) 0 THEN 'combinefunc ' OPERATOR(pg_catalog.||) ag.aggcombinefn::pg_catalog.text END,
                          CASE WHEN ag.aggmtransfn OPERATOR(pg_catalog.<>) 0 THEN 'msfunc ' OPERATOR(pg_catalog.||) ag.aggmtransfn::pg_catalog.text OPERATOR(pg_catalog.||) ', minvfunc '
                               OPERATOR(pg_catalog.||) ag.aggminvtransfn::pg_catalog.text OPERATOR(pg_catalog.||) ', mstype ' OPERATOR(pg_catalog.||) pg_catalog.format_type(ag.aggmtranstype, NULL) END,
                          'minitcond ' OPERATOR(pg_catalog.||) ag.aggminitval,
                          CASE WHEN ag.aggsortop OPERATOR(pg_catalog.<>) 0 THEN 'sortop ' OPERATOR(pg_catalog.||) ag.aggsortop::pg_catalog.regoperator::pg_catalog.text END)
                  FROM pg_catalog.pg_aggregate ag WHERE ag.aggfnoid OPERATOR(pg_catalog.=) p.oid)
               ELSE pg_catalog.pg_get_functiondef(p.oid) END
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
        WHERE \(schemaFilter) AND \(notExtensionMember("pg_catalog.pg_proc", "p.oid"))
        UNION ALL
        SELECT 'types', pg_catalog.format('%I.%I', n.nspname, t.typname),
               CASE t.typtype
                 WHEN 'e' THEN 'enum (' OPERATOR(pg_catalog.||) (SELECT pg_catalog.string_agg(pg_catalog.quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                                                              FROM pg_catalog.pg_enum e WHERE e.enumtypid OPERATOR(pg_catalog.=) t.oid) OPERATOR(pg_catalog.||) ')'
                 WHEN 'd' THEN 'domain over ' OPERATOR(pg_catalog.||) pg_catalog.format_type(t.typbasetype, t.typtypmod)
                     OPERATOR(pg_catalog.||) CASE WHEN t.typcollation OPERATOR(pg_catalog.<>) (SELECT b.typcollation FROM pg_catalog.pg_type b WHERE b.oid OPERATOR(pg_catalog.=) t.typbasetype)
                                                  THEN ' collate ' OPERATOR(pg_catalog.||) t.typcollation::pg_catalog.regcollation::pg_catalog.text ELSE '' END
                     OPERATOR(pg_catalog.||) CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
                     OPERATOR(pg_catalog.||) COALESCE((SELECT pg_catalog.string_agg(' ' OPERATOR(pg_catalog.||) pg_catalog.pg_get_constraintdef(k.oid), '' ORDER BY k.conname)
                                                       FROM pg_catalog.pg_constraint k WHERE k.contypid OPERATOR(pg_catalog.=) t.oid), '')
                 WHEN 'r' THEN 'range of ' OPERATOR(pg_catalog.||) (SELECT pg_catalog.format_type(r.rngsubtype, NULL) FROM pg_catalog.pg_range r
                                                                  WHERE r.rngtypid OPERATOR(pg_catalog.=) t.oid)
                 ELSE 'composite (' OPERATOR(pg_catalog.||) COALESCE((SELECT pg_catalog.string_agg(pg_catalog.format('%I %s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum)
                                                     FROM pg_catalog.pg_attribute a WHERE a.attrelid OPERATOR(pg_catalog.=) t.typrelid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped), '') OPERATOR(pg_catalog.||) ')'
               END
        FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) t.typnamespace
        WHERE (t.typtype OPERATOR(pg_catalog.=) ANY ('{e,d,r}')
               OR (t.typtype OPERATOR(pg_catalog.=) 'c' AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) t.typrelid) OPERATOR(pg_catalog.=) 'c'))
          AND \(schemaFilter) AND \(notExtensionMember("pg_catalog.pg_type", "t.oid"))
        UNION ALL
        SELECT 'extensions', e.extname::pg_catalog.text, 'version ' OPERATOR(pg_catalog.||) e.extversion FROM pg_catalog.pg_extension e
        WHERE e.extname OPERATOR(pg_catalog.<>) 'plpgsql'
        UNION ALL
        SELECT 'privileges', pg_catalog.format('%s %I.%I to %s', CASE c.relkind WHEN 'S' THEN 'sequence' ELSE 'table' END, n.nspname, c.relname,
                   CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END),
               pg_catalog.string_agg(a.privilege_type OPERATOR(pg_catalog.||) CASE WHEN a.is_grantable THEN ' with grant option' ELSE '' END, ', ' ORDER BY a.privilege_type)
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace, pg_catalog.aclexplode(c.relacl) a
        WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,v,m,f,S}') AND a.grantee OPERATOR(pg_catalog.<>) c.relowner AND \(schemaFilter)
        GROUP BY c.relkind, n.nspname, c.relname, a.grantee
        UNION ALL
        SELECT 'privileges', pg_catalog.format('column %I.%I.%I to %s', n.nspname, c.relname, at.attname,
                   CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END),
               pg_catalog.string_agg(a.privilege_type OPERATOR(pg_catalog.||) CASE WHEN a.is_grantable THEN ' with grant option' ELSE '' END, ', ' ORDER BY a.privilege_type)
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
        JOIN pg_catalog.pg_attribute at ON at.attrelid OPERATOR(pg_catalog.=) c.oid AND at.attnum OPERATOR(pg_catalog.>) 0 AND NOT at.attisdropped,
             pg_catalog.aclexplode(at.attacl) a
        WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,v,m,f}') AND a.grantee OPERATOR(pg_catalog.<>) c.relowner AND \(schemaFilter)
        GROUP BY n.nspname, c.relname, at.attname, a.grantee
        UNION ALL
        SELECT 'privileges', pg_catalog.format('schema %I to %s', n.nspname,
                   CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END),
               pg_catalog.string_agg(a.privilege_type OPERATOR(pg_catalog.||) CASE WHEN a.is_grantable THEN ' with grant option' ELSE '' END, ', ' ORDER BY a.privilege_type)
        FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a
        WHERE a.grantee OPERATOR(pg_catalog.<>) n.nspowner AND \(schemaFilter)
        GROUP BY n.nspname, a.grantee
        """

    static func catalog(_ result: PQResult) -> Catalog {
        var catalog: Catalog = [:]
        for row in result.rows.indices {
            guard let category = result.string(row, 0), let name = result.string(row, 1) else { continue }
            catalog[category, default: [:]][name] = result.string(row, 2) ?? ""
        }
        return catalog
    }

    /// Reads both sides at once, each in one read-only snapshot.
    static func read(source: PQConnection, target: PQConnection, schema: String?) async throws -> (Catalog, Catalog) {
        try await target.exec("SET search_path = ''; " + PortableSettings.sql)
        try await target.exec("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        async let mine = source.query(catalogQuery, [schema])
        async let theirs = target.query(catalogQuery, [schema])
        let result = (catalog(try await mine), catalog(try await theirs))
        try await target.exec("COMMIT")
        return result
    }

    /// The differences, category by category (every category present, empty or not).
    static func compare(_ source: Catalog, _ target: Catalog) -> [(String, Category)] {
        categories.map { name in
            let mine = source[name] ?? [:], theirs = target[name] ?? [:]
            var category = Category()
            category.onlyInSource = mine.keys.filter { theirs[$0] == nil }.sorted()
            category.onlyInTarget = theirs.keys.filter { mine[$0] == nil }.sorted()
            for key in mine.keys.sorted() {
                guard let other = theirs[key], let definition = mine[key], other != definition else { continue }
                let changes = name == "tables" ? columnChanges(definition, other) : ["source: \(definition)", "target: \(other)"]
                category.modified.append(Modified(name: key, changes: changes))
            }
            return (name, category)
        }
    }

    /// Column by column: added, removed, or changed (type, nullability, default, collation).
    static func columnChanges(_ source: String, _ target: String) -> [String] {
        func properties(_ text: String) -> String {
            text.split(separator: "\n").first { $0.hasPrefix("-- ") }.map { String($0.dropFirst(3)) } ?? ""
        }
        func columns(_ text: String) -> [(name: String, definition: String)] {
            text.split(separator: "\n").filter { !$0.hasPrefix("-- ") }.map { line in
                let text = String(line)
                let name = SQLNameSplit.leadingIdentifier(text)
                return (name, String(text.dropFirst(name.count)).trimmingSpaces())
            }
        }
        let mine = columns(source), theirs = columns(target)
        var changes: [String] = []
        for column in mine {
            if let other = theirs.first(where: { $0.name == column.name }) {
                if other.definition != column.definition { changes.append("column \(column.name): \(column.definition) on source, \(other.definition) on target") }
            } else {
                changes.append("column \(column.name) only in source (\(column.definition))")
            }
        }
        for column in theirs where !mine.contains(where: { $0.name == column.name }) {
            changes.append("column \(column.name) only in target (\(column.definition))")
        }
        let (mineProperties, theirProperties) = (properties(source), properties(target))
        if mineProperties != theirProperties {
            changes.append("table: \(mineProperties.isEmpty ? "(defaults)" : mineProperties) on source, \(theirProperties.isEmpty ? "(defaults)" : theirProperties) on target")
        }
        if changes.isEmpty { changes.append("column order differs") }
        return changes
    }

    /// The differences as JSON: `{"constraints": {"modified": [{"changes": [...], "name": ...}],
    /// "only_in_source": [...], "only_in_target": [...]}, ...}` (keys sorted).
    static func json(_ differences: [(String, Category)]) -> String {
        func list(_ items: [String]) -> JSONNode { .array(items.map(JSONNode.string)) }
        var fields: [String: JSONNode] = [:]
        for (name, category) in differences {
            fields[name] = .object([
                "only_in_source": list(category.onlyInSource),
                "only_in_target": list(category.onlyInTarget),
                "modified": .array(category.modified.map { .object(["name": .string($0.name), "changes": list($0.changes)]) }),
            ])
        }
        return JSONNode.object(fields).text
    }

    /// A readable listing (the CLI's output): one line per difference, `=` when there is none.
    static func listing(_ differences: [(String, Category)]) -> String {
        var lines: [String] = []
        for (name, category) in differences where !category.isEmpty {
            lines.append("\(name):")
            for item in category.onlyInSource { lines.append("  - \(item)  (only in source)") }
            for item in category.onlyInTarget { lines.append("  + \(item)  (only in target)") }
            for item in category.modified {
                lines.append("  ~ \(item.name)")
                for change in item.changes { lines.append("      \(change.replacingNewlines())") }
            }
        }
        return lines.isEmpty ? "= no differences\n" : lines.joined(separator: "\n") + "\n"
    }
}

/// The leading (possibly double-quoted) identifier of `name type...`.
enum SQLNameSplit {
    static func leadingIdentifier(_ text: String) -> String {
        guard text.first == "\"" else { return String(text.prefix { $0 != " " }) }
        var out = "\""
        var characters = text.dropFirst()[...]
        while let character = characters.popFirst() {
            out.append(character)
            if character == "\"" {
                if characters.first == "\"" { out.append(characters.removeFirst()) } else { break }
            }
        }
        return out
    }
}

extension String {
    func replacingNewlines() -> String {
        String(map { $0 == "\n" ? " " : $0 })
    }
}
