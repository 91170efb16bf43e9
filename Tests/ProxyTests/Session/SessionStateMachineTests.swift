import CloneEngine
import Masking
import NIOCore
import PostgresWire
@testable import Proxy
import Testing

/// The session machine driven by messages, as a wire trace: no socket, no server.
@Suite struct SessionStateMachineTests {
    let policies = PolicySet(policies: [TablePolicy(schema: "test_schema", table: "employees", unmaskedRoles: [],
                                                    columns: [.init(name: "email", strategy: .email)], source: "test")], version: 1)
    let now = ContinuousClock.now

    // MARK: - Helpers

    static func frame(_ message: FrontendMessage) -> MessageFrame {
        var buffer = ByteBuffer()
        message.encode(into: &buffer)
        return try! MessageFrame.read(from: &buffer)!
    }

    static func frame(_ message: BackendMessage) -> MessageFrame {
        var buffer = ByteBuffer()
        message.encode(into: &buffer)
        return try! MessageFrame.read(from: &buffer)!
    }

    /// The client sends `message`: the header decision, then (when examined) the verdict.
    mutating func client(_ machine: inout SessionStateMachine, _ message: FrontendMessage) throws -> FrameScanner.Verdict {
        let frame = Self.frame(message)
        guard try machine.clientHeader(type: frame.type, length: frame.payload.readableBytes + 4) == .examine else { return .relay }
        return try machine.clientMessage(frame, now: now)
    }

    /// The client sends `message`; a statement analysed off the event loop is analysed here and
    /// judged again, as the handler does.
    mutating func judged(_ machine: inout SessionStateMachine, _ message: FrontendMessage) throws -> FrameScanner.Verdict {
        let frame = Self.frame(message)
        guard try machine.clientHeader(type: frame.type, length: frame.payload.readableBytes + 4) == .examine else { return .relay }
        var verdict = try machine.clientMessage(frame, now: now)
        while verdict == .pauseBefore {
            let jobs = machine.takeEffects().compactMap { effect -> SessionStateMachine.AnalysisJob? in
                if case .analyze(let job) = effect { job } else { nil }
            }
            guard let job = jobs.first else { break }
            machine.analysisFinished(job.run())
            #expect(machine.takeEffects().contains { if case .resumeClientInput = $0 { true } else { false } })
            verdict = try machine.clientMessage(frame, now: now)
        }
        return verdict
    }

    /// The server sends `message`.
    func server(_ machine: inout SessionStateMachine, _ message: BackendMessage) throws -> FrameScanner.Verdict {
        let frame = Self.frame(message)
        guard try machine.serverHeader(type: frame.type) == .examine else { return .relay }
        return try machine.serverMessage(frame, now: now)
    }

    /// A machine past authentication, as `superuser` or not, with `policies` in force; the
    /// context read it starts (if any) is answered with `contextRows`.
    mutating func ready(superuser: Bool, policies: PolicySet? = nil, contextRows: [[String?]]? = nil) throws -> SessionStateMachine {
        var machine = SessionStateMachine(tlsAvailable: false, adminRoles: [], maximumExaminedLength: 1 << 16)
        machine.observe(policies: policies ?? self.policies, notReady: nil, builtinFunctions: ["upper", "count"])
        var packet = ByteBuffer()
        StartupPacket.startup(protocolVersion: .v3_0, parameters: [("user", "alice"), ("database", "db")]).encode(into: &packet)
        guard case .connectBackend = machine.startupBytes(packet) else { throw Failure("no connect") }
        machine.backendConnected()
        _ = try server(&machine, .authentication(.ok))
        _ = try server(&machine, .parameterStatus(name: "is_superuser", value: superuser ? "on" : "off"))
        _ = try server(&machine, .parameterStatus(name: "client_encoding", value: "UTF8"))
        _ = try server(&machine, .readyForQuery(.idle))
        let effects = machine.takeEffects()
        if let contextRows {
            #expect(effects.contains { if case .sendToServer = $0 { true } else { false } }, "a context read starts after authentication")
            try answerContextRead(&machine, rows: contextRows)
            #expect(machine.takeEffects().contains { if case .resumeClientInput = $0 { true } else { false } })
        }
        return machine
    }

