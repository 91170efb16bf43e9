import CloneEngine
import Masking
@testable import Proxy
import Testing

/// A session's masking knowledge, without a socket: when the context must be read, what a
/// statement that cannot wait for a read gets, the shape cache and fresh-context requests.
@Suite struct MaskingStateTests {
    let policies = PolicySet(policies: [TablePolicy(schema: "test_schema", table: "employees", unmaskedRoles: [], columns: [.init(name: "email", strategy: .email)], source: "test")], version: 1)
    let now = ContinuousClock.now

    /// A state that has read `context` (and the worst case built from it).
    func known(_ context: MaskingContext = MaskingRewriterTests.context(), idle: Bool = true) -> MaskingState {
        var state = MaskingState()
        var worstCase = context
        worstCase.resolvesNamesConservatively = true
        worstCase.isWorstCase = true
        state.install(context, worstCase: worstCase, at: now, idle: idle)
        return state
    }

    func treatment(_ state: MaskingState, canRead: Bool = true, ready: Bool = true, policies: PolicySet? = nil, at: Duration = .zero) -> MaskingState.Treatment {
        var state = state
        return state.treatment(policies: policies ?? self.policies, notReady: ready ? nil : "not yet", canRead: canRead, isCopy: false, now: now + at)
    }

    @Test func theContextIsReadBeforeTheFirstStatementAndWhenThePoliciesChange() {
        let fresh = MaskingState()
        #expect(treatment(fresh, policies: .empty) == .relay)
        #expect(treatment(fresh) == .readFirst)
        // Unknown and not readable now (mid-batch): refused, never relayed.
        guard case .refuse = treatment(fresh, canRead: false) else {
            Issue.record("an unknown context must not relay")
            return
        }
        let state = known()
        guard case .mask = treatment(state) else {
            Issue.record("a masked context masks")
            return
        }
        #expect(treatment(state, policies: PolicySet(policies: policies.policies, version: 2)) == .readFirst)
    }

