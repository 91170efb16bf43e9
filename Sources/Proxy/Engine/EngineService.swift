import CloneEngine
import PQ
import ServiceLifecycle

/// The clone engine as a service of `pgclone serve`: it owns the one pool of threads that
/// every libpq call of the proxy runs on (admin calls, jobs, policy and backstop reads).
///
/// Listed first in the ServiceGroup, it is started before the proxy and the job runner and
/// stopped after them (services stop in reverse order), so no call is left without a thread;
/// its threads end once the last submitted call has returned.
public final class EngineService: Service, Sendable {
    public let pool: PQThreadPool

    public init(threads: Int) {
        pool = PQThreadPool(threads: threads)
    }

    /// An engine acting with `credentials` for the source, on this service's threads.
    func engine(credentials: SourceCredentials) -> CloneEngine {
        CloneEngine(sourceCredentials: credentials, pool: pool)
    }

    public func run() async throws {
        // Nothing to do until the services that use the threads have stopped.
        try? await gracefulShutdown()
        await pool.shutdown()
    }
}
