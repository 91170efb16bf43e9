import CloneEngine

/// The functions that compare or prepare: roles, verify, diff, preflight.
enum CheckFunctions {
    static let all: [any AdminFunction.Type] = [CloneRoles.self, Verify.self, Diff.self, Preflight.self]

    /// `pgclone.clone_roles(source [, 'role1, role2'])`.
    struct CloneRoles: AdminFunction {
        static let name = "clone_roles"
        static let parameters: [AdminParameter] = [.required("source_conninfo"), .optional("role_names")]
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            let summary = try await call.engine.cloneRoles(source: call.text("source_conninfo"), target: call.target, only: call.optionalText("role_names"))
            call.notices += summary.notes
            return .text(summary.message)
        }
    }

    /// `pgclone.verify(source [, schema [, options]])`: one row per table.
    struct Verify: AdminFunction {
        static let name = "verify"
        static let parameters: [AdminParameter] = [.required("source_conninfo"), .optional("schema_name"), .optional("options")]
        static let result = AdminResultShape.rows([
            AdminResult.Column("schema_name", "text"), AdminResult.Column("table_name", "text"), AdminResult.Column("source_rows", "bigint"),
            AdminResult.Column("target_rows", "bigint"), AdminResult.Column("match", "text"), AdminResult.Column("detail", "text"),
        ])
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            let rows = try await call.engine.verify(source: call.text("source_conninfo"), target: call.target,
                                                    schema: call.optionalText("schema_name"), options: call.optionalText("options"))
            guard case .rows(let columns) = result else { preconditionFailure() }
            return .rows(columns: columns, rows: rows.map { row in
                [row.schema, row.table, row.sourceRows.map(String.init), row.targetRows.map(String.init), row.match, row.detail]
            })
        }
    }

    /// `pgclone.diff(source [, schema])`: JSON of what differs between the two schemas.
    struct Diff: AdminFunction {
        static let name = "diff"
        static let parameters: [AdminParameter] = [.required("source_conninfo"), .optional("schema_name")]
        static let result = AdminResultShape.scalar("json")
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            let differences = try await call.engine.diff(source: call.text("source_conninfo"), target: call.target, schema: call.optionalText("schema_name"))
            return .value(differences.json, type: "json")
        }
    }

    /// `pgclone.preflight(source [, schema [, options]])`: checks before a clone, as rows.
    struct Preflight: AdminFunction {
        static let name = "preflight"
        static let parameters: [AdminParameter] = [.required("source_conninfo"), .optional("schema_name"), .optional("options")]
        static let result = AdminResultShape.rows([AdminResult.Column("check", "text"), AdminResult.Column("status", "text"), AdminResult.Column("detail", "text")])
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            let checks = try await call.engine.preflight(source: call.text("source_conninfo"), target: call.target,
                                                         schema: call.optionalText("schema_name"), options: call.optionalText("options"))
            guard case .rows(let columns) = result else { preconditionFailure() }
            return .rows(columns: columns, rows: checks.map { [$0.name, $0.status, $0.detail] })
        }
    }
}
