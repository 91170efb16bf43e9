import NIOCore
import PostgresWire
@testable import Proxy
import Testing

struct ConsoleCommandTests {
    @Test func commandsAsPgBouncerSpellsThem() {
        #expect(ConsoleCommand.parse("SHOW CLIENTS") == .success(.show(.clients)))
        #expect(ConsoleCommand.parse("show   stats") == .success(.show(.stats)))
        #expect(ConsoleCommand.parse("RELOAD") == .success(.reload))
        #expect(ConsoleCommand.parse("pause") == .success(.pause(database: nil)))
        #expect(ConsoleCommand.parse("PAUSE db2") == .success(.pause(database: "db2")))
        #expect(ConsoleCommand.parse("RESUME \"My\"\"Db\"") == .success(.resume(database: "My\"Db")))
        #expect(ConsoleCommand.parse("KILL_CLIENT 12") == .success(.killClient(id: 12)))
        #expect(ConsoleCommand.parse("shutdown") == .success(.shutdown))
        #expect(ConsoleCommand.parseAll("SHOW VERSION; SHOW HELP;;").count == 2)
        #expect(ConsoleCommand.parseAll("  ;  ").isEmpty)
    }

    @Test func quotedNamesKeepTheirSpacesAndSemicolons() {
        #expect(ConsoleCommand.parse("PAUSE \"My DB\"") == .success(.pause(database: "My DB")))
        #expect(ConsoleCommand.parseAll("PAUSE \"a;b\"; SHOW STATS") == [.success(.pause(database: "a;b")), .success(.show(.stats))])
        guard case .failure(let long) = ConsoleCommand.parse(String(repeating: "x", count: 10_000)) else { Issue.record("accepted"); return }
        #expect(long.message.count < 120, "the error echoes at most a little of the input")
    }

    @Test func resumingOneDatabaseDoesNotLiftAPauseOfAll() {
        let gate = PauseGate()
        gate.pause(nil)
        #expect(!gate.resume("db2"))
        #expect(gate.isPaused("db2") && gate.isPaused("other"))
        #expect(gate.resume(nil))
        #expect(!gate.isPaused("db2"))
        gate.pause("db2")
        #expect(gate.isPaused("db2") && !gate.isPaused("other"))
        #expect(gate.resume("db2"))
        #expect(!gate.resume("db2"))
    }

    @Test func logLinesStayOneLine() {
        #expect(LiveLogLevel.escaped("db\n2026-11-29 critical FORGED") == "db\\n2026-11-29 critical FORGED")
        #expect(LiveLogLevel.escaped("tab\there\u{07}") == "tab\\there\\x07")
        #expect(LiveLogLevel.escaped("plain") == "plain")
    }

    @Test func mistakesGetClearErrors() {
        guard case .failure(let unknown) = ConsoleCommand.parse("SELECT 1") else { Issue.record("accepted"); return }
        #expect(unknown.sqlState == "42601")
        #expect(unknown.message == "unknown pgclone console command \"SELECT\"")
        guard case .failure(let topic) = ConsoleCommand.parse("SHOW USERS") else { Issue.record("accepted"); return }
        #expect(topic.sqlState == "42704")
        guard case .failure(let id) = ConsoleCommand.parse("KILL_CLIENT x") else { Issue.record("accepted"); return }
        #expect(id.sqlState == "22P02")
        guard case .failure(let extra) = ConsoleCommand.parse("RELOAD now") else { Issue.record("accepted"); return }
        #expect(extra.message == "RELOAD takes no arguments")
    }

    @Test func repliesAreRowDescriptionDataRowsAndATag() throws {
        var buffer = ByteBuffer()
        Console.Reply.rows(columns: [("key", "text"), ("changeable", "bool")], rows: [["log_level", "t"], ["listen", nil]], tag: "SHOW").encode(into: &buffer)
        var types: [UInt8] = []
        while let frame = try MessageFrame.read(from: &buffer) { types.append(frame.type) }
        #expect(types == [UInt8(ascii: "T"), UInt8(ascii: "D"), UInt8(ascii: "D"), UInt8(ascii: "C")])
        #expect(Console.oid(of: "bool") == 16 && Console.oid(of: "bigint") == 20 && Console.oid(of: "timestamptz") == 1184 && Console.oid(of: "text") == 25)
    }
}

/// The console as the session machine runs it: a role check after authentication, simple
/// queries answered by the proxy, the extended protocol refused at its Sync.
@Suite struct ConsoleSessionTests {
    let now = ContinuousClock.now

    func frame(_ message: FrontendMessage) -> MessageFrame {
        var buffer = ByteBuffer()
        message.encode(into: &buffer)
        return try! MessageFrame.read(from: &buffer)!
    }

