/// The states of a background job and what moves it between them, as a pure machine. The job
/// store's SQL takes its status lists from here, and the runner asks it how a job ended.
///
///     pending ──claim──▶ running ──end──▶ completed | failed | cancelled | interrupted
///     pending, interrupted ──cancel──▶ cancelled       running ──cancel──▶ (asked to stop)
///     running ──proxy gone or stopping──▶ interrupted
///     interrupted, failed, cancelled ──resume──▶ pending
///     completed, failed, cancelled ──clear──▶ (removed)
enum JobLifecycle {
    typealias Status = JobStore.Status

    enum Event: Hashable, Sendable {
        case claim
        /// The job's run is over; how it ended decides the status (see `outcome`).
        case end(Status)
        case cancel
        case interrupt
        case resume
        case clear
    }

    /// What `event` does to a job in `status`: the new status (the same one for a running job
    /// asked to stop, which its proxy ends), or nil when the event does not apply.
    static func next(_ status: Status, on event: Event) -> Status? {
        switch (status, event) {
        case (.pending, .claim): return .running
        case (.running, .end(let outcome)) where outcome != .pending && outcome != .running: return outcome
        case (.pending, .cancel), (.interrupted, .cancel): return .cancelled
        case (.running, .cancel): return .running
        case (.running, .interrupt): return .interrupted
        case (.interrupted, .resume), (.failed, .resume), (.cancelled, .resume): return .pending
        case (.completed, .clear), (.failed, .clear), (.cancelled, .clear): return status
        default: return nil
        }
    }

    /// The statuses `event` applies to, in declaration order.
    static func statuses(acceptedBy event: Event) -> [Status] {
        Status.allCases.filter { next($0, on: event) != nil }
    }

    /// The statuses as an SQL text[] literal: `'{interrupted,failed,cancelled}'`.
    static func sqlList(acceptedBy event: Event) -> String {
        "'{" + statuses(acceptedBy: event).map(\.rawValue).joined(separator: ",") + "}'"
    }

    /// How a run ended: whether it threw, whether a cancel was asked for it, whether its task
    /// was cancelled because the proxy is stopping.
    static func outcome(failed: Bool, cancelRequested: Bool, stopping: Bool) -> Status {
        guard failed else { return .completed }
        if cancelRequested { return .cancelled }
        if stopping { return .interrupted }
        return .failed
    }
}
