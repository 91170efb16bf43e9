import Dispatch
import Foundation
@testable import SQLParser
import Testing

@Suite struct ParserThreadsTests {
    /// A caller that waits for its parse (an event loop) is served while long submitted jobs
    /// hold every general thread: a client sending megabyte statements (most of a second each
    /// in a release build) made every event loop needing a short parse wait behind them.
    @Test func aWaitedForJobRunsWhileSubmittedJobsHoldEveryThread() throws {
        let threads = ParserThreads(count: 2)
        let release = DispatchSemaphore(value: 0)
        let started = DispatchSemaphore(value: 0)
        for _ in 0..<4 {
            threads.submit({ started.signal(); release.wait() }, completion: { _ in })
        }
        // Both general threads are busy (two more jobs wait behind them).
        started.wait()
        started.wait()
        let answered = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            #expect(threads.run { 6 * 7 } == 42)
            answered.signal()
        }
        let outcome = answered.wait(timeout: .now() + 10)
        for _ in 0..<4 { release.signal() }
        #expect(outcome == .success, "the waited-for job did not run while submitted jobs held the threads")
    }

    /// Submitted jobs still all run, in order, and a waited-for job started on a parser thread
    /// runs in place.
    @Test func submittedJobsAllRunAndNestedRunsRunInPlace() throws {
        let threads = ParserThreads(count: 1)
        let done = DispatchSemaphore(value: 0)
        let results = NSLock()
        nonisolated(unsafe) var seen: [Int] = []
        for index in 0..<20 {
            threads.submit({ threads.run { index } }, completion: { value in
                results.withLock { seen.append(value) }
                done.signal()
            })
        }
        for _ in 0..<20 { #expect(done.wait(timeout: .now() + 10) == .success) }
        #expect(results.withLock { seen } == Array(0..<20))
    }
}
