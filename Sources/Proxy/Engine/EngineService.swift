import PQ
import ServiceLifecycle

/// The clone engine as a service of `pgclone serve`: it owns the one pool of threads that
/// every libpq call of the proxy runs on (admin calls, jobs, policy and backstop reads).
///
/// Listed first in the ServiceGroup, it is started before the proxy and the job runner and
/// told to stop after them (services stop in reverse order). Its threads are shut down by
/// `shutdown()` once the whole group has returned: when the grace period ends every service
/// is cancelled at once, and the job runner still needs threads to record that its jobs were
/// interrupted.
public final class EngineService: Service, Sendable {
    public let pool: PQThreadPool

    public init(threads: Int) {
        pool = PQThreadPool(threads: threads)
    }

    public func run() async throws {
        try? await gracefulShutdown()
    }

    /// Ends the threads once the calls already submitted have returned.
    public func shutdown() async {
        await pool.shutdown()
    }
}