    func server(_ machine: inout SessionStateMachine, _ message: BackendMessage) throws -> FrameScanner.Verdict {
        var buffer = ByteBuffer()
        message.encode(into: &buffer)
        let frame = try MessageFrame.read(from: &buffer)!
        guard try machine.serverHeader(type: frame.type) == .examine else { return .relay }
        return try machine.serverMessage(frame, now: now)
    }

    func client(_ machine: inout SessionStateMachine, _ message: FrontendMessage) throws -> FrameScanner.Verdict {
        let frame = frame(message)
        guard try machine.clientHeader(type: frame.type, length: frame.payload.readableBytes + 4) == .examine else { return .relay }
        return try machine.clientMessage(frame, now: now)
    }

    /// A console session up to its role check, answered with `superuser` and `member`.
    func console(superuser: Bool, member: Bool) throws -> SessionStateMachine {
        var machine = SessionStateMachine(tlsAvailable: false, adminRoles: ["ops"], maximumExaminedLength: 1 << 16)
        var packet = ByteBuffer()
        StartupPacket.startup(protocolVersion: .v3_0, parameters: [("user", "alice"), ("database", "pgclone")]).encode(into: &packet)
        guard case .connectBackend = machine.startupBytes(packet) else { throw ConsoleTestFailure() }
        machine.enterConsole()
        machine.backendConnected()
        _ = try server(&machine, .authentication(.ok))
        #expect(try server(&machine, .readyForQuery(.idle)) == .consume, "ReadyForQuery waits for the role check")
        let effects = machine.takeEffects()
        #expect(effects.contains { if case .sendToServer = $0 { true } else { false } }, "the role check goes to the server")
        #expect(try server(&machine, .dataRow(DataRow(values: ["alice", "postgres", superuser ? "t" : "f", member ? "t" : "f"].map { ByteBuffer(string: $0) }))) == .consume)
        #expect(try server(&machine, .commandComplete(tag: "SELECT 1")) == .consume)
        #expect(try server(&machine, .readyForQuery(.idle)) == .consume)
        return machine
    }

    @Test func aMemberOfAnAdminRoleGetsTheConsoleAndOthersAreRefused() throws {
        var member = try console(superuser: false, member: true)
        #expect(member.consoleMode == .ready)
        let opened = member.takeEffects()
        #expect(opened.contains { if case .consoleOpened = $0 { true } else { false } })
        // The client hears ReadyForQuery only now, after the check.
        #expect(opened.contains { if case .sendToClient = $0 { true } else { false } })
        var stranger = try console(superuser: false, member: false)
        let refusal = stranger.takeEffects().compactMap { effect -> ErrorFields? in
            if case .closeWithError(let fields, _) = effect { fields } else { nil }
        }.first
        #expect(refusal?.sqlState == "42501")
        #expect(refusal?.message == "permission denied for the pgclone console")
    }

    @Test func simpleQueriesRunInTheProxyOneAtATime() throws {
        var machine = try console(superuser: true, member: false)
        _ = machine.takeEffects()
        #expect(try client(&machine, .query("SHOW CLIENTS")) == .consumeAndPause)
        #expect(machine.takeEffects().contains { if case .runConsole("SHOW CLIENTS") = $0 { true } else { false } })
        // The next command waits for the answer to this one.
        #expect(try client(&machine, .query("SHOW STATS")) == .pauseBefore)
        machine.consoleFinished()
        #expect(machine.takeEffects().contains { if case .resumeClientInput = $0 { true } else { false } })
        #expect(try client(&machine, .query("SHOW STATS")) == .consumeAndPause)
        // Terminate goes to the server, which ends the session.
        let terminate = frame(.terminate)
        #expect(try machine.clientHeader(type: terminate.type, length: 4) == .pass)
    }

    @Test func theExtendedProtocolGetsOneErrorAtSync() throws {
        var machine = try console(superuser: true, member: false)
        _ = machine.takeEffects()
        #expect(try client(&machine, .parse(.init(statementName: "", query: "SHOW CLIENTS", parameterTypes: []))) == .consume)
        #expect(try client(&machine, .sync) == .consume)
        let sent = machine.takeEffects().compactMap { effect -> ByteBuffer? in
            if case .sendToClient(let buffer) = effect { buffer } else { nil }
        }
        var buffer = try #require(sent.first)
        var messages: [BackendMessage] = []
        while let frame = try MessageFrame.read(from: &buffer) { messages.append(try BackendMessage.decode(frame)) }
        guard messages.count == 2, case .errorResponse(let error) = messages[0], case .readyForQuery(.idle) = messages[1] else {
            Issue.record("\(messages)")
            return
        }
        #expect(error.sqlState == "0A000")
    }
}

struct ConsoleTestFailure: Error {}
