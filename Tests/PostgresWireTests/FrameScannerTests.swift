import NIOCore
import PostgresWire
import Testing

@Suite struct FrameScannerTests {
    /// Runs `input` through a scanner in pieces of `chunk` bytes and records what it did.
    private struct Run {
        var forwarded = ByteBuffer()
        var forwardCalls = 0
        var classified: [UInt8] = []
        var examined: [MessageFrame] = []
    }

    private func scan(
        _ input: ByteBuffer, chunk: Int,
        examine types: Set<UInt8> = [],
        verdict: (MessageFrame) -> FrameScanner.Verdict = { _ in .relay }
    ) throws -> (Run, FrameScanner) {
        var scanner = FrameScanner()
        var run = Run()
        var offset = input.readerIndex
        while offset < input.writerIndex {
            let length = min(chunk, input.writerIndex - offset)
            try scanner.process(
                input.getSlice(at: offset, length: length)!,
                classify: { type, _ in
                    run.classified.append(type)
                    return types.contains(type) ? .examine : .pass
                },
                forward: { slice in
                    var slice = slice
                    run.forwarded.writeBuffer(&slice)
                    run.forwardCalls += 1
                },
                examine: { frame in
                    run.examined.append(frame)
                    return verdict(frame)
                }
            )
            offset += length
        }
        return (run, scanner)
    }

    private var sampleStream: ByteBuffer {
        var buffer = ByteBuffer()
        BackendMessage.rowDescription(RowDescription(columns: [.init(name: "n", dataTypeOID: 23)])).encode(into: &buffer)
        for i in 0..<20 { BackendMessage.dataRow(DataRow(values: [ByteBuffer(string: String(repeating: "v", count: i * 37))])).encode(into: &buffer) }
        BackendMessage.commandComplete(tag: "SELECT 20").encode(into: &buffer)
        BackendMessage.readyForQuery(.idle).encode(into: &buffer)
        return buffer
    }

    @Test(arguments: [1, 2, 3, 5, 7, 64, 100_000])
    func relaysEveryByteInOrderWhateverTheFragmentation(_ chunk: Int) throws {
        let input = sampleStream
        let (run, scanner) = try scan(input, chunk: chunk, examine: [UInt8(ascii: "Z")])
        #expect(run.forwarded == input)
        #expect(run.classified.count == 23)  // exactly once per message
        #expect(run.examined.map(\.type) == [UInt8(ascii: "Z")])
        #expect(scanner.isAtMessageBoundary)
    }

    @Test func wholeReadOfPassedMessagesIsForwardedAsOneSlice() throws {
        let (run, _) = try scan(sampleStream, chunk: 100_000)
        #expect(run.forwardCalls == 1)
    }

    @Test func largePassedMessageFlowsWithoutBeingHeld() throws {
        var input = ByteBuffer()
        BackendMessage.dataRow(DataRow(values: [ByteBuffer(repeating: 0x61, count: 1 << 20)])).encode(into: &input)
        var scanner = FrameScanner()
        var forwarded = 0
        var offset = 0
        while offset < input.readableBytes {
            let length = min(65_536, input.readableBytes - offset)
            try scanner.process(input.getSlice(at: offset, length: length)!, classify: { _, _ in .pass }, forward: { forwarded += $0.readableBytes }, examine: { _ in .relay })
            offset += length
            #expect(scanner.heldBytes <= 4)
            #expect(forwarded >= offset - 4)
        }
        #expect(forwarded == input.readableBytes)
    }

    @Test func replaceSubstitutesInPlace() throws {
        var input = ByteBuffer()
        BackendMessage.parameterStatus(name: "a", value: "1").encode(into: &input)
        BackendMessage.backendKeyData(BackendKey(processID: 1, secretKey: 2)).encode(into: &input)
        BackendMessage.readyForQuery(.idle).encode(into: &input)
        var replacement = ByteBuffer()
        BackendMessage.backendKeyData(BackendKey(processID: 9, secretKey: 9)).encode(into: &replacement)
        let (run, _) = try scan(input, chunk: 3, examine: [UInt8(ascii: "K")], verdict: { _ in .replace(replacement) })
        var expected = ByteBuffer()
        BackendMessage.parameterStatus(name: "a", value: "1").encode(into: &expected)
        BackendMessage.backendKeyData(BackendKey(processID: 9, secretKey: 9)).encode(into: &expected)
        BackendMessage.readyForQuery(.idle).encode(into: &expected)
        #expect(run.forwarded == expected)
    }

    @Test func pauseHoldsTheRestUntilResume() throws {
        var input = ByteBuffer()
        FrontendMessage.query("SELECT pgclone.version()").encode(into: &input)
        FrontendMessage.query("SELECT 2").encode(into: &input)
        var scanner = FrameScanner()
        var forwarded = ByteBuffer()
        var examined = 0
        try scanner.process(input, classify: { type, _ in .examine }, forward: { var s = $0; forwarded.writeBuffer(&s) }, examine: { _ in
            examined += 1
            return examined == 1 ? .consumeAndPause : .relay
        })
        #expect(scanner.isPaused)
        #expect(forwarded.readableBytes == 0)
        try scanner.process(ByteBuffer(), classify: { _, _ in .examine }, forward: { var s = $0; forwarded.writeBuffer(&s) }, examine: { _ in .relay })
        #expect(forwarded.readableBytes == 0)
        try scanner.resume(classify: { _, _ in .examine }, forward: { var s = $0; forwarded.writeBuffer(&s) }, examine: { _ in
            examined += 1
            return .relay
        })
        var expected = ByteBuffer()
        FrontendMessage.query("SELECT 2").encode(into: &expected)
        #expect(forwarded == expected)
        #expect(examined == 2)
    }

    @Test(arguments: [Int32(-1), 0, 3, 0x4000_0001])
    func invalidLengthThrows(_ length: Int32) {
        var input = ByteBuffer()
        input.writeInteger(UInt8(ascii: "D"))
        input.writeInteger(length)
        var scanner = FrameScanner()
        #expect(throws: WireError(.invalidLength(Int(length)), messageType: UInt8(ascii: "D"))) {
            try scanner.process(input, classify: { _, _ in .pass }, forward: { _ in }, examine: { _ in .relay })
        }
    }

    @Test func examinedMessageAboveLimitThrowsBeforeBuffering() {
        var input = ByteBuffer()
        input.writeInteger(UInt8(ascii: "Q"))
        input.writeInteger(Int32(1 << 20))
        var scanner = FrameScanner(maximumExaminedLength: 1024)
        #expect(throws: WireError(.invalidLength(1 << 20), messageType: UInt8(ascii: "Q"))) {
            try scanner.process(input, classify: { _, _ in .examine }, forward: { _ in }, examine: { _ in .relay })
        }
    }

    @Test func classifyErrorPropagates() {
        var input = ByteBuffer()
        input.writeInteger(UInt8(ascii: "?"))
        input.writeInteger(Int32(4))
        var scanner = FrameScanner()
        #expect(throws: WireError(.unknownMessageType(UInt8(ascii: "?")))) {
            try scanner.process(input, classify: { type, _ throws(WireError) in throw WireError(.unknownMessageType(type)) }, forward: { _ in }, examine: { _ in .relay })
        }
    }
}
