@testable import CloneEngine
import Testing

struct NameMappingTests {
    @Test func theTableNameIsReplacedWhereItIsAWordOfItsOwn() {
        #expect(NameMapping.rename("customers_pkey", table: "customers", to: "customers_backup") == "customers_backup_pkey")
        #expect(NameMapping.rename("uq_special", table: "special", to: "special_old") == "uq_special_old")
        #expect(NameMapping.rename("ix_orders_customer", table: "orders", to: "o2") == "ix_o2_customer")
        // Inside another word it is not the table's name (round 37: special_idx became sp3ecial_idx).
        #expect(NameMapping.rename("special_idx", table: "e", to: "e3") == "special_idx_e3")
        #expect(NameMapping.rename("idx_e_name", table: "e", to: "e3") == "idx_e3_name")
        #expect(NameMapping.rename("anything", table: "t", to: "t") == "anything")
        #expect(NameMapping.rename(String(repeating: "x", count: 60), table: "t", to: "t_old").utf8.count == 63)
    }
}
