@testable import Proxy
import Testing

struct JobLifecycleTests {
    typealias Status = JobStore.Status

    @Test func aJobRunsOnceFromPendingToAnEnd() {
        #expect(JobLifecycle.next(.pending, on: .claim) == .running)
        for status in Status.allCases where status != .pending {
            #expect(JobLifecycle.next(status, on: .claim) == nil, "\(status) cannot be claimed")
        }
        for end in [Status.completed, .failed, .cancelled, .interrupted] {
            #expect(JobLifecycle.next(.running, on: .end(end)) == end)
        }
        #expect(JobLifecycle.next(.running, on: .end(.pending)) == nil)
        #expect(JobLifecycle.next(.completed, on: .end(.failed)) == nil)
    }

    @Test func cancelEndsWaitingJobsAndAsksRunningOnesToStop() {
        #expect(JobLifecycle.next(.pending, on: .cancel) == .cancelled)
        #expect(JobLifecycle.next(.interrupted, on: .cancel) == .cancelled)
        #expect(JobLifecycle.next(.running, on: .cancel) == .running)
        #expect(JobLifecycle.next(.completed, on: .cancel) == nil)
        #expect(JobStore.cancelledAtOnce == "'{pending,interrupted}'")
    }

    @Test func onlyStoppedJobsResumeAndOnlyFinishedOnesAreCleared() {
        #expect(JobLifecycle.sqlList(acceptedBy: .resume) == "'{failed,cancelled,interrupted}'")
        #expect(JobLifecycle.sqlList(acceptedBy: .clear) == "'{completed,failed,cancelled}'")
        #expect(JobLifecycle.next(.interrupted, on: .clear) == nil, "interrupted jobs stay: they can be resumed")
        #expect(JobLifecycle.next(.running, on: .resume) == nil)
        #expect(JobLifecycle.next(.running, on: .interrupt) == .interrupted)
        #expect(JobLifecycle.next(.pending, on: .interrupt) == nil)
    }

    @Test func howARunEnded() {
        #expect(JobLifecycle.outcome(failed: false, cancelRequested: true, stopping: true) == .completed)
        #expect(JobLifecycle.outcome(failed: true, cancelRequested: true, stopping: true) == .cancelled)
        #expect(JobLifecycle.outcome(failed: true, cancelRequested: false, stopping: true) == .interrupted)
        #expect(JobLifecycle.outcome(failed: true, cancelRequested: false, stopping: false) == .failed)
    }
}
