import Foundation
import Proxy
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import PostgresWire
import Testing

/// The proxy as a separate process, churned with 20,000 connections closed in every way a
/// client closes them: its resident memory must not grow with the number of connections served.
@Suite struct ConnectionChurnTests {
    /// One way a client comes and goes.
    enum Cycle: CaseIterable {
        /// Startup, a query, Terminate.
        case session
        /// Startup and a query, then the socket closes without Terminate.
        case abandonedSession
        /// SSLRequest, the 'N', then close.
        case sslRequestOnly
        /// Connect and close without a byte.
        case silent
        /// Half a startup packet, then close.
        case truncatedStartup

        func run(port: Int) throws {
            let raw = try RawConnection(port: port)
            switch self {
            case .session, .abandonedSession:
                let login = try raw.startTrusted(user: "auth_trust")
                guard login.last == .readyForQuery(.idle) else { throw RawError("login: \(login)") }
                try raw.send(.query("SELECT 1"))
                _ = try raw.receive(until: .readyForQuery)
                if self == .session { try raw.send(.terminate) }
            case .sslRequestOnly:
                try raw.send(StartupPacket.sslRequest)
                guard let answer = try raw.receiveBytes(), answer.readableBytesView.first == UInt8(ascii: "N") else { throw RawError("no 'N'") }
            case .silent:
                break
            case .truncatedStartup:
                var packet = ByteBuffer()
                StartupPacket.startup(protocolVersion: .v3_0, parameters: [("user", "auth_trust")]).encode(into: &packet)
                try raw.send(packet.getSlice(at: 0, length: 6)!)
            }
        }
    }

