import PQ

/// The privileges some roles hold on the source's schemas, tables, columns, sequences and
/// functions, and their default privileges, granted again on the objects of the same names
/// that exist on the target (objects that do not exist there are skipped, with a note).
///
/// Names from the source are quoted here, never taken as SQL; a function's signature is
/// rendered by the target itself, and privilege words must be ones PostgreSQL knows.
struct ObjectGrants {
    let source: PQConnection
    let target: PQConnection

    static let privilegeWords: Set<String> = [
        "SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "USAGE", "CREATE", "EXECUTE",
    ]

    /// One ACL entry of the source: `kind` SCHEMA, TABLE, SEQUENCE, COLUMN, FUNCTION or DEFAULT.
    struct Entry: Sendable, Equatable {
        var kind: String
        var schema: String?
        var name: String?
        /// The column (COLUMN), the identity arguments (FUNCTION), or the owner (DEFAULT).
        var detail: String?
        /// For DEFAULT: the object type letter (r, S, f, T, n).
        var objectType: String?
        var privilege: String
        var grantable: Bool
        var grantee: String
    }

    static let entriesQuery = """
        WITH roles AS (SELECT r.oid, r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])),
        spaces AS (SELECT n.oid, n.nspname, n.nspacl FROM pg_catalog.pg_namespace n
                   WHERE n.nspname OPERATOR(pg_catalog.!~) '^pg_' AND n.nspname OPERATOR(pg_catalog.<>) 'information_schema')
        SELECT 'SCHEMA', s.nspname::pg_catalog.text, NULL, NULL, NULL, a.privilege_type, a.is_grantable, r.rolname::pg_catalog.text
        FROM spaces s, pg_catalog.aclexplode(s.nspacl) a JOIN roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee
        UNION ALL
        SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, s.nspname::pg_catalog.text, c.relname::pg_catalog.text, NULL, NULL,
               a.privilege_type, a.is_grantable, r.rolname::pg_catalog.text
        FROM pg_catalog.pg_class c JOIN spaces s ON s.oid OPERATOR(pg_catalog.=) c.relnamespace, pg_catalog.aclexplode(c.relacl) a
        JOIN roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee
        WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,v,m,f,S}')
        UNION ALL
        SELECT 'COLUMN', s.nspname::pg_catalog.text, c.relname::pg_catalog.text, att.attname::pg_catalog.text, NULL,
               a.privilege_type, a.is_grantable, r.rolname::pg_catalog.text
        FROM pg_catalog.pg_attribute att JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) att.attrelid
        JOIN spaces s ON s.oid OPERATOR(pg_catalog.=) c.relnamespace, pg_catalog.aclexplode(att.attacl) a
        JOIN roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee
        WHERE att.attnum OPERATOR(pg_catalog.>) 0 AND NOT att.attisdropped
        UNION ALL
        SELECT 'FUNCTION', s.nspname::pg_catalog.text, p.proname::pg_catalog.text, pg_catalog.pg_get_function_identity_arguments(p.oid), NULL,
               a.privilege_type, a.is_grantable, r.rolname::pg_catalog.text
        FROM pg_catalog.pg_proc p JOIN spaces s ON s.oid OPERATOR(pg_catalog.=) p.pronamespace, pg_catalog.aclexplode(p.proacl) a
        JOIN roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee
        UNION ALL
        SELECT 'DEFAULT', s.nspname::pg_catalog.text, NULL, o.rolname::pg_catalog.text, d.defaclobjtype::pg_catalog.text,
               a.privilege_type, a.is_grantable, r.rolname::pg_catalog.text
        FROM pg_catalog.pg_default_acl d JOIN pg_catalog.pg_roles o ON o.oid OPERATOR(pg_catalog.=) d.defaclrole
        LEFT JOIN pg_catalog.pg_namespace s ON s.oid OPERATOR(pg_catalog.=) d.defaclnamespace, pg_catalog.aclexplode(d.defaclacl) a
        JOIN roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee
        ORDER BY 1, 2, 3, 4, 6, 8
        """

    static func entries(in result: PQResult) -> [Entry] {
        result.rows.indices.map { row in
            Entry(kind: result.string(row, 0) ?? "", schema: result.string(row, 1), name: result.string(row, 2), detail: result.string(row, 3),
                  objectType: result.string(row, 4), privilege: result.string(row, 5) ?? "", grantable: result.string(row, 6) == "t",
                  grantee: result.string(row, 7) ?? "")
        }
    }

    /// The object words of ALTER DEFAULT PRIVILEGES by pg_default_acl's type letter.
    static let defaultObjectWords = ["r": "TABLES", "S": "SEQUENCES", "f": "FUNCTIONS", "T": "TYPES", "n": "SCHEMAS"]

