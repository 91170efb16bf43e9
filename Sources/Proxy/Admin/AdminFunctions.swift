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

/// The pgclone.* functions, with the guide's argument order and defaults.
struct AdminFunctions: Sendable {
    let serviceConnInfo: ConnInfo
    let policies: PolicyStore
    let state: StatePolicies
    let backstop: ServerBackstop?
    let jobs: JobRunner?

    /// Runs one reference with its arguments resolved; `notices` collects
    /// things the caller should know that are not errors.
    func run(_ reference: AdminStatement.Reference, arguments: ArgumentList, caller: AdminCaller, notices: inout [String]) async throws(AdminError) -> AdminResult {
        let target = CloneTarget(serviceConnInfo: serviceConnInfo, database: caller.database, role: caller.role)
        let credentials: SourceCredentials = caller.isSuperuser ? .any : .ownPasswordOnly
        let engine = CloneEngine(sourceCredentials: credentials)
        do {
            switch reference.function {
            case "version":
                try arguments.expectCount(0...0)
                return .text(PgcloneVersion.display)

            case "table", "table_ex":
                let extended = reference.function == "table_ex"
                try arguments.expectCount(extended ? 8...8 : 3...6)
                let source = try arguments.text(0, "source_conninfo")
                let schema = try arguments.text(1, "schema_name")
                let table = try arguments.text(2, "table_name")
                var options = CloneOptions()
                options.copyData = try arguments.bool(3, "include_data", default: true)
                let targetName = try arguments.optionalText(4)
                if extended {
                    options.indexes = try arguments.bool(5, "include_indexes", default: true)
                    options.constraints = try arguments.bool(6, "include_constraints", default: true)
                    options.triggers = try arguments.bool(7, "include_triggers", default: true)
                } else {
                    options = try CloneOptions.parse(arguments.optionalText(5), base: options)
                }
                let outcome = try await engine.cloneTable(source: source, target: target, schema: schema, table: table,
                                                          targetName: targetName.flatMap { $0.isEmpty ? nil : $0 }, options: options)
                notices += outcome.notes
                return .text(CloneMessages.table(outcome))

            case "schema", "schema_ex":
                let extended = reference.function == "schema_ex"
                try arguments.expectCount(extended ? 6...6 : 2...4)
                let source = try arguments.text(0, "source_conninfo")
                let schema = try arguments.text(1, "schema_name")
                var options = CloneOptions()
                options.copyData = try arguments.bool(2, "include_data", default: true)
                if extended {
                    options.indexes = try arguments.bool(3, "include_indexes", default: true)
                    options.constraints = try arguments.bool(4, "include_constraints", default: true)
                    options.triggers = try arguments.bool(5, "include_triggers", default: true)
                } else {
                    options = try CloneOptions.parse(arguments.optionalText(3), base: options)
                }
                let summary = try await engine.cloneSchema(source: source, target: target, schema: schema, options: options)
                notices += summary.notes
                return .text("OK: cloned schema \(schema) (\(summary.counts))")

            case "functions":
                try arguments.expectCount(2...2)
                let schema = try arguments.text(1, "schema_name")
                let count = try await engine.cloneFunctions(source: arguments.text(0, "source_conninfo"), target: target, schema: schema)
                return .text("OK: cloned \(count) \(count == 1 ? "function" : "functions") from \(schema)")

            case "database":
                try arguments.expectCount(1...3)
                var options = CloneOptions()
                options.copyData = try arguments.bool(1, "include_data", default: true)
                options = try CloneOptions.parse(arguments.optionalText(2), base: options)
                let summary = try await engine.cloneDatabase(source: arguments.text(0, "source_conninfo"), target: target, options: options)
                notices += summary.notes
                return .text("OK: cloned database (\(summary.schemas.count) schemas: \(summary.counts))")

            case "database_create":
                try arguments.expectCount(2...4)
                let name = try arguments.text(1, "target_database")
                var options = CloneOptions()
                options.copyData = try arguments.bool(2, "include_data", default: true)
                options = try CloneOptions.parse(arguments.optionalText(3), base: options)
                let summary = try await engine.createDatabase(source: arguments.text(0, "source_conninfo"), target: target, name: name, options: options)
                notices += summary.notes
                return .text("OK: created database \(name) and cloned (\(summary.schemas.count) schemas: \(summary.counts))")

            case "discover_sensitive":
                try arguments.expectCount(2...2)
                let json = try await MaskingAdmin(sourceCredentials: credentials).discoverSensitive(source: arguments.text(0, "source_conninfo"), schema: arguments.text(1, "schema_name"))
                return .value(json, type: "json")

            case "mask_in_place":
                try arguments.expectCount(3...3)
                return .text(try await MaskingAdmin().maskInPlace(target: target, schema: arguments.text(0, "schema_name"),
                                                                  table: arguments.text(1, "table_name"), mask: arguments.text(2, "mask")))

            case "create_masking_policy":
                try arguments.expectCount(3...4)
                let functions = MaskingPolicyFunctions(target: target, state: state, store: policies)
                let result = try await functions.create(schema: arguments.text(0, "schema_name"), table: arguments.text(1, "table_name"),
                                                        mask: arguments.text(2, "mask"), privilegedRole: arguments.optionalText(3))
                // The server backs the new policy up before the call returns.
                await backstop?.reconcile(database: caller.database)
                return .text(result)

            case "drop_masking_policy":
                try arguments.expectCount(2...2)
                let functions = MaskingPolicyFunctions(target: target, state: state, store: policies)
                let result = try await functions.drop(schema: arguments.text(0, "schema_name"), table: arguments.text(1, "table_name"))
                await backstop?.reconcile(database: caller.database)
                return .text(result)

            case "masking_report":
                try arguments.expectCount(1...1)
                return try await MaskingPolicyFunctions(target: target, state: state, store: policies).report(schema: arguments.text(0, "schema_name"))

            case "clone_roles":
                try arguments.expectCount(1...2)
                let summary = try await engine.cloneRoles(source: arguments.text(0, "source_conninfo"), target: target, only: arguments.optionalText(1))
                notices += summary.notes
                return .text(summary.message)

            case "verify":
                try arguments.expectCount(1...3)
                let rows = try await engine.verify(source: arguments.text(0, "source_conninfo"), target: target,
                                                   schema: arguments.optionalText(1), options: arguments.optionalText(2))
                return .rows(columns: Self.verifyColumns, rows: rows.map { row in
                    [row.schema, row.table, row.sourceRows.map(String.init), row.targetRows.map(String.init), row.match, row.detail]
                })

            case "diff":
                try arguments.expectCount(1...2)
                let differences = try await engine.diff(source: arguments.text(0, "source_conninfo"), target: target, schema: arguments.optionalText(1))
                return .value(differences.json, type: "json")

            case "preflight":
                try arguments.expectCount(1...3)
                let checks = try await engine.preflight(source: arguments.text(0, "source_conninfo"), target: target,
                                                        schema: arguments.optionalText(1), options: arguments.optionalText(2))
                return .rows(columns: Self.preflightColumns, rows: checks.map { [$0.name, $0.status, $0.detail] })

            case "policy_status":
                try arguments.expectCount(0...0)
                let backstopState = await backstop?.reconcile(database: caller.database)
                return MaskingPolicyFunctions.status(policies, database: caller.database, backstop: backstopState)

            case "reload":
                try arguments.expectCount(0...0)
                if let statePolicies = try? await state.load() { policies.setStatePolicies(statePolicies) }
                if let error = policies.reload() {
                    throw AdminError("22023", "policy reload rejected; the last good policies stay in force", detail: error)
                }
                let current = policies.current
                await backstop?.reconcile(database: caller.database)
                return .text("OK: \(current.policies.count) \(current.policies.count == 1 ? "policy" : "policies") in force (version \(current.version))")

            case "table_async", "schema_async", "progress", "progress_detail", "jobs", "jobs_view", "cancel", "clear_jobs", "resume":
                guard let jobs else { throw AdminError("0A000", "background jobs are not available in this proxy") }
                return try await JobFunctions(runner: jobs).run(reference.function, arguments: arguments, caller: caller)

            case let name where Self.plannedFunctions.contains(name):
                throw AdminError("0A000", "pgclone.\(name)() is not available in this version of pgclone")

            default:
                throw AdminError("42883", "function pgclone.\(reference.function)() does not exist",
                                 hint: "Known functions: \(Self.knownFunctions.joined(separator: ", ")).")
            }
        } catch let error as PQError {
            throw AdminError(error.sqlState ?? "XX000", error.message, detail: error.detail, hint: error.hint)
        } catch let error as AdminError {
            throw error
        } catch {
            throw AdminError("XX000", "pgclone.\(reference.function) failed: \(error)")
        }
    }

