import CloneEngine
import Masking
import PQ

/// Who is calling and where: the admin API acts as this role in this database.
public struct AdminCaller: Sendable {
    public var role: String
    public var database: String
    /// Superusers may let the proxy use its own credentials for source connections; others
    /// must bring a password (see SourceCredentials).
    public var isSuperuser: Bool
    public init(role: String, database: String, isSuperuser: Bool) {
        self.role = role
        self.database = database
        self.isSuperuser = isSuperuser
    }
}
