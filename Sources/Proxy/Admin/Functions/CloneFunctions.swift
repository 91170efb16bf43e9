import CloneEngine

/// The clone functions of the admin API, with the guide's argument order and defaults.
enum CloneFunctions {
    static let all: [any AdminFunction.Type] = [Version.self, Table.self, TableEx.self, Schema.self, SchemaEx.self, Functions.self,
                                               Database.self, DatabaseCreate.self]

    /// `include_data` and the JSON `options` argument, as most clone functions take them.
    static func jsonOptions(_ call: AdminCall) throws -> CloneOptions {
        var options = CloneOptions()
        options.copyData = try call.bool("include_data", default: true)
        let parsed = try CloneOptions.parse(call.optionalText("options"), base: options)
        if !options.copyData && parsed.copyData {
            // (Round 37: the rows were copied.)
            throw AdminError("22023", "include_data is false but option \"data\" is true", hint: "Give one of them.")
        }
        return parsed
    }

    /// The options of the `_ex` variants, given as booleans instead of JSON.
    static func booleanOptions(_ call: AdminCall) throws -> CloneOptions {
        var options = CloneOptions()
        options.copyData = try call.bool("include_data", default: true)
        options.indexes = try call.bool("include_indexes", default: true)
        options.constraints = try call.bool("include_constraints", default: true)
        options.triggers = try call.bool("include_triggers", default: true)
        return options
    }

    /// The empty string given for an optional name means "none" (the guide passes '' for it).
    static func name(_ text: String?) -> String? { text.flatMap { $0.isEmpty ? nil : $0 } }

    struct Version: AdminFunction {
        static let name = "version"
        static let parameters: [AdminParameter] = []
        static func run(_ call: inout AdminCall) async throws -> AdminResult { .text(PgcloneVersion.display) }
    }

    /// `pgclone.table(source, schema, table [, include_data [, target_name [, options]]])`.
    struct Table: AdminFunction {
        static let name = "table"
        static let parameters: [AdminParameter] = [
            .required("source_conninfo"), .required("schema_name"), .required("table_name"),
            .optional("include_data", "bool"), .optional("target_name"), .optional("options"),
        ]
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            return try await clone(&call, options: CloneFunctions.jsonOptions(call))
        }

        static func clone(_ call: inout AdminCall, options: CloneOptions) async throws -> AdminResult {
            let outcome = try await call.engine.cloneTable(source: call.text("source_conninfo"), target: call.target,
                                                           schema: call.text("schema_name"), table: call.text("table_name"),
                                                           targetName: CloneFunctions.name(call.optionalText("target_name")), options: options)
            call.notices += outcome.notes
            return .text(CloneMessages.table(outcome))
        }
    }

    /// `pgclone.table_ex(source, schema, table, include_data, target_name, indexes, constraints, triggers)`.
    struct TableEx: AdminFunction {
        static let name = "table_ex"
        static let parameters: [AdminParameter] = [
            .required("source_conninfo"), .required("schema_name"), .required("table_name"), .required("include_data", "bool"),
            .required("target_name"), .required("include_indexes", "bool"), .required("include_constraints", "bool"),
            .required("include_triggers", "bool"),
        ]
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            try await Table.clone(&call, options: CloneFunctions.booleanOptions(call))
        }
    }

    /// `pgclone.schema(source, schema [, include_data [, options]])`.
    struct Schema: AdminFunction {
        static let name = "schema"
        static let parameters: [AdminParameter] = [.required("source_conninfo"), .required("schema_name"), .optional("include_data", "bool"), .optional("options")]
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            return try await clone(&call, options: CloneFunctions.jsonOptions(call))
        }

        static func clone(_ call: inout AdminCall, options: CloneOptions) async throws -> AdminResult {
            let schema = try call.text("schema_name")
            let summary = try await call.engine.cloneSchema(source: call.text("source_conninfo"), target: call.target, schema: schema, options: options)
            call.notices += summary.notes
            return .text("OK: cloned schema \(schema) (\(summary.counts))")
        }
    }

    /// `pgclone.schema_ex(source, schema, include_data, indexes, constraints, triggers)`.
    struct SchemaEx: AdminFunction {
        static let name = "schema_ex"
        static let parameters: [AdminParameter] = [
            .required("source_conninfo"), .required("schema_name"), .required("include_data", "bool"),
            .required("include_indexes", "bool"), .required("include_constraints", "bool"), .required("include_triggers", "bool"),
        ]
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            try await Schema.clone(&call, options: CloneFunctions.booleanOptions(call))
        }
    }

    /// `pgclone.functions(source, schema)`.
    struct Functions: AdminFunction {
        static let name = "functions"
        static let parameters: [AdminParameter] = [.required("source_conninfo"), .required("schema_name")]
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            let schema = try call.text("schema_name")
            let count = try await call.engine.cloneFunctions(source: call.text("source_conninfo"), target: call.target, schema: schema)
            return .text("OK: cloned \(count) \(count == 1 ? "function" : "functions") from \(schema)")
        }
    }

    /// `pgclone.database(source [, include_data [, options]])`: into the caller's database.
    struct Database: AdminFunction {
        static let name = "database"
        static let parameters: [AdminParameter] = [.required("source_conninfo"), .optional("include_data", "bool"), .optional("options")]
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            let options = try CloneFunctions.jsonOptions(call)
            let summary = try await call.engine.cloneDatabase(source: call.text("source_conninfo"), target: call.target, options: options)
            call.notices += summary.notes
            return .text("OK: cloned database (\(summary.schemas.count) schemas: \(summary.counts))")
        }
    }

    /// `pgclone.database_create(source, target_database [, include_data [, options]])`.
    struct DatabaseCreate: AdminFunction {
        static let name = "database_create"
        static let parameters: [AdminParameter] = [
            .required("source_conninfo"), .required("target_database"), .optional("include_data", "bool"), .optional("options"),
        ]
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            let name = try call.text("target_database")
            let options = try CloneFunctions.jsonOptions(call)
            let summary = try await call.engine.createDatabase(source: call.text("source_conninfo"), target: call.target, name: name, options: options)
            call.notices += summary.notes
            return .text("OK: created database \(name) and cloned (\(summary.schemas.count) schemas: \(summary.counts))")
        }
    }
}