    /// Parameter types, in the guide's argument order (what Describe reports for `$n`).
    static let signatures: [String: [String]] = [
        "version": [],
        "table": ["text", "text", "text", "bool", "text", "text"],
        "table_ex": ["text", "text", "text", "bool", "text", "bool", "bool", "bool"],
        "schema": ["text", "text", "bool", "text"],
        "schema_ex": ["text", "text", "bool", "bool", "bool", "bool"],
        "functions": ["text", "text"],
        "database": ["text", "bool", "text"],
        "database_create": ["text", "text", "bool", "text"],
        "discover_sensitive": ["text", "text"],
        "mask_in_place": ["text", "text", "text"],
        "create_masking_policy": ["text", "text", "text", "text"],
        "drop_masking_policy": ["text", "text"],
        "masking_report": ["text"],
        "clone_roles": ["text", "text"],
        "verify": ["text", "text", "text"],
        "diff": ["text", "text"],
        "preflight": ["text", "text", "text"],
        "table_async": ["text", "text", "text", "bool", "text", "text"],
        "schema_async": ["text", "text", "bool", "text"],
        "progress": ["int8"],
        "cancel": ["int8"],
        "resume": ["int8", "text"],
    ]

    static let verifyColumns = [
        AdminResult.Column("schema_name", "text"), AdminResult.Column("table_name", "text"), AdminResult.Column("source_rows", "bigint"),
        AdminResult.Column("target_rows", "bigint"), AdminResult.Column("match", "text"), AdminResult.Column("detail", "text"),
    ]

