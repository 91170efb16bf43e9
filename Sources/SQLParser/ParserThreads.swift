import Foundation

/// Threads with large stacks for libpg_query. Its parse-tree output recurses once per tree
/// level in C, and a statement such as `SELECT 1+1+...+1` nests as deep as it is long
/// (10,000 terms overflowed an event-loop thread and took the proxy down).
///
/// Two kinds of work come here. A session's statement analysis is submitted and answered
/// later; statements up to a megabyte take a while (seconds in a debug build, most of one in a
/// release build). A caller that waits for its parse (an event loop reading a short statement)
/// must not wait behind those: its jobs go first, and one thread takes nothing else, so a
/// client sending megabyte statements on every parser thread does not stall every event loop
/// that needs a short parse.
public final class ParserThreads: @unchecked Sendable {
    public static let shared = ParserThreads(count: max(1, ProcessInfo.processInfo.activeProcessorCount))

    /// Enough for the deepest tree a statement of `PostgresParser.maximumLength` bytes can
    /// make (~150 bytes of C stack per level, measured); reserved, not committed.
    static let stackSize = 512 << 20

    private let condition = NSCondition()
    private var submitted: [() -> Void] = []
    private var waitedFor: [() -> Void] = []

    /// `count` threads take any job (waited-for ones first), and one more only waited-for ones.
    init(count: Int) {
        for index in 0...count {
            let urgentOnly = index == count
            let thread = Thread { [unowned self] in self.work(urgentOnly: urgentOnly) }
            thread.name = urgentOnly ? "pgclone-parser-waited" : "pgclone-parser-\(index)"
            thread.stackSize = Self.stackSize
            thread.start()
        }
    }

    private func work(urgentOnly: Bool) {
        Thread.current.threadDictionary[Self.parserThreadKey] = true
        while true {
            condition.lock()
            while waitedFor.isEmpty && (urgentOnly || submitted.isEmpty) { condition.wait() }
            let job = waitedFor.isEmpty ? submitted.removeFirst() : waitedFor.removeFirst()
            condition.unlock()
            job()
        }
    }

    /// Runs `body` on a parser thread; `completion` gets its result there.
    public func submit<T>(_ body: @escaping () -> T, completion: @escaping (T) -> Void) {
        condition.lock()
        submitted.append { completion(body()) }
        // (Every thread wakes: the one that takes only waited-for jobs could be the one woken.)
        condition.broadcast()
        condition.unlock()
    }

    /// Whether the current thread is a parser thread (a parse started there runs in place).
    static var isParserThread: Bool { Thread.current.threadDictionary[parserThreadKey] != nil }
    private static let parserThreadKey = "pgclone.parser"

    /// Runs `body` on a parser thread and returns its result (in place when already on one),
    /// ahead of submitted jobs.
    func run<T>(_ body: @escaping () -> T) -> T {
        if Self.isParserThread { return body() }
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: T?
        condition.lock()
        waitedFor.append {
            result = body()
            done.signal()
        }
        condition.broadcast()
        condition.unlock()
        done.wait()
        return result!
    }
}
