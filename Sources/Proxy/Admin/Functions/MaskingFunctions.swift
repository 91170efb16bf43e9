import CloneEngine
import Masking

/// The masking functions of the admin API: discovery, static masking, policies and their state.
enum MaskingFunctions {
    static let all: [any AdminFunction.Type] = [DiscoverSensitive.self, MaskInPlace.self, CreateMaskingPolicy.self, DropMaskingPolicy.self,
                                               MaskingReport.self, PolicyStatus.self, Reload.self]

    static func policyFunctions(_ call: AdminCall) -> MaskingPolicyFunctions {
        MaskingPolicyFunctions(target: call.target, state: call.services.state, store: call.services.policies)
    }

    /// `pgclone.discover_sensitive(source, schema)`: JSON of the columns that look sensitive.
    struct DiscoverSensitive: AdminFunction {
        static let name = "discover_sensitive"
        static let parameters: [AdminParameter] = [.required("source_conninfo"), .required("schema_name")]
        static let result = AdminResultShape.scalar("json")
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            let json = try await MaskingAdmin(sourceCredentials: call.sourceCredentials, pool: call.services.pool)
                .discoverSensitive(source: call.text("source_conninfo"), schema: call.text("schema_name"))
            return .value(json, type: "json")
        }
    }

    /// `pgclone.mask_in_place(schema, table, mask)`: rewrites the target's rows masked.
    struct MaskInPlace: AdminFunction {
        static let name = "mask_in_place"
        static let parameters: [AdminParameter] = [.required("schema_name"), .required("table_name"), .required("mask")]
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            .text(try await MaskingAdmin(pool: call.services.pool).maskInPlace(target: call.target, schema: call.text("schema_name"),
                                                                              table: call.text("table_name"), mask: call.text("mask")))
        }
    }

    /// `pgclone.create_masking_policy(schema, table, mask [, privileged_role])`.
    struct CreateMaskingPolicy: AdminFunction {
        static let name = "create_masking_policy"
        static let parameters: [AdminParameter] = [.required("schema_name"), .required("table_name"), .required("mask"), .optional("privileged_role")]
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            let result = try await policyFunctions(call).create(schema: call.text("schema_name"), table: call.text("table_name"),
                                                                mask: call.text("mask"), privilegedRole: call.optionalText("privileged_role"))
            // The server backs the new policy up before the call returns.
            await call.services.backstop?.reconcile(database: call.caller.database)
            return .text(result)
        }
    }

    /// `pgclone.drop_masking_policy(schema, table)`.
    struct DropMaskingPolicy: AdminFunction {
        static let name = "drop_masking_policy"
        static let parameters: [AdminParameter] = [.required("schema_name"), .required("table_name")]
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            let result = try await policyFunctions(call).drop(schema: call.text("schema_name"), table: call.text("table_name"))
            await call.services.backstop?.reconcile(database: call.caller.database)
            return .text(result)
        }
    }

    /// `pgclone.masking_report(schema)`: one row per column with its sensitivity and mask.
    struct MaskingReport: AdminFunction {
        static let name = "masking_report"
        static let parameters: [AdminParameter] = [.required("schema_name")]
        static let result = AdminResultShape.rows(MaskingPolicyFunctions.reportColumns)
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            try await policyFunctions(call).report(schema: call.text("schema_name"))
        }
    }

    /// `pgclone.policy_status()`: the policies in force and whether the server backs each up.
    struct PolicyStatus: AdminFunction {
        static let name = "policy_status"
        static let parameters: [AdminParameter] = []
        static let result = AdminResultShape.rows(MaskingPolicyFunctions.statusColumns)
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            let backstopState = await call.services.backstop?.reconcile(database: call.caller.database)
            return MaskingPolicyFunctions.status(call.services.policies, database: call.caller.database, backstop: backstopState)
        }
    }

    /// `pgclone.reload()`: re-reads the policy files and the state database's policies.
    struct Reload: AdminFunction {
        static let name = "reload"
        static let parameters: [AdminParameter] = []
        static func run(_ call: inout AdminCall) async throws -> AdminResult {
            let policies = call.services.policies
            if let statePolicies = try? await call.services.state.load() { policies.setStatePolicies(statePolicies) }
            if let error = policies.reload() {
                throw AdminError("22023", "policy reload rejected; the last good policies stay in force", detail: error)
            }
            let current = policies.current
            await call.services.backstop?.reconcile(database: call.caller.database)
            return .text("OK: \(current.policies.count) \(current.policies.count == 1 ? "policy" : "policies") in force (version \(current.version))")
        }
    }
}
