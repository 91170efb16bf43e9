import PQ

/// Whose credentials a source connection may use. The connection is made by the proxy
/// process, which has credentials of its own (its ~/.pgpass, PG* environment variables,
/// client certificates, Kerberos tickets, peer identity on local sockets): a caller who is
/// not a superuser must not borrow them, or the proxy becomes a confused deputy (the same
/// rule as dblink and postgres_fdw).
public enum SourceCredentials: Sendable, Hashable {
    /// Anything libpq would use: the CLI run by the operator, or a superuser caller.
    case any
    /// Only a password written in the connection string itself, and the server must ask for it.
    case ownPasswordOnly

    /// Keywords that make libpq read the proxy's own files or identity.
    static let refusedKeywords: Set<String> = ["passfile", "service", "sslcert", "sslkey", "sslpassword", "sslcrl", "sslcrldir", "krbsrvname", "gsslib", "requirepeer"]

    /// The connection string to use for `parsed` (the caller's `given` string as it came).
    func conninfo(_ parsed: ConnInfo, given: String) throws(CloneError) -> String {
        guard self == .ownPasswordOnly else { return given }
        if let keyword = parsed.values.keys.sorted().first(where: Self.refusedKeywords.contains) {
            throw CloneError("42501", "connection option \"\(keyword)\" is not allowed in a source connection string of a caller who is not a superuser",
                             hint: "It would make pgclone use files or credentials of its own.")
        }
        guard let password = parsed["password"], !password.isEmpty else {
            throw CloneError("2F003", "password is required for the source connection",
                             hint: "A caller who is not a superuser must give the source password in the connection string.")
        }
        var values = parsed
        // Nothing from the proxy's environment or home: no password file, no GSSAPI encryption.
        values["passfile"] = "/dev/null"
        values["gssencmode"] = "disable"
        return values.connectionString
    }
}
