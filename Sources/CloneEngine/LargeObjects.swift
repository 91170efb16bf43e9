import PQ

/// The large objects of a database, for database clones (pg_dump includes them in a
/// whole-database dump). They keep their OIDs, since tables refer to them by OID.
enum LargeObjects {
    /// Bytes read and written per call: a large object is never held whole in memory.
    static let chunkSize = 1 << 20

    /// Copies every large object `source` can see (in its snapshot) to `target`, each in one
    /// target transaction with its comment and grants. Returns how many were copied.
    static func copy(from source: PQConnection, to target: PQConnection, conflict: CloneOptions.Conflict,
                     notes: inout [String]) async throws -> Int {
        let list = try await source.exec("""
            SELECT m.oid, pg_catalog.obj_description(m.oid, 'pg_largeobject'), \(Privileges.sqlEntries(acl: "m.lomacl", owner: "m.lomowner"))
            FROM pg_catalog.pg_largeobject_metadata m ORDER BY m.oid
            """)
        var copied = 0
        for row in list.rows.indices {
            guard let oid = list.string(row, 0), !oid.isEmpty, oid.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { continue }
            try await target.execute("BEGIN")
            do {
                let exists = try await target.query("SELECT 1 FROM pg_catalog.pg_largeobject_metadata WHERE oid = $1::pg_catalog.oid", [oid])
                if !exists.rows.isEmpty {
                    switch conflict {
                    case .error:
                        throw CloneError("42710", "large object \(oid) already exists on target",
                                         hint: "Use the \"conflict\" option (skip or replace), or unlink it first.")
                    case .skip:
                        try await target.execute("ROLLBACK")
                        notes.append("large object \(oid) already exists on target; kept")
                        continue
                    case .replace, .rename:
                        try await target.query("SELECT pg_catalog.lo_unlink($1::pg_catalog.oid)", [oid])
                    }
                }
                try await target.query("SELECT pg_catalog.lo_create($1::pg_catalog.oid)", [oid])
                var offset = 0
                while true {
                    // bytea travels as \x hex text and goes back in as a bytea parameter unchanged.
                    let chunk = try await source.query("SELECT pg_catalog.lo_get($1::pg_catalog.oid, $2::pg_catalog.int8, $3::pg_catalog.int4)",
                                                       [oid, String(offset), String(chunkSize)])
                    guard let hex = chunk.string(0, 0), hex.hasPrefix("\\x") else {
                        throw CloneError("XX000", "large object \(oid): unexpected data from the source")
                    }
                    let length = (hex.utf8.count - 2) / 2
                    if length == 0 { break }
                    try await target.query("SELECT pg_catalog.lo_put($1::pg_catalog.oid, $2::pg_catalog.int8, $3::pg_catalog.bytea)",
                                           [oid, String(offset), hex])
                    offset += length
                    if length < chunkSize { break }
                }
                if let comment = list.string(row, 1) {
                    try await target.execute("COMMENT ON LARGE OBJECT \(oid) IS \(SQL.literal(comment))")
                }
                try await Privileges.apply(Privileges(encoded: list.string(row, 2)).statements(on: "LARGE OBJECT \(oid)"), on: target, notes: &notes)
                try await target.execute("COMMIT")
                copied += 1
            } catch {
                _ = try? await target.execute("ROLLBACK")
                throw error
            }
        }
        return copied
    }
}