    /// Starts the built binary's `serve` on a free port (with at most `descriptorLimit` open
    /// files), its log in a file, and waits until it accepts connections.
    static func launchProxy(_ environment: TestEnvironment, descriptorLimit: Int? = nil, softDescriptorLimit: Int? = nil,
                            sharesStateDatabase: Bool = false, arguments: [String]) async throws -> (ChildProcess, Int, URL) {
        try await TargetRoles.ensure()
        let arguments = arguments + (sharesStateDatabase ? [] : ["--state-database", TargetRoles.cliStateDatabase])
        // A port the kernel just handed out (and was let go): a random one could be a client
        // port of a churn, still in TIME_WAIT.
        let probe = try await ServerBootstrapHelper.occupyPort()
        let port = probe.port
        probe.close()
        let log = URL(fileURLWithPath: environment.directory).appendingPathComponent("proxy-\(port)-\(UInt32.random(in: 0...UInt32.max)).log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let limit = (descriptorLimit.map { "ulimit -n \($0) && " } ?? "") + (softDescriptorLimit.map { "ulimit -Sn \($0) && " } ?? "")
        let process = try ChildProcess("/bin/sh", ["-c", "\(limit)backend=\"$1\"; shift; exec \"$0\" serve --listen 127.0.0.1:\(port) --backend \"$backend\" \"$@\"",
                                                   CommandLineTests.binary, environment.backendConnInfo] + arguments,
                                       error: .file(log.path))
        try await waitFor("the proxy to accept connections") {
            guard process.isRunning else { throw RawError("the proxy exited: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")") }
            return (try? Cycle.silent.run(port: port)) != nil
        }
        return (process, port, log)
    }

    static func residentKilobytes(_ pid: Int32) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let value = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap({ Int($0) }) else {
            throw RawError("no VmRSS for \(pid)")
        }
        return value
    }

    /// Runs `count` cycles on `workers` threads, the kinds in turn.
    static func churn(port: Int, count: Int, workers: Int = 4) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<workers {
                group.addTask {
                    try await offPool {
                        for index in stride(from: worker, to: count, by: workers) {
                            try Cycle.allCases[index % Cycle.allCases.count].run(port: port)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    @Test(.timeLimit(.minutes(5))) func residentMemoryStaysFlatOver20000Connections() async throws {
        let environment = try TestEnvironment.require()
        try await TargetRoles.ensure()
        let (process, port, _) = try await Self.launchProxy(environment, arguments: ["--log-level", "error"])
        defer { if process.isRunning { process.terminate() } }

        try await Self.churn(port: port, count: 1_000)
        try await Task.sleep(for: .milliseconds(500))
        let after1000 = try Self.residentKilobytes(process.processIdentifier)
        try await Self.churn(port: port, count: 19_000)
        try await Task.sleep(for: .milliseconds(500))
        let after20000 = try Self.residentKilobytes(process.processIdentifier)
        print("pgclone RSS after 1,000 connections: \(after1000) kB; after 20,000: \(after20000) kB")
        #expect(after20000 - after1000 < 2_048, "RSS grew from \(after1000) kB to \(after20000) kB")
    }

    /// CPU seconds the process has used (user + system).
    static func cpuSeconds(_ pid: Int32) throws -> Double {
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        // Fields after the command name (which is in parentheses and may hold spaces).
        let fields = stat[stat.index(after: stat.lastIndex(of: ")")!)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { throw RawError("no times in \(stat)") }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Started under a soft descriptor limit below the hard one (1,024 under most container
    /// runtimes and service managers), the proxy raises its own to the hard limit and says so.
    @Test func theProxyRaisesItsSoftDescriptorLimitToTheHardOne() async throws {
        let environment = try TestEnvironment.require()
        let hard = try #require(DescriptorLimit.current()).hard
        let (process, _, log) = try await Self.launchProxy(environment, softDescriptorLimit: 256, arguments: ["--log-level", "info"])
        defer { if process.isRunning { process.terminate() } }
        let limits = try String(contentsOfFile: "/proc/\(process.processIdentifier)/limits", encoding: .utf8)
        let line = try #require(limits.split(separator: "\n").first { $0.hasPrefix("Max open files") })
        let values = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).prefix(2).map(String.init)
        let expected = String(min(hard, 1 << 20))
        #expect(values == [expected, String(hard)], "\(line)")
        let text = try String(contentsOf: log, encoding: .utf8)
        #expect(text.contains("descriptor limit raised to the hard limit") && text.contains("from=256") && text.contains("to=\(expected)"), "\(text)")
    }

    /// Out of descriptors, the proxy stops accepting (no busy loop), says so once, and accepts
    /// again once descriptors free.
    @Test(.timeLimit(.minutes(2))) func atTheDescriptorLimitTheProxyWaitsSaysSoOnceAndRecovers() async throws {
        let environment = try TestEnvironment.require()
        try await TargetRoles.ensure()
        let (process, port, log) = try await Self.launchProxy(environment, descriptorLimit: 64,
                                                              arguments: ["--max-client-conn", "1000", "--log-level", "notice"])
        defer { if process.isRunning { process.terminate() } }

        // Silent clients hold a descriptor each until there are none left.
        var holders: [RawConnection] = []
        for _ in 0..<80 { holders.append(try RawConnection(port: port)) }
        try await Task.sleep(for: .seconds(2))
        let before = try Self.cpuSeconds(process.processIdentifier)
        try await Task.sleep(for: .seconds(3))
        let spent = try Self.cpuSeconds(process.processIdentifier) - before
        #expect(spent < 0.3, "the proxy used \(spent) s of CPU in 3 s while out of descriptors")
        // A client now waits (it is in the listen backlog, not refused).
        let waiting = try RawConnection(port: port, timeoutSeconds: 1)
        #expect(throws: (any Error).self) { _ = try waiting.startTrusted(user: "auth_trust") }

        holders.removeAll()
        try await waitFor("a session once descriptors are free", seconds: 10) {
            guard let raw = try? RawConnection(port: port, timeoutSeconds: 2), let login = try? raw.startTrusted(user: "auth_trust") else { return false }
            return login.last == .readyForQuery(.idle)
        }
        // Once per outage: the backlog of connections that waited can fill the descriptors again
        // for a moment, each outage said once when it starts and once when it ends.
        let text = try String(contentsOf: log, encoding: .utf8)
        let outages = text.components(separatedBy: "cannot accept new connections").count - 1
        #expect(outages >= 1 && outages <= 3, "\(text)")
        #expect(text.contains("out of file descriptors"), "\(text)")
        #expect(text.components(separatedBy: "accepting new connections again").count - 1 == outages, "\(text)")
    }
}
