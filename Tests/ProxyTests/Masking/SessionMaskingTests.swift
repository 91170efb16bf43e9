import Masking
@testable import Proxy
import Testing

/// A session's masking state, without a socket: when the context must be read, the
/// shape cache, and fresh-context requests.
@Suite struct SessionMaskingTests {
    let policies = PolicySet(policies: [TablePolicy(schema: "test_schema", table: "employees", unmaskedRoles: [], columns: [.init(name: "email", strategy: .email)], source: "test")], version: 1)

    @Test func theContextIsReadFirstAndAfterWhatMayChangeTheRole() {
        var masking = SessionMasking()
        #expect(masking.check(.empty) == .none)
        #expect(masking.check(policies) == .required)
        masking.update(MaskingRewriterTests.context())
        #expect(masking.check(policies) == .none)
        #expect(masking.check(PolicySet(policies: policies.policies, version: 2)) == .required)
        for statement in ["SET ROLE other", "reset all", "DISCARD ALL", "select set_config('role', 'x', false)", "ROLLBACK", "create view v as select 1"] {
            var copy = masking
            copy.noteStatement(Array(statement.utf8))
            #expect(copy.check(policies) == .required, "\(statement)")
        }
        var quiet = masking
        quiet.noteStatement(Array("SELECT email FROM test_schema.employees".utf8))
        #expect(quiet.check(policies) == .none)
        masking.noteParameter("is_superuser")
        #expect(masking.check(policies) == .required)
    }

    @Test func rewritesAreSharedByStatementsOfTheSameShape() {
        var masking = SessionMasking()
        masking.update(MaskingRewriterTests.context())
        let masked = MaskingRewriterTests.employees.maskedRelation(only: false).text
        for id in ["1", "4711", "2.5e3", "17"] {
            #expect(masking.rewrite("SELECT email FROM test_schema.employees WHERE id = \(id) LIMIT 10", builtinFunctions: MaskingRewriterTests.builtins)
                    == .rewritten("SELECT email FROM \(masked) AS \"employees\" WHERE id = \(id) LIMIT 10"))
        }
        // The four statements above are one shape: one entry.
        #expect(masking.cachedShapes == 1)
        #expect(masking.rewrite("SELECT 1 WHERE 2 > 3", builtinFunctions: MaskingRewriterTests.builtins) == .unchanged)
        #expect(masking.rewrite("SELECT 10 WHERE 20 > 30", builtinFunctions: MaskingRewriterTests.builtins) == .unchanged)
        #expect(masking.cachedShapes == 2)
    }

    /// A new table or function elsewhere in the database changes the context (the highest OID,
    /// the user-function names) but not how statements are rewritten: prepared statements and
    /// cached rewrites stay. A newly tainted view does change it.
    @Test func onlyWhatDecidesRewritesStartsANewGeneration() {
        var masking = SessionMasking()
        var context = MaskingRewriterTests.context()
        masking.update(context)
        let first = masking.generation
        context.maximumRelationOID = 99_999
        context.userFunctions = ["someone_elses_function"]
        masking.update(context)
        #expect(masking.generation == first)
        context.taintedRelations.insert("new_view")
        masking.update(context)
        #expect(masking.generation == first + 1)
        context.role = "other"
        masking.update(context)
        #expect(masking.generation == first + 2)
    }

    @Test func anUnknownFunctionAsksOnceThenTheServerDecides() {
        var masking = SessionMasking()
        masking.update(MaskingRewriterTests.context())
        // Just read: the server decides (the function does not exist, or appeared microseconds ago).
        #expect(masking.rewrite("SELECT 1", builtinFunctions: MaskingRewriterTests.builtins) == .unchanged)
        #expect(masking.rewrite("SELECT brand_new()", builtinFunctions: MaskingRewriterTests.builtins) == .needsFreshContext(function: "brand_new"))
        #expect(masking.check(policies) == .required)
        masking.update(MaskingRewriterTests.context())
        #expect(masking.rewrite("SELECT brand_new()", builtinFunctions: MaskingRewriterTests.builtins) == .unchanged)
        // Not cached: the next time it asks again.
        #expect(masking.rewrite("SELECT brand_new()", builtinFunctions: MaskingRewriterTests.builtins) == .needsFreshContext(function: "brand_new"))
    }

    @Test func wordsAreFoundIgnoringCaseWithoutCopies() {
        #expect(SessionMasking.mentions(Array("COPY t TO STDOUT".utf8), SessionMasking.copyWord))
        #expect(SessionMasking.mentions(Array("xcOpY".utf8), SessionMasking.copyWord))
        #expect(!SessionMasking.mentions(Array("cop".utf8), SessionMasking.copyWord))
        #expect(!SessionMasking.mentions(Array("".utf8), SessionMasking.copyWord))
        #expect(SessionMasking.mentionsTrigger(Array("Set Role x".utf8)))
        #expect(!SessionMasking.mentionsTrigger(Array("SELECT 1".utf8)))
    }
}
