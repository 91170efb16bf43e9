import NIOCore
import NIOSSL
import PostgresWire

/// The backend side of one session: negotiates TLS with the server if asked,
/// then hands every byte to the session and takes its writes.
///
/// Reads are gated by the client's writability: a client that reads slowly
/// stops the proxy from reading the server, so memory stays bounded.
final class BackendChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        case connecting
        case negotiatingTLS
        case open
        case closed
    }

    private weak var session: ClientChannelHandler?
    private let tlsContext: NIOSSLContext?
    private let tlsRequired: Bool
    private let serverHostname: String?
    private var state = State.connecting
    private var context: ChannelHandlerContext?
    private var readPending = false

    init(session: ClientChannelHandler, tlsContext: NIOSSLContext?, tlsRequired: Bool, serverHostname: String?) {
        self.session = session
        self.tlsContext = tlsContext
        self.tlsRequired = tlsRequired
        self.serverHostname = serverHostname
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    /// Breaks the handler-context cycle (see ClientChannelHandler.handlerRemoved).
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        guard let client = session, client.machine.phase == .connecting else {
            // The client went away while the server connection was being made: close it now,
            // not when the server's authentication_timeout runs out.
            state = .closed
            context.close(promise: nil)
            return
        }
        if tlsContext != nil {
            state = .negotiatingTLS
            var request = ByteBuffer()
            StartupPacket.sslRequest.encode(into: &request)
            context.writeAndFlush(wrapOutboundOut(request), promise: nil)
        } else {
            state = .open
            session?.backendReady(self)
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        switch state {
        case .negotiatingTLS:
            let answer = buffer.readInteger(as: UInt8.self)
            guard buffer.readableBytes == 0 else {
                fail(context, "received unencrypted data after SSL response from server")
                return
            }
            switch answer {
            case UInt8(ascii: "S"):
                guard session != nil else {
                    fail(context, "the client went away")
                    return
                }
                do {
                    let handler = try NIOSSLClientHandler(context: tlsContext!, serverHostname: Self.sniHostname(serverHostname))
                    try context.pipeline.syncOperations.addHandler(handler, position: .first)
                } catch {
                    fail(context, "could not start TLS with the server: \(error)")
                    return
                }
                state = .open
                session?.backendReady(self)
            case UInt8(ascii: "N") where !tlsRequired:
                state = .open
                session?.backendReady(self)
            case UInt8(ascii: "N"):
                fail(context, "server does not support SSL, but SSL was required")
            default:
                fail(context, "received invalid response to SSL negotiation")
            }
        case .open:
            session?.backendRead(buffer)
        case .connecting, .closed:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        session?.backendReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        state = .closed
        session?.backendClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        session?.backendFailed(reason: "\(error)")
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            session?.backendBecameWritable()
        }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if session?.clientIsWritable ?? true {
            context.read()
        } else {
            readPending = true
        }
    }

    // MARK: - Called by the session (same event loop)

    var isWritable: Bool { context?.channel.isWritable ?? false }

    func write(_ buffer: ByteBuffer) {
        context?.write(wrapOutboundOut(buffer), promise: nil)
    }

    func flush() {
        context?.flush()
    }

    func resumeReadingIfPending() {
        guard readPending, let context else { return }
        readPending = false
        context.read()
    }

    func close() {
        guard state != .closed else { return }
        context?.close(promise: nil)
    }

    private func fail(_ context: ChannelHandlerContext, _ reason: String) {
        state = .closed
        session?.backendFailed(reason: reason)
        context.close(promise: nil)
    }

    /// SNI takes host names only; an IP literal is sent without SNI.
    private static func sniHostname(_ host: String?) -> String? {
        guard let host, !host.isEmpty else { return nil }
        let isIP = host.contains(":") || host.split(separator: ".").allSatisfy { UInt8($0) != nil }
        return isIP ? nil : host
    }
}
