/// The built-in (pg_catalog) functions a masked role may not call: they run SQL text given as
/// a value, or read what no statement names (server files, large objects). The rewriter only
/// sees what a statement names, so what these functions read would not be masked. Every other
/// built-in is allowed; user and extension functions are judged by `MaskingContext` (who they
/// run as, and whether the server backs every policy up).
///
/// An integration test checks this list against the server's pg_proc: every name exists, and
/// every function implemented by a C routine that runs queries or reads files or large objects
/// is here.
enum FunctionsBeyondTheRewrite {
    /// Name → the argument count that reaches beyond (nil: any count).
    static let names: [String: Int?] = [
        // Run the query given as text (or read a cursor, a table, a schema, a database).
        "query_to_xml": nil, "query_to_xmlschema": nil, "query_to_xml_and_xmlschema": nil,
        "cursor_to_xml": nil, "cursor_to_xmlschema": nil,
        "table_to_xml": nil, "table_to_xmlschema": nil, "table_to_xml_and_xmlschema": nil,
        "schema_to_xml": nil, "schema_to_xmlschema": nil, "schema_to_xml_and_xmlschema": nil,
        "database_to_xml": nil, "database_to_xmlschema": nil, "database_to_xml_and_xmlschema": nil,
        "ts_stat": nil,
        // ts_rewrite(query, 'SELECT target, substitute FROM ...') runs its second argument.
        "ts_rewrite": 2,
        // Server files.
        "pg_read_file": nil, "pg_read_file_old": nil, "pg_read_binary_file": nil, "pg_stat_file": nil, "pg_ls_dir": nil,
        "pg_ls_logdir": nil, "pg_ls_waldir": nil, "pg_ls_tmpdir": nil, "pg_ls_archive_statusdir": nil,
        "pg_ls_logicalmapdir": nil, "pg_ls_logicalsnapdir": nil, "pg_ls_replslotdir": nil,
        // Large objects.
        "lo_open": nil, "lo_close": nil, "lo_creat": nil, "lo_create": nil, "lo_export": nil, "lo_import": nil,
        "lo_from_bytea": nil, "lo_get": nil, "lo_put": nil, "lo_lseek": nil, "lo_lseek64": nil, "lo_tell": nil,
        "lo_tell64": nil, "lo_truncate": nil, "lo_truncate64": nil, "lo_unlink": nil, "loread": nil, "lowrite": nil,
    ]

    /// Extension functions known to reach other databases (dblink, postgres_fdw's helpers):
    /// refused by name prefix whatever the context says.
    static let prefixes = ["dblink"]

    /// Whether a call of `name` with `arguments` arguments reaches beyond the statement.
    static func contains(_ name: String, arguments: Int) -> Bool {
        if let arity = names[name] { return arity == nil || arity == arguments }
        return prefixes.contains { name.hasPrefix($0) }
    }
}
