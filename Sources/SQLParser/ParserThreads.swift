import Foundation

/// Threads with large stacks for libpg_query. Its parse-tree output recurses once per tree
/// level in C, and a statement such as `SELECT 1+1+...+1` nests as deep as it is long
/// (10,000 terms overflowed an event-loop thread and took the proxy down). The caller
/// waits for the result: a parse takes microseconds, and only cache misses parse.
public final class ParserThreads: @unchecked Sendable {
    public static let shared = ParserThreads(count: max(1, ProcessInfo.processInfo.activeProcessorCount))

    /// Enough for the deepest tree a statement of `PostgresParser.maximumLength` bytes can
    /// make (~150 bytes of C stack per level, measured); reserved, not committed.
    static let stackSize = 512 << 20

    private let condition = NSCondition()
    private var jobs: [() -> Void] = []

    private init(count: Int) {
        for index in 0..<count {
            let thread = Thread { [unowned self] in self.work() }
            thread.name = "pgclone-parser-\(index)"
            thread.stackSize = Self.stackSize
            thread.start()
        }
    }

    private func work() {
        Thread.current.threadDictionary[Self.parserThreadKey] = true
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
        }
    }

    /// Runs `body` on a parser thread; `completion` gets its result there.
    public func submit<T>(_ body: @escaping () -> T, completion: @escaping (T) -> Void) {
        condition.lock()
        jobs.append { completion(body()) }
        condition.signal()
        condition.unlock()
    }

    /// Whether the current thread is a parser thread (a parse started there runs in place).
    static var isParserThread: Bool { Thread.current.threadDictionary[parserThreadKey] != nil }
    private static let parserThreadKey = "pgclone.parser"

    /// Runs `body` on a parser thread and returns its result (in place when already on one).
    func run<T>(_ body: @escaping () -> T) -> T {
        if Self.isParserThread { return body() }
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: T?
        condition.lock()
        jobs.append {
            result = body()
            done.signal()
        }
        condition.signal()
        condition.unlock()
        done.wait()
        return result!
    }
}
