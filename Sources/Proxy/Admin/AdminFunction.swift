import CloneEngine
import PQ

/// One function of the `pgclone.*` admin API: its name, signature and result shape, and
/// what it does. Each is a small type; `AdminRegistry` lists them, so adding a function
/// is one type in the file of its group.
protocol AdminFunction: Sendable {
    /// The name after `pgclone.` (`table`, `verify`, `jobs_view`...).
    static var name: String { get }
    /// In call order; optional ones follow the required ones.
    static var parameters: [AdminParameter] { get }
    /// What Describe reports: a scalar's type, or the columns of a set-returning function.
    static var result: AdminResultShape { get }
    static func run(_ call: inout AdminCall) async throws -> AdminResult
}

extension AdminFunction {
    static var result: AdminResultShape { .scalar("text") }
}

struct AdminParameter: Sendable {
    var name: String
    /// An SQL type name: `text`, `bool`, `int8`.
    var type: String
    var isRequired: Bool

    static func required(_ name: String, _ type: String = "text") -> AdminParameter {
        AdminParameter(name: name, type: type, isRequired: true)
    }

    static func optional(_ name: String, _ type: String = "text") -> AdminParameter {
        AdminParameter(name: name, type: type, isRequired: false)
    }
}

enum AdminResultShape: Sendable {
    case scalar(String)
    case rows([AdminResult.Column])
}

/// What the admin API reaches: shared by every call of one proxy.
struct AdminServices: Sendable {
    let serviceConnInfo: ConnInfo
    let policies: PolicyStore
    let state: StatePolicies
    let backstop: ServerBackstop?
    let jobs: JobRunner?
    /// The engine's threads: every libpq call of an admin function runs there.
    let pool: PQThreadPool
}

/// One call in progress: who calls, with what, and the notices it collects for the client.
struct AdminCall: Sendable {
    let arguments: ArgumentList
    let caller: AdminCaller
    let services: AdminServices
    var notices: [String] = []

    /// The target side: the caller's database, acting as the caller's role.
    var target: CloneTarget {
        CloneTarget(serviceConnInfo: services.serviceConnInfo, database: caller.database, role: caller.role, pool: services.pool)
    }

    /// Superusers may let the proxy use its own credentials for source connections; others
    /// must bring a password (see SourceCredentials).
    var sourceCredentials: SourceCredentials { caller.isSuperuser ? .any : .ownPasswordOnly }

    var engine: CloneEngine { CloneEngine(sourceCredentials: sourceCredentials, pool: services.pool) }

    func text(_ name: String) throws(AdminError) -> String { try arguments.text(name) }
    func optionalText(_ name: String) throws(AdminError) -> String? { try arguments.optionalText(name) }
    func bool(_ name: String, default value: Bool) throws(AdminError) -> Bool { try arguments.bool(name, default: value) }

    func jobs() throws(AdminError) -> JobRunner {
        guard let jobs = services.jobs else { throw AdminError("0A000", "background jobs are not available in this proxy") }
        return jobs
    }
}
