import CloneEngine
import PQ

/// Every function of the admin API, by name.
enum AdminRegistry {
    static let all: [any AdminFunction.Type] = CloneFunctions.all + MaskingFunctions.all + CheckFunctions.all + JobFunctions.all

    private static let byName: [String: any AdminFunction.Type] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })

    static func function(named name: String) -> (any AdminFunction.Type)? { byName[name] }

    static var names: [String] { all.map { $0.name } }

    /// The declared type of the argument at `position` (what Describe reports for a `$n` there).
    static func parameterType(function: String, position: Int) -> String {
        guard let parameters = byName[function]?.parameters, position < parameters.count else { return "text" }
        return parameters[position].type
    }

    /// The type of a scalar function's result (text for unknown ones and set-returning ones).
    static func resultType(function: String) -> String {
        if case .scalar(let type)? = byName[function]?.result { return type }
        return "text"
    }

    /// The columns of a set-returning function.
    static func resultColumns(function: String) -> [AdminResult.Column]? {
        if case .rows(let columns)? = byName[function]?.result { return columns }
        return nil
    }

    /// Runs one reference of an admin statement: the argument count checked against the
    /// signature, errors of any layer turned into PostgreSQL-style errors.
    static func run(_ reference: AdminStatement.Reference, parameters: [String?], caller: AdminCaller, services: AdminServices,
                    notices: inout [String]) async throws(AdminError) -> AdminResult {
        guard let function = byName[reference.function] else {
            throw AdminError("42883", "function pgclone.\(reference.function)() does not exist",
                             hint: "Known functions: \(names.joined(separator: ", ")).")
        }
        let arguments = ArgumentList(function: function.name, signature: function.parameters, values: reference.arguments, parameters: parameters)
        try arguments.checkCount()
        var call = AdminCall(arguments: arguments, caller: caller, services: services)
        defer { notices += call.notices }
        do {
            return try await function.run(&call)
        } catch let error as AdminError {
            // (CloneError: the engine's errors are already PostgreSQL-style.)
            throw error
        } catch let error as PQError {
            throw AdminError(error.sqlState ?? "XX000", error.message, detail: error.detail, hint: error.hint)
        } catch {
            throw AdminError("XX000", "pgclone.\(reference.function) failed: \(error)")
        }
    }
}