    /// Grants what `roles` hold on the source where the target lacks it; returns how many.
    func apply(to roles: [String], notes: inout [String]) async throws -> Int {
        guard !roles.isEmpty else { return 0 }
        let wanted = Self.entries(in: try await source.query(Self.entriesQuery, [SQL.textArray(roles)]))
        var present: [String: Bool] = [:]
        for entry in Self.entries(in: try await target.query(Self.entriesQuery, [SQL.textArray(roles)])) {
            present[Self.key(entry), default: false] = present[Self.key(entry), default: false] || entry.grantable
        }
        var applied = 0
        var missing: Set<String> = []
        var functionSignatures: [String: String?] = [:]
        let owners = Set(roles)
        // (The default privileges of these roles' own are made whole by DefaultPrivileges.)
        for entry in wanted where Self.privilegeWords.contains(entry.privilege) && !(entry.kind == "DEFAULT" && owners.contains(entry.detail ?? "")) {
            if let grantable = present[Self.key(entry)], grantable || !entry.grantable { continue }
            let option = entry.grantable ? " WITH GRANT OPTION" : ""
            let grantee = SQL.identifier(entry.grantee)
            var statement: String?
            switch entry.kind {
            case "SCHEMA":
                guard let schema = entry.schema else { continue }
                if try await exists("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) $1", [schema]) {
                    statement = "GRANT \(entry.privilege) ON SCHEMA \(SQL.identifier(schema)) TO \(grantee)\(option)"
                } else {
                    missing.insert("schema \(schema)")
                }
            case "TABLE", "SEQUENCE", "COLUMN":
                guard let schema = entry.schema, let name = entry.name else { continue }
                let found = try await target.query("""
                    SELECT c.relkind::pg_catalog.text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                    WHERE n.nspname OPERATOR(pg_catalog.=) $1 AND c.relname OPERATOR(pg_catalog.=) $2
                    """, [schema, name]).string(0, 0)
                guard let relkind = found, (relkind == "S") == (entry.kind == "SEQUENCE") || entry.kind == "COLUMN" else {
                    missing.insert("\(entry.kind == "SEQUENCE" ? "sequence" : "table") \(schema).\(name)")
                    continue
                }
                if entry.kind == "COLUMN", let column = entry.detail {
                    guard try await exists("""
                        SELECT 1 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.attrelid
                        JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                        WHERE n.nspname OPERATOR(pg_catalog.=) $1 AND c.relname OPERATOR(pg_catalog.=) $2 AND a.attname OPERATOR(pg_catalog.=) $3 AND NOT a.attisdropped
                        """, [schema, name, column]) else {
                        missing.insert("column \(schema).\(name).\(column)")
                        continue
                    }
                    statement = "GRANT \(entry.privilege) (\(SQL.identifier(column))) ON TABLE \(SQL.qualified(schema, name)) TO \(grantee)\(option)"
                } else {
                    statement = "GRANT \(entry.privilege) ON \(relkind == "S" ? "SEQUENCE" : "TABLE") \(SQL.qualified(schema, name)) TO \(grantee)\(option)"
                }
            case "FUNCTION":
                guard let schema = entry.schema, let name = entry.name, let arguments = entry.detail else { continue }
                let signature = "\(SQL.qualified(schema, name))(\(arguments))"
                if functionSignatures[signature] == nil {
                    // The target names the function itself (the source's text is only looked up).
                    functionSignatures[signature] = try await target.query("""
                        SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE ' ELSE 'FUNCTION ' END OPERATOR(pg_catalog.||) p.oid::pg_catalog.regprocedure::pg_catalog.text
                        FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) pg_catalog.to_regprocedure($1)
                        """, [signature]).string(0, 0)
                }
                guard case .some(.some(let object)) = functionSignatures[signature] else {
                    missing.insert("function \(schema).\(name)(\(arguments))")
                    continue
                }
                statement = "GRANT \(entry.privilege) ON \(object) TO \(grantee)\(option)"
            case "DEFAULT":
                guard let owner = entry.detail, let type = entry.objectType, let words = Self.defaultObjectWords[type] else { continue }
                guard try await exists("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) $1", [owner]) else {
                    missing.insert("role \(owner) (default privileges)")
                    continue
                }
                var scope = ""
                if let schema = entry.schema {
                    guard try await exists("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) $1", [schema]) else {
                        missing.insert("schema \(schema)")
                        continue
                    }
                    scope = " IN SCHEMA \(SQL.identifier(schema))"
                }
                statement = "ALTER DEFAULT PRIVILEGES FOR ROLE \(SQL.identifier(owner))\(scope) GRANT \(entry.privilege) ON \(words) TO \(grantee)\(option)"
            default:
                continue
            }
            if let statement {
                try await target.execute(statement)
                applied += 1
            }
        }
        if !missing.isEmpty {
            let list = missing.sorted()
            notes.append("privileges on objects that do not exist on the target were skipped (\(list.count)): \(list.prefix(10).joined(separator: ", "))\(list.count > 10 ? ", ..." : "")")
        }
        return applied
    }

    static func key(_ entry: Entry) -> String {
        [entry.kind, entry.schema ?? "", entry.name ?? "", entry.detail ?? "", entry.objectType ?? "", entry.privilege, entry.grantee]
            .joined(separator: "\u{0}")
    }

    private func exists(_ sql: String, _ parameters: [String?]) async throws -> Bool {
        !(try await target.query(sql, parameters).rows.isEmpty)
    }
}
