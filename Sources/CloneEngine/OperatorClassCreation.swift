import PQ

extension CloneEngine {
    /// Makes the cloned schemas' encoding conversions, operator families, classes and the
    /// families' loose members, in the schema objects' transaction; returns the statements that
    /// undo what it made. Only a superuser makes classes and families: for another caller they
    /// are named in `summary`, and what uses them (an index) fails with the server's own error.
    static func createOperatorClassesAndConversions(_ objects: SchemaObjects, schemas: [String], conflict: CloneOptions.Conflict, on connection: PQConnection,
                                                    summary: inout SchemaCloneSummary) async throws -> [String] {
        var undo: [String] = []
        // A conversion, operator class or family already on the target with the same
        // definition is kept; another one is a conflict like a type's (round 43 N1: it
        // was kept silently, and indexes took the target's sort order).
        let schemaList = "{" + schemas.map { "\"" + $0.replacingQuotes() + "\"" }.joined(separator: ",") + "}"
        var targetKinds: [String: String]?
        func targetDefinition(_ object: SchemaObjects.Object) async throws -> String? {
            if targetKinds == nil {
                var found: [String: String] = [:]
                for other in try await SchemaObjects.operatorClasses(connection, list: schemaList) + (try await SchemaObjects.conversions(connection, list: schemaList)) {
                    found["\(other.kind)\u{0}\(other.qualifiedName)"] = other.ddl.first
                }
                targetKinds = found
            }
            return targetKinds?["\(object.kind)\u{0}\(object.qualifiedName)"]
        }
        func keepOrRefuse(_ object: SchemaObjects.Object, theirs: String?, ours: String?) throws {
            let named = "\(object.schema).\(object.name)" + (object.accessMethod.map { " USING \($0)" } ?? "")
            try Self.keepOrRefuse(object.kind, named, theirs: theirs, ours: ours, conflict: conflict, notes: &summary.notes)
        }
        for conversion in objects.conversions {
            let present = try await connection.query("""
                SELECT 1 FROM pg_catalog.pg_conversion c JOIN pg_catalog.pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = $1 AND c.conname = $2
                """, [conversion.schema, conversion.name])
            if !present.rows.isEmpty {
                try keepOrRefuse(conversion, theirs: try await targetDefinition(conversion), ours: conversion.ddl.first)
                continue
            }
            for statement in conversion.ddl { try await connection.execute(statement) }
            undo.append("DROP CONVERSION \(conversion.qualifiedName)")
        }
        var keptFamilies: Set<String> = []
        for object in objects.operatorClasses {
            let isClass = object.kind == "operator class"
            if object.kind == "operator family members" {
                // A family the target had already keeps its own members (compared with
                // the source's when the family was found there).
                guard !keptFamilies.contains(object.oid) else { continue }
                try await connection.execute(object.ddl[0])
                continue
            }
            let present = try await connection.query(isClass ? """
                SELECT 1 FROM pg_catalog.pg_opclass o JOIN pg_catalog.pg_namespace n ON n.oid = o.opcnamespace JOIN pg_catalog.pg_am am ON am.oid = o.opcmethod
                WHERE n.nspname = $1 AND o.opcname = $2 AND am.amname = $3
                """ : """
                SELECT 1 FROM pg_catalog.pg_opfamily o JOIN pg_catalog.pg_namespace n ON n.oid = o.opfnamespace JOIN pg_catalog.pg_am am ON am.oid = o.opfmethod
                WHERE n.nspname = $1 AND o.opfname = $2 AND am.amname = $3
                """, [object.schema, object.name, object.accessMethod ?? ""])
            if !present.rows.isEmpty {
                if isClass {
                    try keepOrRefuse(object, theirs: try await targetDefinition(object), ours: object.ddl.first)
                } else {
                    // A family is its loose members.
                    keptFamilies.insert(object.oid)
                    let members = SchemaObjects.Object(kind: "operator family members", schema: object.schema, name: object.name, oid: object.oid, ddl: [],
                                                       accessMethod: object.accessMethod)
                    let ours = objects.operatorClasses.first { $0.kind == "operator family members" && $0.oid == object.oid }?.ddl.first
                    try keepOrRefuse(object, theirs: try await targetDefinition(members), ours: ours)
                }
                continue
            }
            // Only a superuser makes these: another caller gets them named, and what uses
            // them (an index) then fails with the server's own error.
            if let error = try await connection.executeTolerating(["42501"], object.ddl) {
                if !isClass { keptFamilies.insert(object.oid) }
                summary.notes.append("\(object.kind) \(object.qualifiedName) not created: \(error.message)")
                continue
            }
            undo.append("DROP \(object.kind.uppercased()) \(object.qualifiedName)")
        }
        return undo
    }

    /// An object the target already has: the same definition is kept (and said); another one is
    /// a conflict like a table's: an error under `conflict: error`, else the target's is kept
    /// and the source's named (round 43 N1, 44f H1: operators, text search objects, casts).
    static func keepOrRefuse(_ kind: String, _ named: String, theirs: String?, ours: String?, conflict: CloneOptions.Conflict,
                             notes: inout [String]) throws {
        if theirs == ours {
            notes.append("\(kind) \(named) already exists on target with the same definition; kept")
        } else if conflict == .error {
            throw CloneError("42710", "\(kind) \(named) already exists on target with a different definition",
                             detail: "source: \(ours ?? "(none)")\ntarget: \(theirs ?? "(none)")",
                             hint: "Use the \"conflict\" option (skip keeps the target's), or change or drop it first.")
        } else {
            notes.append("\(kind) \(named) already exists on target with a different definition; kept the target's (source: \(ours ?? "(none)"))")
        }
    }

    /// An object's definition for comparison: its statements without the comments.
    static func definition(_ object: SchemaObjects.Object) -> String {
        object.ddl.filter { !$0.hasPrefix("COMMENT ON ") }.joined(separator: ";\n")
    }

    /// The target's text search objects, operators and casts of the cloned schemas, by kind and
    /// name, as `definition` gives them.
    static func targetDefinitions(_ connection: PQConnection, schemas: [String]) async throws -> [String: String] {
        let list = "{" + schemas.map { "\"" + $0.replacingQuotes() + "\"" }.joined(separator: ",") + "}"
        var found: [String: String] = [:]
        for object in try await SchemaObjects.textSearchObjects(connection, list: list).objects + (try await SchemaObjects.operators(connection, list: list)) {
            found["\(object.kind)\u{0}\(object.schema).\(object.name)"] = definition(object)
        }
        for cast in try await SchemaObjects.casts(connection, list: list) {
            found["cast\u{0}\(cast.object.name)"] = definition(cast.object)
        }
        return found
    }
}
