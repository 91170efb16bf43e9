@testable import CloneEngine
import Testing

/// Stored settings (`name=value` of pg_db_role_setting) become SET clauses that give the same
/// value back, and nothing else.
struct RoleClonerTests {
    @Test func listSettingsKeepEachNameAsStored() {
        #expect(RoleCloner.parseNames("\"$user\", public, \"My Schema\"") == ["$user", "public", "My Schema"])
        #expect(RoleCloner.parseNames(" a ,\"b \"\"q\"\"\" , c") == ["a", "b \"q\"", "c"])
        #expect(RoleCloner.setClause("search_path=\"$user\", public, \"My Schema\"") == "search_path TO \"$user\", \"public\", \"My Schema\"")
        #expect(RoleCloner.setClause("work_mem=8MB") == "work_mem TO '8MB'")
        // ALTER ROLE ... SET search_path = '' is stored as search_path="" (it was dropped).
        #expect(RoleCloner.setClause("search_path=\"\"") == "search_path TO ''")
        #expect(RoleCloner.setClause("statement_timeout=1s'; DROP TABLE x; --") == "statement_timeout TO '1s''; DROP TABLE x; --'")
    }

    @Test func aNameThatIsNotASettingNameIsRefused() {
        #expect(RoleCloner.setClause("work_mem TO 1; DROP TABLE x; --=1") == nil)
        #expect(RoleCloner.setClause("no equals sign") == nil)
    }
}