    /// Answers the proxy's own context read (wrapped in BEGIN READ ONLY ... COMMIT).
    func answerContextRead(_ machine: inout SessionStateMachine, rows: [[String?]], error: ErrorFields? = nil) throws {
        for row in rows {
            #expect(try server(&machine, .dataRow(DataRow(values: row.map { $0.map { ByteBuffer(string: $0) } }))) == .consume)
        }
        if let error { #expect(try server(&machine, .errorResponse(error)) == .consume) }
        #expect(try server(&machine, .commandComplete(tag: "COMMIT")) == .consume)
        #expect(try server(&machine, .readyForQuery(.idle)) == .consume)
    }

    /// Context rows: the role, and test_schema.employees masked (email) or not.
    static func contextRows(masked: Bool) -> [[String?]] {
        [["user", "alice", nil, nil, nil, nil],
         ["table", "0", "16500", "false:r:false:\(masked)", "test_schema", "employees"],
         ["column", "0", "16500", "1", "id", "integer"],
         ["column", "0", "16500", "2", "email", "text"]]
    }

    static func queryText(_ verdict: FrameScanner.Verdict) -> String? {
        guard case .replace(var buffer) = verdict, let frame = try? MessageFrame.read(from: &buffer),
              case .query(let text)? = try? FrontendMessage.decode(frame) else { return nil }
        return text
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    // MARK: - Traces

    @Test mutating func statementsPipelinedBehindAuthenticationWaitForIt() throws {
        var machine = SessionStateMachine(tlsAvailable: false, adminRoles: [], maximumExaminedLength: 1 << 16)
        machine.observe(policies: policies, notReady: nil, builtinFunctions: nil)
        var packet = ByteBuffer()
        StartupPacket.startup(protocolVersion: .v3_0, parameters: [("user", "alice")]).encode(into: &packet)
        _ = machine.startupBytes(packet)
        machine.backendConnected()
        #expect(try client(&machine, .authenticationResponse(ByteBuffer(string: "password"))) == .relay)
        #expect(try client(&machine, .query("SELECT email FROM test_schema.employees")) == .pauseBefore)
        _ = try server(&machine, .authentication(.ok))
        _ = try server(&machine, .readyForQuery(.idle))
        let effects = machine.takeEffects()
        #expect(effects.contains { if case .sessionOpened = $0 { true } else { false } })
        #expect(effects.contains { if case .resumeClientInput = $0 { true } else { false } })
    }

    /// A superuser's standing is asked of the catalog once (ALTER ROLE ... NOSUPERUSER reports
    /// nothing to an open session), then its statements go as written: no read, no rewrite, until
    /// the read is old.
    @Test mutating func aSuperuserIsReadOnceThenPaysNoReadAndNoRewrite() throws {
        var machine = try ready(superuser: true)
        #expect(machine.takeEffects().isEmpty)
        #expect(try client(&machine, .query("SELECT email FROM test_schema.employees")) == .pauseBefore)
        #expect(machine.takeEffects().contains { if case .sendToServer = $0 { true } else { false } })
        try answerContextRead(&machine, rows: Self.contextRows(masked: false))
        _ = machine.takeEffects()
        #expect(machine.masking.isSuperuser)
        #expect(try client(&machine, .query("SELECT email FROM test_schema.employees")) == .relay)
        #expect(machine.takeEffects().isEmpty)
        #expect(try client(&machine, .query("SELECT email FROM test_schema.employees")) == .relay)
        #expect(machine.takeEffects().isEmpty)
    }

    /// A portal suspended in a batch left open with Flush (no Sync, the last ReadyForQuery said
    /// idle) is not read on after the policies change: its rows were read under the old ones
    /// (round 18).
    @Test mutating func aPortalOfABatchLeftOpenIsNotReadAfterAPolicyChange() throws {
        var machine = try ready(superuser: false, contextRows: Self.contextRows(masked: true))
        _ = try judged(&machine, .parse(.init(statementName: "", query: "SELECT id FROM test_schema.employees", parameterTypes: [])))
        _ = try judged(&machine, .bind(.init(portalName: "", statementName: "", parameterFormats: [], parameters: [], resultFormats: [])))
        _ = try judged(&machine, .execute(portal: "", maxRows: 1))
        _ = try judged(&machine, .flush)
        _ = machine.takeEffects()
        machine.observe(policies: PolicySet(policies: policies.policies, version: policies.version + 1), notReady: nil, builtinFunctions: nil)
        #expect(try judged(&machine, .execute(portal: "", maxRows: 1)) == .consume)
        #expect(machine.takeEffects().contains { if case .closeWithError(let fields, _) = $0 { fields.sqlState == "57P01" } else { false } })
    }

    /// SET TRANSACTION (and SET SESSION CHARACTERISTICS) read nothing and must come before any
    /// query of the transaction: the proxy's own read never goes before them (round 19: 25001).
    @Test func setTransactionIsTransactionControl() {
        for text in ["SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "set transaction read only, deferrable", "SET TRANSACTION SNAPSHOT '00000003-0000001B-1'",
                     "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ", "BEGIN; SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"] {
            #expect(TransactionControl.only(Array(text.utf8)), "\(text)")
        }
        for text in ["SET search_path = x", "SET ROLE x", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; SELECT 1", "SELECT 1"] {
            #expect(!TransactionControl.only(Array(text.utf8)), "\(text)")
        }
    }

    /// The catalog finds the policy masking a role that is_superuser still calls a superuser
    /// (demoted while the session is open): the session is masked.
    @Test mutating func aDemotedSuperuserIsMasked() throws {
        var machine = try ready(superuser: true)
        #expect(try client(&machine, .query("SELECT email FROM test_schema.employees")) == .pauseBefore)
        try answerContextRead(&machine, rows: Self.contextRows(masked: true))
        #expect(!machine.masking.isSuperuser)
        #expect(machine.masking.isMasked)
    }

    @Test mutating func aMaskedRolesStatementIsRewrittenOnceTheContextIsKnown() throws {
        var machine = try ready(superuser: false, contextRows: Self.contextRows(masked: true))
        // Parsing happens off the event loop: the statement waits, then is judged with the analysis.
        let frame = Self.frame(.query("SELECT email FROM test_schema.employees"))
        #expect(try machine.clientHeader(type: frame.type, length: frame.payload.readableBytes + 4) == .examine)
        #expect(try machine.clientMessage(frame, now: now) == .pauseBefore)
        guard case .analyze(let job)? = machine.takeEffects().first else { throw Failure("no analysis asked for") }
        machine.analysisFinished(job.run())
        #expect(machine.takeEffects().contains { if case .resumeClientInput = $0 { true } else { false } })
        let verdict = try machine.clientMessage(frame, now: now)
        let text = try #require(Self.queryText(verdict))
        #expect(text.hasPrefix("SELECT email FROM (SELECT \"id\", "), "\(text)")
    }

    @Test mutating func anUnmaskedRoleRelaysAndATransactionCostsNoRead() throws {
        var machine = try ready(superuser: false, contextRows: Self.contextRows(masked: false))
        for statement in ["BEGIN", "SELECT email FROM test_schema.employees", "COMMIT", "SELECT 1"] {
            #expect(try client(&machine, .query(statement)) == .relay, "\(statement)")
            _ = try server(&machine, .readyForQuery(statement == "BEGIN" ? .inTransaction : .idle))
            #expect(machine.takeEffects().isEmpty, "\(statement): no read of the proxy's own")
        }
    }

    /// SET ROLE and a statement pipelined after it: the second cannot wait for a read (the first
    /// is still in flight), so it is masked under the worst case; once quiet, the role is read.
    @Test mutating func aStatementPipelinedAfterARoleChangeGetsTheWorstCase() throws {
        var machine = try ready(superuser: false, contextRows: Self.contextRows(masked: false))
        #expect(try client(&machine, .query("SET ROLE bob")) == .relay)
        let second = try judged(&machine, .query("SELECT email FROM test_schema.employees"))
        #expect(Self.queryText(second)?.contains("'***@'") == true, "\(second)")
        _ = try server(&machine, .readyForQuery(.idle))
        _ = try server(&machine, .readyForQuery(.idle))
        #expect(try client(&machine, .query("SELECT 1")) == .pauseBefore)
        guard case .sendToServer(var buffer)? = machine.takeEffects().first, let frame = try MessageFrame.read(from: &buffer),
              case .query(let read)? = try? FrontendMessage.decode(frame) else { throw Failure("no context read") }
        #expect(read.hasPrefix("BEGIN READ ONLY; SET LOCAL statement_timeout = 0;"))
    }

    /// A read that fails (here: a cancel meant for the statement that waited) puts the session
    /// back with ROLLBACK, refuses that statement with the cancel's error, and never relays it.
    @Test mutating func aFailedReadIsUndoneAndTheStatementRefused() throws {
        var machine = try ready(superuser: false)
        #expect(try client(&machine, .query("SELECT email FROM test_schema.employees")) == .pauseBefore)
        _ = machine.takeEffects()
        try answerContextRead(&machine, rows: [], error: ErrorFields(severity: .error, sqlState: "57014", message: "canceling statement due to user request"))
        guard case .sendToServer(var buffer)? = machine.takeEffects().first, let frame = try MessageFrame.read(from: &buffer),
              case .query("ROLLBACK")? = try? FrontendMessage.decode(frame) else { throw Failure("no restore") }
        #expect(try server(&machine, .commandComplete(tag: "ROLLBACK")) == .consume)
        #expect(try server(&machine, .readyForQuery(.idle)) == .consume)
        #expect(machine.takeEffects().contains { if case .resumeClientInput = $0 { true } else { false } })
        let refused = try client(&machine, .query("SELECT email FROM test_schema.employees"))
        #expect(Self.queryText(refused)?.contains("canceling statement due to user request") == true, "\(refused)")
    }

    /// In a failed transaction the proxy reads nothing, and ROLLBACK always passes.
    @Test mutating func rollbackPassesInAFailedTransactionWhateverIsKnown() throws {
        var machine = try ready(superuser: false, contextRows: Self.contextRows(masked: true))
        #expect(try client(&machine, .query("BEGIN")) == .relay)
        _ = try server(&machine, .readyForQuery(.inTransaction))
        #expect(try judged(&machine, .query("SET ROLE bob")) == .relay)
        _ = try server(&machine, .readyForQuery(.failed))
        #expect(try client(&machine, .query("ROLLBACK")) == .relay)
        #expect(machine.takeEffects().isEmpty)
        var extended = try ready(superuser: false, contextRows: Self.contextRows(masked: true))
        #expect(try judged(&extended, .query("SET ROLE bob")) == .relay)
        _ = try server(&extended, .readyForQuery(.failed))
        #expect(try client(&extended, .parse(.init(statementName: "", query: "ROLLBACK", parameterTypes: []))) == .relay)
    }

    /// A Parse refused for a parameter of a type that is not built in is replaced by one whose
    /// parameters are text: the client's Bind must not run that type's input function or
    /// domain checks on the server.
    @Test mutating func aRefusedParseKeepsNoTypeThatIsNotBuiltIn() throws {
        var machine = try ready(superuser: false, contextRows: Self.contextRows(masked: true))
        let verdict = try judged(&machine, .parse(.init(statementName: "s1", query: "SELECT $1, $2", parameterTypes: [190_000, 23])))
        guard case .replace(var buffer) = verdict, let frame = try MessageFrame.read(from: &buffer),
              case .parse(let parse) = try FrontendMessage.decode(frame) else { throw Failure("not replaced by a Parse: \(verdict)") }
        #expect(parse.parameterTypes == [25, 23])
        #expect(parse.query.contains("is not built in"), "\(parse.query)")
    }

    /// The policies change inside a transaction: an Execute on its own first has the context
    /// read; one in the middle of a batch (no read possible) of a portal bound before (suspended
    /// by an Execute with a row limit) is not read on, the session ends; a portal bound since runs.
    @Test mutating func aPortalOpenedBeforeAMaskingChangeIsNotReadOn() throws {
        var machine = try ready(superuser: false, contextRows: Self.contextRows(masked: false))
        _ = try server(&machine, .readyForQuery(.inTransaction))
        var newer = policies
        newer.version += 1
        machine.observe(policies: newer, notReady: nil, builtinFunctions: nil)
        #expect(try client(&machine, .execute(portal: "old", maxRows: 2)) == .pauseBefore)
        #expect(machine.takeEffects().contains { if case .sendToServer = $0 { true } else { false } })

        var batch = try ready(superuser: false, contextRows: Self.contextRows(masked: false))
        _ = try server(&batch, .readyForQuery(.inTransaction))
        batch.observe(policies: newer, notReady: nil, builtinFunctions: nil)
        _ = try client(&batch, .describe(.portal("other")))
        #expect(try client(&batch, .execute(portal: "old", maxRows: 2)) == .consume)
        #expect(batch.takeEffects().contains { if case .closeWithError(let fields, _) = $0 { fields.sqlState == "57P01" } else { false } })

        var fresh = try ready(superuser: false, contextRows: Self.contextRows(masked: false))
        _ = try server(&fresh, .readyForQuery(.inTransaction))
        fresh.observe(policies: newer, notReady: nil, builtinFunctions: nil)
        // (In the middle of a batch: no context read can run before the Bind.)
        _ = try client(&fresh, .describe(.portal("other")))
        _ = try client(&fresh, .bind(.init(portalName: "new", statementName: "", parameterFormats: [], parameters: [], resultFormats: [])))
        _ = fresh.takeEffects()
        #expect(try client(&fresh, .execute(portal: "new", maxRows: 2)) == .relay)
        // The transaction over, portals are gone, and the guard with them; a portal no Bind of
        // the session opened (a cursor's name) is not read while it may be masked.
        _ = try server(&fresh, .readyForQuery(.idle))
        #expect(fresh.portalsBoundSinceMaskingChanged == nil)
        #expect(try client(&fresh, .execute(portal: "any", maxRows: 0)) == .consume)
    }

    @Test mutating func aStatementTooLongToReadIsRefusedWhileMaskingIsInPlay() throws {
        var machine = try ready(superuser: false, contextRows: Self.contextRows(masked: true))
        let long = "SELECT '" + String(repeating: "x", count: 70_000) + "'"
        let frame = Self.frame(.query(long))
        #expect(throws: WireError.self) { try machine.clientHeader(type: frame.type, length: frame.payload.readableBytes + 4) }
        var superuser = try ready(superuser: true)
        #expect(try superuser.clientHeader(type: frame.type, length: frame.payload.readableBytes + 4) == .pass)
    }

    /// The real process ID goes to the client with a secret of the proxy's.
    @Test mutating func theClientGetsTheServersPidAndTheProxysSecret() throws {
        var machine = SessionStateMachine(tlsAvailable: false, adminRoles: [], maximumExaminedLength: 1 << 16)
        var packet = ByteBuffer()
        StartupPacket.startup(protocolVersion: .v3_0, parameters: [("user", "alice")]).encode(into: &packet)
        _ = machine.startupBytes(packet)
        machine.backendConnected()
        let server = BackendKey(processID: 4711, secretKey: 42)
        guard case .replace(var buffer) = try self.server(&machine, .backendKeyData(server)), let frame = try MessageFrame.read(from: &buffer),
              case .backendKeyData(let client) = try BackendMessage.decode(frame) else { throw Failure("not replaced") }
        #expect(client.processID == 4711)
        guard case .registerCancelKey(let registered, let issued)? = machine.takeEffects().first else { throw Failure("no registration") }
        #expect(registered == server && issued == client)
    }

    @Test mutating func scramPlusIsWithheld() throws {
        var machine = SessionStateMachine(tlsAvailable: false, adminRoles: [], maximumExaminedLength: 1 << 16)
        var packet = ByteBuffer()
        StartupPacket.startup(protocolVersion: .v3_0, parameters: [("user", "alice")]).encode(into: &packet)
        _ = machine.startupBytes(packet)
        machine.backendConnected()
        guard case .replace(var buffer) = try server(&machine, .authentication(.sasl(mechanisms: ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]))),
              let frame = try MessageFrame.read(from: &buffer) else { throw Failure("not replaced") }
        #expect(try BackendMessage.decode(frame) == .authentication(.sasl(mechanisms: ["SCRAM-SHA-256"])))
    }

    @Test mutating func aFatalErrorFromTheServerEndsTheSession() throws {
        var machine = try ready(superuser: true)
        #expect(try server(&machine, .errorResponse(ErrorFields(severity: .error, sqlState: "42P01", message: "relation does not exist"))) == .relay)
        #expect(!machine.serverEndedSession)
        #expect(try server(&machine, .errorResponse(ErrorFields(severity: .fatal, sqlState: "57P01", message: "terminating connection due to administrator command"))) == .relay)
        #expect(machine.serverEndedSession)
    }
}
