@testable import CloneEngine
import Testing

struct CopyPlanTests {
    /// The names in a partition key as pg_get_partkeydef prints it: a masked column among them
    /// is refused (the partitions' bounds are its values).
    @Test func identifiersOfAPartitionKey() {
        #expect(CopyPlan.identifiers(in: "LIST (tenant)") == ["LIST", "tenant"])
        #expect(CopyPlan.identifiers(in: "RANGE (lower((\"Full \"\"Name\"\"\")::text), id)") == ["RANGE", "lower", "Full \"Name\"", "text", "id"])
        #expect(CopyPlan.identifiers(in: "HASH (\"Tenant Id\")") == ["HASH", "Tenant Id"])
        #expect(CopyPlan.identifiers(in: "LIST (COALESCE(region, 'tenant'::text))").contains("tenant") == false)
        #expect(CopyPlan.identifiers(in: "RANGE (créé_le)") == ["RANGE", "créé_le"])
    }
}
