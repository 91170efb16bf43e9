import NIOCore

/// Walks the typed-message stream of one direction without decoding it.
///
/// This is the relay's hot path. Each read is scanned header by header; runs of
/// messages nobody needs to look at are handed on as slices of the read buffer
/// (no copy, no allocation), including the start of a message whose body has
/// not fully arrived: a 500 MB DataRow flows through in read-sized pieces.
/// Only messages the caller asks to *examine* are held until complete (bounded
/// by `maximumExaminedLength`), and only those are ever copied.
public struct FrameScanner: Sendable {
    /// What the caller wants done with a message, decided from its header alone.
    public enum Disposition: Sendable {
        /// Relay the bytes as they come.
        case pass
        /// Hold the message until complete and show it to `examine`.
        case examine
        /// Stop before this message (it is held from its header on) until `resume`, which
        /// classifies it again: the caller cannot take it now (e.g. no memory to hold it).
        case wait
    }

    /// The verdict of `examine` on a complete message.
    public enum Verdict: Sendable, Equatable {
        /// Keep the message in the relayed stream and go on.
        case relay
        /// Relay these bytes in place of the message and go on.
        case replace(ByteBuffer)
        /// Drop it from the relayed stream (the caller handles it) and go on.
        case consume
        /// Drop it and stop: the remaining bytes are held until `resume`.
        case consumeAndPause
        /// Stop before it: the message and what follows are held until `resume`,
        /// which classifies and examines it again.
        case pauseBefore
    }

    public let maximumExaminedLength: Int
    public let maximumLength: Int

    /// Bytes not yet dispositioned: a partial header, an incomplete examined
    /// message, or what arrived while paused.
    private var held: ByteBuffer?
    /// Body bytes of a passed message still to come in later reads.
    private var passRemaining = 0
    /// Set while an incomplete examined message is held, so that its header is
    /// not classified a second time.
    private var heldExamineLength: Int?
    public private(set) var isPaused = false

    public init(maximumExaminedLength: Int = 64 << 20, maximumLength: Int = WireLimits.maximumMessageLength) {
        self.maximumExaminedLength = maximumExaminedLength
        self.maximumLength = maximumLength
    }

    /// Number of bytes held back (for back-pressure decisions and tests).
    public var heldBytes: Int { held?.readableBytes ?? 0 }

    /// True when the stream is between messages, with nothing held.
    public var isAtMessageBoundary: Bool { passRemaining == 0 && (held?.readableBytes ?? 0) == 0 }

    /// Scans `input`. `classify` is called exactly once per message header,
    /// with the type byte and the declared length; `forward` receives the
    /// bytes to relay, in order; `examine` receives complete examined messages.
    public mutating func process(
        _ input: ByteBuffer,
        classify: (UInt8, Int) throws(WireError) -> Disposition,
        forward: (ByteBuffer) -> Void,
        examine: (MessageFrame) throws(WireError) -> Verdict
    ) throws(WireError) {
        var buffer: ByteBuffer
        if var carried = held {
            // Let go of the stored reference first: `carried` is then the storage's only owner and
            // grows in place (with both holding it, every read copied everything held so far).
            held = nil
            var input = input
            carried.writeBuffer(&input)
            buffer = carried
        } else {
            buffer = input
        }
        if isPaused {
            if buffer.readableBytes > 0 { held = buffer }
            return
        }

        var forwardStart = buffer.readerIndex
        var index = buffer.readerIndex
        let end = buffer.writerIndex

        func flushForward(upTo limit: Int) {
            if limit > forwardStart {
                forward(buffer.getSlice(at: forwardStart, length: limit - forwardStart)!)
            }
        }

        if passRemaining > 0 {
            let step = min(passRemaining, end - index)
            index += step
            passRemaining -= step
        }

        while index < end {
            let available = end - index
            let type: UInt8
            let total: Int
            let disposition: Disposition
            if let length = heldExamineLength {
                type = buffer.getInteger(at: index)!
                total = length + 1
                disposition = .examine
            } else {
                guard available >= 5 else {
                    flushForward(upTo: index)
                    held = buffer.getSlice(at: index, length: available)
                    return
                }
                type = buffer.getInteger(at: index)!
                let length = Int(buffer.getInteger(at: index + 1, as: Int32.self)!)
                guard length >= 4, length <= maximumLength else {
                    throw WireError(.invalidLength(length), messageType: type)
                }
                total = length + 1
                disposition = try classify(type, length)
                if disposition == .examine, length > maximumExaminedLength {
                    throw WireError(.invalidLength(length), messageType: type)
                }
            }

            switch disposition {
            case .wait:
                flushForward(upTo: index)
                isPaused = true
                held = buffer.getSlice(at: index, length: end - index)
                return
            case .pass:
                if available >= total {
                    index += total
                } else {
                    passRemaining = total - available
                    index = end
                }
            case .examine:
                guard available >= total else {
                    flushForward(upTo: index)
                    heldExamineLength = total - 1
                    var rest = buffer.getSlice(at: index, length: available)!
                    // Reserve once so that following reads append without regrowing.
                    rest.reserveCapacity(minimumWritableBytes: total - available)
                    held = rest
                    return
                }
                heldExamineLength = nil
                let frame = MessageFrame(type: type, payload: buffer.getSlice(at: index + 5, length: total - 5)!)
                switch try examine(frame) {
                case .relay:
                    index += total
                case .replace(let replacement):
                    flushForward(upTo: index)
                    forward(replacement)
                    index += total
                    forwardStart = index
                case .consume:
                    flushForward(upTo: index)
                    index += total
                    forwardStart = index
                case .consumeAndPause:
                    flushForward(upTo: index)
                    index += total
                    isPaused = true
                    if index < end { held = buffer.getSlice(at: index, length: end - index) }
                    return
                case .pauseBefore:
                    flushForward(upTo: index)
                    isPaused = true
                    held = buffer.getSlice(at: index, length: end - index)
                    return
                }
            }
        }
        flushForward(upTo: end)
    }

    /// Leaves the paused state and processes what was held meanwhile.
    public mutating func resume(
        classify: (UInt8, Int) throws(WireError) -> Disposition,
        forward: (ByteBuffer) -> Void,
        examine: (MessageFrame) throws(WireError) -> Verdict
    ) throws(WireError) {
        isPaused = false
        let rest = held ?? ByteBuffer()
        held = nil
        try process(rest, classify: classify, forward: forward, examine: examine)
    }
}
