import Foundation
import NIOCore
import NIOPosix

/// Says on standard error when an event loop of the test process's proxies stops running for
/// a second or more: every proxy of a test run shares these loops, so one stalled loop makes
/// unrelated tests' connections time out, and the line says when and how long.
enum EventLoopWatchdog {
    static let started: Void = {
        for loop in MultiThreadedEventLoopGroup.singleton.makeIterator() {
            tick(loop, scheduled: .now())
        }
    }()

    private static let interval = TimeAmount.milliseconds(100)

    private static func tick(_ loop: any EventLoop, scheduled: NIODeadline) {
        loop.scheduleTask(in: interval) {
            let late = NIODeadline.now() - (scheduled + interval)
            if late >= .seconds(1) {
                let line = "\(Date()) event loop \(loop) ran \(Double(late.nanoseconds) / 1e9) s late\n"
                FileHandle.standardError.write(Data(line.utf8))
            }
            tick(loop, scheduled: .now())
        }
    }
}
