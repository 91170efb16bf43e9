import Foundation
import Logging
import NIOCore

/// On the listening channel: when accepting fails (out of file descriptors, most often), stops
/// accepting for a second and tries again, rather than spinning on a socket that stays readable;
/// logs the first failure of an outage and the first connection accepted after it, once each.
///
/// (NIO's AcceptBackoffHandler cannot help here: a failed accept leaves the channel's read
/// pending, so no new read reaches it. Turning autoRead off takes the socket out of the poll set.)
/// Runs on the listening channel's event loop only.
final class AcceptBackoff: ChannelInboundHandler {
    typealias InboundIn = any Channel

    private let logger: Logger
    private let pause: TimeAmount
    private var failing = false
    private var paused = false

    init(logger: Logger, pause: TimeAmount = .seconds(1)) {
        self.logger = logger
        self.pause = pause
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let ioError = error as? IOError else {
            context.fireErrorCaught(error)
            return
        }
        if !failing {
            failing = true
            let reason = ioError.errnoCode == EMFILE || ioError.errnoCode == ENFILE
                ? "out of file descriptors (raise the limit with ulimit -n, or lower --max-client-conn)"
                : "\(ioError)"
            logger.error("cannot accept new connections; trying again every second", metadata: ["error": "\(reason)"])
        }
        guard !paused, let options = context.channel.syncOptions else { return }
        paused = true
        try? options.setOption(.autoRead, value: false)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: pause) {
            let (handler, context) = loopBound.value
            handler.paused = false
            try? context.channel.syncOptions?.setOption(.autoRead, value: true)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if failing {
            failing = false
            logger.notice("accepting new connections again")
        }
        context.fireChannelRead(data)
    }
}
