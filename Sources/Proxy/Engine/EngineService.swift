import PQ
import ServiceLifecycle

/// The clone engine as a service of `pgclone serve`: it owns the pools of threads that the
/// proxy's libpq calls run on. Admin calls and jobs share `pool`; the masking guard (server
/// backstop, policy reloads) has `guardPool` to itself: an admin call waiting on a lock holds
/// its thread for as long as the lock is held, and with every engine thread waiting the
/// backstop could not revoke a new GRANT to a masked role (attack round 21: real values read
/// around the proxy for 20 s).
///
/// Listed first in the ServiceGroup, it is started before the proxy and the job runner and
/// told to stop after them (services stop in reverse order). Its threads are shut down by
/// `shutdown()` once the whole group has returned: when the grace period ends every service
/// is cancelled at once, and the job runner still needs threads to record that its jobs were
/// interrupted.
public final class EngineService: Service, Sendable {
    public let pool: PQThreadPool
    public let guardPool: PQThreadPool
    /// The jobs' own bookkeeping (heartbeats, claims, progress, jobs_view): with every engine
    /// thread in a COPY it waited, the heartbeat went stale, and another proxy took the job for
    /// dead and ran it a second time (round 44f H4).
    public let jobsPool: PQThreadPool

    public init(threads: Int) {
        pool = PQThreadPool(threads: threads)
        guardPool = PQThreadPool(threads: 2)
        jobsPool = PQThreadPool(threads: 2)
    }

    public func run() async throws {
        try? await gracefulShutdown()
    }

    /// Ends the threads once the calls already submitted have returned.
    public func shutdown() async {
        await pool.shutdown()
        await guardPool.shutdown()
        await jobsPool.shutdown()
    }
}
