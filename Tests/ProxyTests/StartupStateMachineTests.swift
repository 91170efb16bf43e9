import NIOCore
import PostgresWire
@testable import Proxy
import Testing

@Suite struct StartupStateMachineTests {
    private func bytes(_ packets: StartupPacket...) -> ByteBuffer {
        var buffer = ByteBuffer()
        for packet in packets { packet.encode(into: &buffer) }
        return buffer
    }

    private let startup = StartupPacket.startup(protocolVersion: .v3_0, parameters: [("user", "alice"), ("database", "db2"), ("application_name", "psql")])

    @Test func plainStartupConnectsWithPacketVerbatim() {
        var machine = StartupStateMachine(tlsAvailable: false)
        let input = bytes(startup)
        #expect(machine.bytesReceived(input) == .connectBackend(packet: input, user: "alice", database: "db2", applicationName: "psql", leftover: ByteBuffer()))
    }

    @Test func fragmentedStartupWaitsThenConnects() {
        var machine = StartupStateMachine(tlsAvailable: false)
        let input = bytes(startup)
        for index in 0..<(input.readableBytes - 1) {
            #expect(machine.bytesReceived(input.getSlice(at: index, length: 1)!) == .wait)
        }
        guard case .connectBackend(let packet, _, _, _, _) = machine.bytesReceived(input.getSlice(at: input.readableBytes - 1, length: 1)!) else {
            Issue.record("expected connectBackend")
            return
        }
        #expect(packet == input)
    }

    @Test func sslAcceptedWhenConfiguredThenStartup() {
        var machine = StartupStateMachine(tlsAvailable: true)
        #expect(machine.bytesReceived(bytes(.sslRequest)) == .acceptTLS)
        guard case .connectBackend = machine.bytesReceived(bytes(startup)) else {
            Issue.record("expected connectBackend")
            return
        }
    }

    @Test func plaintextPipelinedAfterSSLRequestIsRejected() {
        var machine = StartupStateMachine(tlsAvailable: true)
        guard case .reject(let fields) = machine.bytesReceived(bytes(.sslRequest, startup)) else {
            Issue.record("expected reject")
            return
        }
        #expect(fields.sqlState == "08P01")
        #expect(fields.message == "received unencrypted data after SSL request")
    }

    @Test func sslRefusedWithoutCertificateAndPipelinedStartupStillWorks() {
        var machine = StartupStateMachine(tlsAvailable: false)
        #expect(machine.bytesReceived(bytes(.sslRequest, startup)) == .refuseEncryption)
        guard case .connectBackend = machine.bytesReceived(ByteBuffer()) else {
            Issue.record("expected connectBackend")
            return
        }
    }

    @Test func gssEncryptionRefusedThenSSLAllowed() {
        var machine = StartupStateMachine(tlsAvailable: true)
        #expect(machine.bytesReceived(bytes(.gssEncryptionRequest)) == .refuseEncryption)
        #expect(machine.bytesReceived(bytes(.sslRequest)) == .acceptTLS)
    }

    @Test func secondSSLRequestIsAViolation() {
        var machine = StartupStateMachine(tlsAvailable: false)
        #expect(machine.bytesReceived(bytes(.sslRequest)) == .refuseEncryption)
        guard case .reject(let fields) = machine.bytesReceived(bytes(.sslRequest)) else {
            Issue.record("expected reject")
            return
        }
        #expect(fields.sqlState == "08P01")
    }

    @Test func cancelRequestIsForwarded() {
        var machine = StartupStateMachine(tlsAvailable: false)
        let key = BackendKey(processID: 77, secretKey: 88)
        #expect(machine.bytesReceived(bytes(.cancelRequest(key))) == .cancel(key))
    }

    @Test(arguments: ["true", "database", "on", "1"])
    func replicationIsRefused(_ value: String) {
        var machine = StartupStateMachine(tlsAvailable: false)
        let packet = StartupPacket.startup(protocolVersion: .v3_0, parameters: [("user", "r"), ("replication", value)])
        guard case .reject(let fields) = machine.bytesReceived(bytes(packet)) else {
            Issue.record("expected reject")
            return
        }
        #expect(fields.sqlState == "0A000")
        #expect(fields.message == "pgclone does not relay replication connections")
    }

    @Test func replicationFalseIsAllowed() {
        var machine = StartupStateMachine(tlsAvailable: false)
        let packet = StartupPacket.startup(protocolVersion: .v3_0, parameters: [("user", "r"), ("replication", "false")])
        guard case .connectBackend(_, "r", "r", nil, _) = machine.bytesReceived(bytes(packet)) else {
            Issue.record("expected connectBackend with database defaulting to user")
            return
        }
    }

    @Test func missingUserIsRejected() {
        var machine = StartupStateMachine(tlsAvailable: false)
        let packet = StartupPacket.startup(protocolVersion: .v3_0, parameters: [("database", "d")])
        #expect(machine.bytesReceived(bytes(packet)) == .reject(ErrorFields(severity: .fatal, sqlState: "28000", message: "no PostgreSQL user name specified in startup packet")))
    }

    @Test func protocolTwoIsRejected() {
        var machine = StartupStateMachine(tlsAvailable: false)
        let packet = StartupPacket.startup(protocolVersion: .init(major: 2, minor: 0), parameters: [("user", "u")])
        guard case .reject(let fields) = machine.bytesReceived(bytes(packet)) else {
            Issue.record("expected reject")
            return
        }
        #expect(fields.sqlState == "0A000")
        #expect(fields.message == "unsupported frontend protocol 2.0: server supports 3.0 to 3.0")
    }

    @Test func garbageLengthIsRejected() {
        var machine = StartupStateMachine(tlsAvailable: false)
        var garbage = ByteBuffer()
        garbage.writeInteger(Int32(-20))
        garbage.writeInteger(Int32(0))
        guard case .reject(let fields) = machine.bytesReceived(garbage) else {
            Issue.record("expected reject")
            return
        }
        #expect(fields.sqlState == "08P01")
        #expect(fields.message == "invalid startup packet: invalid message length -20")
    }
}