    @Test func superusersAreNeverMaskedAndTheirStandingIsReadWhenOld() {
        var state = MaskingState()
        state.parameterReported(name: "is_superuser", value: "on")
        // The catalog is asked once (a demotion reports nothing), even before the state
        // database's policies are known; mid-batch, is_superuser stands.
        #expect(treatment(state) == .readFirst)
        #expect(treatment(state, ready: false) == .readFirst)
        #expect(treatment(state, canRead: false) == .relay)
        var read = state
        read.install(MaskingContext(role: "postgres", tables: [], taintedRelations: [], riskyDefiners: [], policyVersion: 1),
                     worstCase: MaskingRewriterTests.context(), at: now, idle: true)
        #expect(read.isSuperuser && !read.isMasked)
        #expect(treatment(read) == .relay)
        #expect(treatment(read, at: .seconds(3)) == .readFirst)
        // Demoted: the catalog finds the policy masking the role.
        var demoted = state
        demoted.install(MaskingRewriterTests.context(), worstCase: MaskingRewriterTests.context(), at: now, idle: true)
        #expect(!demoted.isSuperuser && demoted.isMasked)
        guard case .mask = treatment(demoted) else {
            Issue.record("a demoted superuser's session is masked")
            return
        }
        var other = MaskingState()
        other.parameterReported(name: "is_superuser", value: "off")
        #expect(treatment(other, ready: false) == .refuse(AdminError("57P03", "not yet; statements of roles that could be masked are refused until it has",
                                                                     hint: "Check that pgclone's service role can log in to the state database; superusers are not affected.")))
    }

    /// A standing that cannot be read again for longer than `unreadableLimit` (a batch left
    /// open without Sync) is not taken on trust: an unmasked or superuser session is refused, a
    /// masked one is read under the worst case (round 18).
    @Test func aStandingNotReadForLongIsNotTrusted() {
        let late = Duration.seconds(11)
        var unmasked = MaskingState()
        var worstCase = MaskingRewriterTests.context()
        worstCase.isWorstCase = true
        unmasked.install(MaskingContext(role: "reader", tables: [], taintedRelations: [], riskyDefiners: [], policyVersion: 1), worstCase: worstCase, at: now, idle: true)
        #expect(treatment(unmasked, canRead: false) == .relay)
        #expect(treatment(unmasked, canRead: false, at: .seconds(5)) == .relay)
        #expect(treatment(unmasked, canRead: false, at: late) == .refuse(MaskingState.unconfirmed))
        #expect(treatment(unmasked, at: late) == .readFirst)
        var superuser = MaskingState()
        superuser.parameterReported(name: "is_superuser", value: "on")
        superuser.install(MaskingContext(role: "postgres", tables: [], taintedRelations: [], riskyDefiners: [], policyVersion: 1), worstCase: worstCase, at: now, idle: true)
        #expect(treatment(superuser, canRead: false, at: .seconds(5)) == .relay)
        #expect(treatment(superuser, canRead: false, at: late) == .refuse(MaskingState.unconfirmed))
        guard case .mask(let context) = treatment(known(), canRead: false, at: late), context.isWorstCase else {
            Issue.record("a masked session not read for long is read under the worst case")
            return
        }
    }

    /// A context read inside the client's REPEATABLE READ (or SERIALIZABLE) transaction sees
    /// the catalog as of its snapshot: a function unknown even to a fresh read may have been made
    /// since (a SECURITY DEFINER one, round 18), so it is refused there, and relayed elsewhere
    /// (where a fresh read not knowing it means it does not exist).
    @Test func aFunctionUnknownToAPinnedSnapshotIsRefused() {
        // The server backs the policy up (a current mask view, the role denied the column): user
        // functions may be called, the server's privileges deciding what they read.
        let view = MaskView.comment(schema: "test_schema", table: "employees", columns: [
            MaskView.Column(name: "id", type: "integer", strategy: nil), MaskView.Column(name: "email", type: "text", strategy: .email)])
        func rows(_ isolation: String) -> [[String?]] {
            [["user", "alice", isolation, nil, nil, nil],
             ["table", "0", "16500", "false:r:false:true:true", "test_schema", "employees"],
             ["view", "0", "16500", view, nil, nil],
             ["column", "0", "16500", "1", "id", "integer"],
             ["column", "0", "16500", "2", "email", "text"]]
        }
        // A known user function too, and from the shape cache.
        for known in [false, true] {
            var state = MaskingState()
            var known_rows = rows("read committed")
            if known { known_rows.append(["userfn", "old_one", nil, nil, nil, nil]) }
            state.contextRead(rows: known_rows, policies: policies, at: now, idle: false)
            _ = state.rewrite("SELECT test_schema.old_one()", under: state.context!, builtinFunctions: ["count"])
            var pinned = rows("repeatable read")
            if known { pinned.append(["userfn", "old_one", nil, nil, nil, nil]) }
            state.contextRead(rows: pinned, policies: policies, at: now, idle: false)
            guard case .refused = state.rewrite("SELECT test_schema.old_one()", under: state.context!, builtinFunctions: ["count"]).0 else {
                Issue.record("a user function called under a pinned snapshot (known: \(known)) was not refused")
                continue
            }
        }
        let sql = "SELECT test_schema.made_since()"
        for (isolation, idle, refused) in [("repeatable read", false, true), ("serializable", false, true), ("read committed", false, false), ("repeatable read", true, false)] {
            var state = MaskingState()
            state.contextRead(rows: rows(isolation), policies: policies, at: now, idle: idle)
            guard let context = state.context else {
                Issue.record("no context")
                return
            }
            let (result, _) = state.rewrite(sql, under: context, builtinFunctions: ["count"])
            if refused {
                guard case .refused(let error) = result else {
                    Issue.record("\(isolation), idle \(idle): \(result)")
                    continue
                }
                #expect(error.message.contains("not known to this transaction's snapshot"), "\(error.message)")
            } else {
                #expect(result == .unchanged, "\(isolation), idle \(idle): \(result)")
            }
        }
    }

    @Test func aRoleChangeReportedByTheServerMakesTheContextStale() {
        var state = known()
        state.parameterReported(name: "is_superuser", value: "off")
        guard case .mask = treatment(state) else { Issue.record("first report is not a change"); return }
        state.parameterReported(name: "is_superuser", value: "on")
        state.parameterReported(name: "is_superuser", value: "off")
        #expect(treatment(state) == .readFirst)
    }

    /// A statement that may change the role or the names, followed in the same batch by one that
    /// cannot wait for a read: that one is masked under the worst case, not relayed.
    @Test func statementsAfterARoleChangeInFlightGetTheWorstCase() {
        var exempt = MaskingRewriterTests.context()
        exempt.tables = []
        var state = known(exempt)
        #expect(treatment(state) == .relay)
        state.note(MaskingState.relayedEffects(Array("SET ROLE someone".utf8), mayRevert: false))
        guard case .mask(let context) = treatment(state, canRead: false) else {
            Issue.record("expected the worst case")
            return
        }
        #expect(context.isWorstCase && context.resolvesNamesConservatively)
        #expect(treatment(state, canRead: true) == .readFirst)
        // Once the server is quiet and the context read again, the session is what it is.
        state.serverQuiet()
        state.install(exempt, worstCase: exempt, at: now, idle: true)
        #expect(treatment(state) == .relay)
    }

    @Test func onlyRealRoleChangesCountNotWordsInNames() {
        #expect(MaskingState.relayedEffects(Array("SELECT role_id, roles FROM user_roles".utf8), mayRevert: false).isEmpty)
        #expect(MaskingState.relayedEffects(Array("SELECT * FROM first_names".utf8), mayRevert: false).isEmpty)
        #expect(MaskingState.relayedEffects(Array("set role x".utf8), mayRevert: false) == .role)
        #expect(MaskingState.relayedEffects(Array("RESET ALL".utf8), mayRevert: false) == .all)
        #expect(MaskingState.relayedEffects(Array("SELECT set_config('role', 'x', false)".utf8), mayRevert: false) == .all)
        #expect(MaskingState.relayedEffects(Array("SELECT set_config($1, 'x', false)".utf8), mayRevert: false) == .all)
        #expect(MaskingState.relayedEffects(Array("SELECT set_config('Search_Path', 'x', false)".utf8), mayRevert: false) == .all)
        #expect(MaskingState.relayedEffects(Array("UPDATE pg_settings SET setting = 'x' WHERE name = 'role'".utf8), mayRevert: false) == .all)
        // A constant setting that decides nothing (asyncpg turns jit off around its type introspection).
        #expect(MaskingState.relayedEffects(Array("SELECT current_setting('jit'), set_config('jit', 'off', false)".utf8), mayRevert: false).isEmpty)
        #expect(MaskingState.relayedEffects(Array("SET client_encoding = 'LATIN1'".utf8), mayRevert: false) == .reading)
        #expect(MaskingState.relayedEffects(Array("COMMIT".utf8), mayRevert: false).isEmpty)
        #expect(MaskingState.relayedEffects(Array("COMMIT".utf8), mayRevert: true) == .transactionEnd)
        #expect(MaskingState.changesRoleBeforeLast(Array("SET ROLE x; SELECT 1".utf8)))
        #expect(!MaskingState.changesRoleBeforeLast(Array("SELECT 1; SET ROLE x".utf8)))
        #expect(!MaskingState.changesRoleBeforeLast(Array("SELECT 'role;'".utf8)))
    }

    /// BEGIN ... COMMIT costs no read; a role changed inside a transaction may change back when
    /// it ends, so the end of that transaction makes the context stale.
    @Test func transactionsCostAReadOnlyWhenTheyChangedTheRole() {
        var state = known()
        for statement in ["BEGIN", "SELECT 1", "COMMIT"] {
            state.note(MaskingState.relayedEffects(Array(statement.utf8), mayRevert: state.mayRevertAtTransactionEnd))
        }
        guard case .mask = treatment(state) else { Issue.record("a plain transaction made the context stale"); return }
        state.note(.role)
        #expect(treatment(state) == .readFirst)
        // Read inside the transaction: the end of it may revert the role.
        state.install(MaskingRewriterTests.context(), worstCase: MaskingRewriterTests.context(), at: now, idle: false)
        state.serverQuiet()
        guard case .mask = treatment(state) else { Issue.record("read"); return }
        state.note(MaskingState.relayedEffects(Array("COMMIT".utf8), mayRevert: state.mayRevertAtTransactionEnd))
        #expect(treatment(state) == .readFirst)
        // Read while idle: nothing left to revert.
        state.install(MaskingRewriterTests.context(), worstCase: MaskingRewriterTests.context(), at: now, idle: true)
        #expect(!state.mayRevertAtTransactionEnd)
    }

    @Test func aFailedReadRefusesUntilAReadWorks() {
        var state = known()
        state.note(.role)
        let failure = AdminError("57014", "canceling statement due to user request")
        state.contextReadFailed(failure)
        // The statement that waited for the read gets its failure; the next one tries again,
        // or (mid-batch) is masked under the worst case.
        #expect(state.treatment(policies: policies, notReady: nil, canRead: true, isCopy: false, now: now) == .refuse(failure))
        #expect(treatment(state, canRead: true) == .readFirst)
        guard case .mask(let context) = treatment(state, canRead: false), context.isWorstCase else {
            Issue.record("expected the worst case")
            return
        }
    }

    @Test func aMaskedContextIsReadAgainWhenOld() {
        let state = known()
        guard case .mask = treatment(state, at: .seconds(1)) else { Issue.record("young"); return }
        #expect(treatment(state, at: .seconds(3)) == .readFirst)
        // Not readable now: the old context still masks.
        guard case .mask = treatment(state, canRead: false, at: .seconds(3)) else { Issue.record("old but usable"); return }
    }

    @Test func rewritesAreSharedByStatementsOfTheSameShape() {
        var state = known()
        let context = MaskingRewriterTests.context()
        let masked = MaskingRewriterTests.employees.maskedRelation(only: false).text
        for id in ["1", "4711", "2.5e3", "17"] {
            #expect(state.rewrite("SELECT email FROM test_schema.employees WHERE id = \(id) LIMIT 10", under: context, builtinFunctions: MaskingRewriterTests.builtins).0
                    == .rewritten("SELECT email FROM \(masked) AS \"employees\" WHERE id = \(id) LIMIT 10"))
        }
        #expect(state.cachedShapes == 1)
        #expect(state.rewrite("SELECT 1 WHERE 2 > 3", under: context, builtinFunctions: MaskingRewriterTests.builtins).0 == .unchanged)
        #expect(state.rewrite("SELECT 10 WHERE 20 > 30", under: context, builtinFunctions: MaskingRewriterTests.builtins).0 == .unchanged)
        #expect(state.cachedShapes == 2)
    }

    /// A statement that changes the role or the names before others in the same text: all of
    /// them are read under the worst case (names taken conservatively).
    @Test func aTextThatChangesTheNamesIsReadUnderTheWorstCase() {
        var state = known()
        let (result, effects) = state.rewrite("SET search_path = test_schema; SELECT email FROM employees", under: MaskingRewriterTests.context(),
                                              builtinFunctions: MaskingRewriterTests.builtins)
        let masked = MaskingRewriterTests.employees.maskedRelation(only: false).text
        #expect(result == .rewritten("SET search_path = test_schema; SELECT email FROM \(masked) AS \"employees\""))
        #expect(effects.contains(.names))
    }

    /// A new table or function elsewhere in the database changes the context but not how
    /// statements are rewritten: prepared statements and cached rewrites stay.
    @Test func onlyWhatDecidesRewritesStartsANewGeneration() {
        var context = MaskingRewriterTests.context()
        var state = known(context)
        let first = state.generation
        context.maximumRelationOID = 99_999
        context.userFunctions = ["someone_elses_function"]
        state.install(context, worstCase: state.worstCase!, at: now, idle: true)
        #expect(state.generation == first)
        context.taintedRelations.insert("new_view")
        state.install(context, worstCase: state.worstCase!, at: now, idle: true)
        #expect(state.generation == first + 1)
    }

    @Test func anUnknownFunctionAsksOnceThenTheServerDecides() {
        let context = MaskingRewriterTests.context(backedUp: true)
        var state = known(context)
        #expect(state.rewrite("SELECT 1", under: context, builtinFunctions: MaskingRewriterTests.builtins).0 == .unchanged)
        #expect(state.rewrite("SELECT brand_new()", under: context, builtinFunctions: MaskingRewriterTests.builtins).0 == .needsFreshContext(function: "brand_new"))
        #expect(treatment(state) == .readFirst)
        state.install(context, worstCase: state.worstCase!, at: now, idle: true)
        #expect(state.rewrite("SELECT brand_new()", under: context, builtinFunctions: MaskingRewriterTests.builtins).0 == .unchanged)
        #expect(state.rewrite("SELECT brand_new()", under: context, builtinFunctions: MaskingRewriterTests.builtins).0 == .needsFreshContext(function: "brand_new"))
    }

    @Test func wordsAreFoundIgnoringCaseWithoutCopies() {
        #expect(MaskingState.copyWord.matches(Array("COPY t TO STDOUT".utf8)))
        #expect(MaskingState.copyWord.matches(Array("xcOpY".utf8)))
        #expect(!MaskingState.copyWord.matches(Array("cop".utf8)))
        #expect(!MaskingState.copyWord.matches(Array("".utf8)))
        #expect(MaskingState.changeWords.matches(Array("x SET ROLE y".utf8)))
        #expect(MaskingState.changeWords.matches(Array("select set_CONFIG('a','b',false)".utf8)))
        #expect(!MaskingState.changeWords.matches(Array("SELECT abalance FROM pgbench_accounts WHERE aid = 1".utf8)))
    }
}