    static let preflightColumns = [AdminResult.Column("check", "text"), AdminResult.Column("status", "text"), AdminResult.Column("detail", "text")]

    /// Result columns of the set-returning functions (what Describe reports).
    static let resultColumns: [String: [AdminResult.Column]] = [
        "masking_report": MaskingPolicyFunctions.reportColumns,
        "policy_status": MaskingPolicyFunctions.statusColumns,
        "verify": verifyColumns,
        "preflight": preflightColumns,
        "progress_detail": JobFunctions.columns,
        "jobs_view": JobFunctions.columns,
    ]

    /// Result type of the scalar functions (text unless listed).
    static let resultTypes: [String: String] = ["discover_sensitive": "json", "diff": "json", "progress": "json", "jobs": "json",
                                                 "table_async": "bigint", "schema_async": "bigint", "clear_jobs": "integer"]

    static func parameterType(function: String, position: Int) -> String {
        guard let signature = signatures[function], position < signature.count else { return "text" }
        return signature[position]
    }

    static let knownFunctions = ["version", "table", "table_ex", "schema", "schema_ex", "functions", "database", "database_create",
                                 "discover_sensitive", "mask_in_place", "create_masking_policy", "drop_masking_policy",
                                 "masking_report", "policy_status", "reload", "clone_roles", "verify", "diff", "preflight",
                                 "table_async", "schema_async", "progress", "progress_detail", "jobs", "jobs_view", "cancel", "clear_jobs", "resume"]
    static let plannedFunctions: Set<String> = []

}

/// Arguments of one call with `$n` parameters resolved.
struct ArgumentList: Sendable {
    var function: String
    var values: [AdminStatement.Argument]
    var parameters: [String?]

    func expectCount(_ range: ClosedRange<Int>) throws(AdminError) {
        guard range.contains(values.count) else {
            let expected = range.lowerBound == range.upperBound ? "\(range.lowerBound)" : "\(range.lowerBound) to \(range.upperBound)"
            throw AdminError("42883", "function pgclone.\(function) takes \(expected) arguments, not \(values.count)")
        }
    }

    private func resolved(_ index: Int) throws(AdminError) -> AdminStatement.Argument? {
        guard index < values.count else { return nil }
        if case .parameter(let number) = values[index] {
            guard number <= parameters.count else {
                throw AdminError("08P01", "there is no parameter $\(number)")
            }
            return parameters[number - 1].map(AdminStatement.Argument.text) ?? .null
        }
        return values[index]
    }

    func optionalText(_ index: Int) throws(AdminError) -> String? {
        switch try resolved(index) {
        case nil, .null?: return nil
        case .text(let value)?, .number(let value)?: return value
        case .boolean(let value)?: return value ? "true" : "false"
        case .parameter?: return nil
        }
    }

    func text(_ index: Int, _ name: String) throws(AdminError) -> String {
        guard let value = try optionalText(index) else {
            throw AdminError("22004", "argument \(name) of pgclone.\(function) must not be NULL")
        }
        return value
    }

    func bool(_ index: Int, _ name: String, default value: Bool) throws(AdminError) -> Bool {
        switch try resolved(index) {
        case nil: return value
        case .null?: throw AdminError("22004", "argument \(name) of pgclone.\(function) must not be NULL")
        case .boolean(let flag)?: return flag
        case .text(let text)?, .number(let text)?:
            switch text.lowercased() {
            case "t", "true", "yes", "on", "1", "y": return true
            case "f", "false", "no", "off", "0", "n": return false
            default: throw AdminError("22P02", "invalid input syntax for type boolean: \"\(text)\" (argument \(name) of pgclone.\(function))")
            }
        case .parameter?: return value
        }
    }
}
