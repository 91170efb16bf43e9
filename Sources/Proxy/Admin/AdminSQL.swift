import CloneEngine
import Foundation
import PQ

/// SQL the proxy sends on a client's own session on behalf of the admin API.
enum AdminSQL {
    /// Who the session is now (after any SET ROLE), and whether it may use the admin API.
    /// Runs in the caller's session, under the caller's search_path: every operator is named
    /// with its schema, or a user's own `=` could make them a superuser here.
    static func roleCheck(adminRoles: [String]) -> String {
        let roles = adminRoles.isEmpty ? "'{}'" : SQL.literal("{" + adminRoles.map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }.joined(separator: ",") + "}")
        return """
            SELECT pg_catalog.current_user()::pg_catalog.text, pg_catalog.current_database()::pg_catalog.text, \
            COALESCE((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) pg_catalog.current_user()), false), \
            EXISTS (SELECT 1 FROM pg_catalog.pg_roles a WHERE a.rolname OPERATOR(pg_catalog.=) ANY (\(roles)::pg_catalog.text[]) \
            AND pg_catalog.pg_has_role(pg_catalog.current_user(), a.oid, 'USAGE'))
            """
    }

    /// A statement that fails with exactly this error, so that the server itself
    /// reports it (and an open transaction fails, as for any erroring statement).
    static func raise(_ error: AdminError) -> String {
        var clauses = ["ERRCODE = \(SQL.literal(error.sqlState))", "MESSAGE = \(SQL.literal(error.message))"]
        if let detail = error.detail { clauses.append("DETAIL = \(SQL.literal(detail))") }
        if let hint = error.hint { clauses.append("HINT = \(SQL.literal(hint))") }
        let body = "BEGIN RAISE EXCEPTION USING \(clauses.joined(separator: ", ")); END"
        var tag = "$pgclone$"
        var counter = 0
        while body.contains(tag) {
            counter += 1
            tag = "$pgclone\(counter)$"
        }
        return "DO \(tag)\(body)\(tag)"
    }
}
