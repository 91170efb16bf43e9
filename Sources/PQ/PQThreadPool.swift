import NIOConcurrencyHelpers
import NIOPosix

/// The threads libpq's blocking calls run on.
///
/// libpq blocks its caller for the whole of a statement (a COPY of a large table holds a
/// thread for minutes), so its calls never run on an event loop or on Swift's cooperative
/// pool. One pool is created by whoever owns the work (`pgclone serve` sizes it from its
/// configuration and shuts it down after the services that use it) and injected into every
/// connection, as sqlite-nio does with its NIOThreadPool.
public final class PQThreadPool: Sendable {
    let pool: NIOThreadPool
    public let threads: Int

    public init(threads: Int) {
        precondition(threads > 0, "a thread pool needs at least one thread")
        self.threads = threads
        pool = NIOThreadPool(numberOfThreads: threads)
        pool.start()
    }

    /// For one-shot tools and tests: a pool that lives as long as the process. Generous, as
    /// it serves every caller that did not bring a pool of its own (a test process runs many
    /// proxies and clients at once, some of them waiting on locks on purpose).
    public static let shared = PQThreadPool(threads: 96)

    /// Stops the threads once the work already submitted has run.
    public func shutdown() async {
        try? await pool.shutdownGracefully()
    }

    /// Runs `body` on one of the pool's threads; `onRefused` answers when the pool is shut down.
    func submit(_ body: @escaping @Sendable (_ active: Bool) -> Void) {
        pool.submit { state in body(state == .active) }
    }
}
