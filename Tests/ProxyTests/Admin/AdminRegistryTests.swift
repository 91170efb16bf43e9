import CloneEngine
import Testing
@testable import Proxy

struct AdminRegistryTests {
    @Test func everyFunctionHasOneNameAndRequiredParametersComeFirst() {
        let names = AdminRegistry.names
        #expect(Set(names).count == names.count)
        for function in AdminRegistry.all {
            let flags = function.parameters.map(\.isRequired)
            #expect(flags == flags.sorted { $0 && !$1 }, "\(function.name): an optional parameter before a required one")
            for parameter in function.parameters {
                #expect(["text", "bool", "int8"].contains(parameter.type), "\(function.name).\(parameter.name): \(parameter.type)")
            }
        }
    }

    @Test func theGuidesFunctionsAreRegistered() {
        for name in ["version", "table", "table_ex", "schema", "schema_ex", "functions", "database", "database_create", "discover_sensitive",
                     "mask_in_place", "create_masking_policy", "drop_masking_policy", "masking_report", "policy_status", "reload", "clone_roles",
                     "verify", "diff", "preflight", "table_async", "schema_async", "progress", "progress_detail", "jobs", "jobs_view",
                     "cancel", "clear_jobs", "resume"] {
            #expect(AdminRegistry.function(named: name) != nil, "\(name)")
        }
        #expect(AdminRegistry.function(named: "no_such_function") == nil)
    }

    @Test func describeSeesDeclaredTypesAndColumns() {
        #expect(AdminRegistry.parameterType(function: "table", position: 3) == "bool")
        #expect(AdminRegistry.parameterType(function: "table", position: 5) == "text")
        #expect(AdminRegistry.parameterType(function: "progress", position: 0) == "int8")
        #expect(AdminRegistry.parameterType(function: "table", position: 9) == "text")
        #expect(AdminRegistry.resultType(function: "schema_async") == "bigint")
        #expect(AdminRegistry.resultType(function: "diff") == "json")
        #expect(AdminRegistry.resultType(function: "version") == "text")
        #expect(AdminRegistry.resultColumns(function: "verify")?.map(\.name) == ["schema_name", "table_name", "source_rows", "target_rows", "match", "detail"])
        #expect(AdminRegistry.resultColumns(function: "jobs_view")?.count == 17)
        #expect(AdminRegistry.resultColumns(function: "table") == nil)
    }

    @Test func theAsyncFunctionsTakeTheArgumentsOfTheirSynchronousTwins() {
        #expect(JobFunctions.TableAsync.parameters.map(\.name) == CloneFunctions.Table.parameters.map(\.name))
        #expect(JobFunctions.SchemaAsync.parameters.map(\.name) == CloneFunctions.Schema.parameters.map(\.name))
    }

    @Test func argumentsAreCheckedAgainstTheSignature() throws {
        let signature = CloneFunctions.Schema.parameters
        let tooFew = ArgumentList(function: "schema", signature: signature, values: [.text("x")], parameters: [])
        #expect(throws: AdminError.self) { try tooFew.checkCount() }
        do {
            try tooFew.checkCount()
        } catch {
            #expect(error.sqlState == "42883")
            #expect(error.message == "function pgclone.schema takes 2 to 4 arguments, not 1")
            #expect(error.hint == "pgclone.schema(source_conninfo text, schema_name text, [include_data bool], [options text])")
        }
        let call = ArgumentList(function: "schema", signature: signature, values: [.text("host=x"), .parameter(1), .text("off")], parameters: ["sales"])
        try call.checkCount()
        #expect(try call.text("schema_name") == "sales")
        #expect(try call.bool("include_data", default: true) == false)
        #expect(try call.optionalText("options") == nil)
        let null = ArgumentList(function: "schema", signature: signature, values: [.text("host=x"), .null], parameters: [])
        #expect(throws: AdminError.self) { try null.text("schema_name") }
        let job = ArgumentList(function: "progress", signature: JobFunctions.Progress.parameters, values: [.text("12x")], parameters: [])
        #expect(throws: AdminError.self) { try job.bigint("job_id") }
    }
}
