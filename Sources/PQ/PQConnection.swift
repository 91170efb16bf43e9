import CLibPQ
import NIOConcurrencyHelpers
#if canImport(Glibc)
import Glibc
#endif

/// One libpq connection.
///
/// Why `@unchecked Sendable` is sound: libpq allows a `PGconn` to move between
/// threads but never to be used by two at once. Every call on `handle` runs on a
/// thread of the injected `PQThreadPool` while holding `lock`, so calls are
/// serialised; the one exception is `cancel()`, which uses the separate `PGcancel`
/// object that libpq documents as safe to use from another thread. Blocking calls
/// never run on Swift's cooperative pool or on an event loop: callers await them.
public final class PQConnection: @unchecked Sendable {
    public enum Format: Int32, Sendable {
        case text = 0
        case binary = 1
    }

    /// One statement of a pipeline.
    public enum PipelineStep: Sendable {
        case query(String, parameters: [String?] = [], resultFormat: Format = .text)
        case prepare(name: String, query: String)
        case executePrepared(name: String, parameters: [String?] = [], resultFormat: Format = .text)
    }

    private let handle: OpaquePointer
    private let cancelHandle: OpaquePointer?
    private let pool: PQThreadPool
    private let lock = NIOLock()
    /// `source` or `target` when the connection is one side of a clone: a lost connection or a
    /// terminated backend then says which server it was.
    public let side: String?

    private init(handle: OpaquePointer, pool: PQThreadPool, label: String) {
        self.handle = handle
        self.pool = pool
        self.side = label.hasPrefix("source") ? "source" : label.hasPrefix("target") ? "target" : nil
        self.cancelHandle = PQgetCancel(handle)
        PQsetNoticeProcessor(handle, { _, _ in }, nil)
    }

    deinit {
        if let cancelHandle { PQfreeCancel(cancelHandle) }
        PQfinish(handle)
    }

    /// Opens a connection; errors carry libpq's message, which never includes the password.
    public static func connect(_ conninfo: String, label: String = "pq", pool: PQThreadPool = .shared) async throws -> PQConnection {
        try await withCheckedThrowingContinuation { continuation in
            pool.submit { active in
                guard active else {
                    continuation.resume(throwing: PQError(sqlState: "57P01", message: "pgclone is shutting down"))
                    return
                }
                guard let handle = PQconnectdb(conninfo) else {
                    continuation.resume(throwing: PQError(message: "out of memory allocating a connection"))
                    return
                }
                if PQstatus(handle) != CONNECTION_OK {
                    let message = String(cString: PQerrorMessage(handle)).trimmingSuffix("\n")
                    PQfinish(handle)
                    continuation.resume(throwing: PQError(sqlState: "08006", message: message))
                    return
                }
                continuation.resume(returning: PQConnection(handle: handle, pool: pool, label: label))
            }
        }
    }

    /// Runs `body` on a pool thread, alone on this connection. When the calling task is cancelled, the statement
    /// running on the server is cancelled too (PQcancel), and a call that has not started yet
    /// does not start: a cancelled clone stops at once and its transaction rolls back.
    private func run<T: Sendable>(_ body: @escaping @Sendable (OpaquePointer) throws -> T) async throws -> T {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let cancelled = Task.isCancelled
                pool.submit { active in
                    if cancelled {
                        continuation.resume(throwing: PQError(sqlState: "57014", message: "canceling statement due to user request"))
                        return
                    }
                    guard active else {
                        continuation.resume(throwing: PQError(sqlState: "57P01", message: "pgclone is shutting down"))
                        return
                    }
                    continuation.resume(with: self.lock.withLock { Result { try body(self.handle) } }.mapError { self.sided($0) })
                }
            }
        } onCancel: {
            try? self.cancel()
        }
    }

    /// A failure of the connection itself (lost, backend terminated, shut down) names the side.
    private func sided(_ error: any Error) -> any Error {
        guard let side, var error = error as? PQError, error.isConnectionFailure, !error.message.hasPrefix("source server: "),
              !error.message.hasPrefix("target server: ") else { return error }
        error.message = "\(side) server: \(error.message)"
        if error.sqlState == nil { error.sqlState = "08006" }
        return error
    }

    /// Whether the connection is encrypted (TLS).
    public var sslInUse: Bool {
        get async throws { try await run { PQsslInUse($0) == 1 } }
    }

    /// Whether the connection can be handed to a new user: open, outside any transaction, and
    /// with nothing waiting to be read. An idle connection is sent nothing unasked; whatever is
    /// there (the goodbye of a terminated backend, a closed socket) rules it out.
    public var isReusable: Bool {
        get async {
            (try? await run { handle in
                guard PQstatus(handle) == CONNECTION_OK, PQtransactionStatus(handle) == PQTRANS_IDLE else { return false }
                var descriptor = pollfd(fd: PQsocket(handle), events: Int16(POLLIN), revents: 0)
                return poll(&descriptor, 1, 0) == 0
            }) ?? false
        }
    }

    /// `password` as the server stores it for `user` (its password_encryption, SCRAM by
    /// default): what CREATE ROLE ... PASSWORD may carry without the password itself reaching
    /// the server or its log.
    public func encryptPassword(_ password: String, user: String) async throws -> String {
        try await run { handle in
            guard let encrypted = PQencryptPasswordConn(handle, password, user, nil) else {
                throw PQError(message: String(cString: PQerrorMessage(handle)).trimmingSuffix("\n"))
            }
            defer { PQfreemem(encrypted) }
            return String(cString: encrypted)
        }
    }

    /// The server's version as PQserverVersion gives it (150018 for 15.18).
    public var serverVersion: Int {
        get async throws { try await run { Int(PQserverVersion($0)) } }
    }

    /// The process ID libpq learned from BackendKeyData (0 when the server sent none).
    public var keyProcessID: Int32 {
        get async throws { try await run { PQbackendPID($0) } }
    }

    /// Runs one or more statements with the simple protocol; returns the last result.
    @discardableResult
    public func exec(_ sql: String) async throws -> PQResult {
        try await run { handle in
            try Self.check(PQexec(handle, sql), handle)
        }
    }

    /// Whether the server asked for, and got, a password while connecting.
    public func usedPassword() async throws -> Bool {
        try await run { handle in PQconnectionUsedPassword(handle) == 1 }
    }

    /// Runs exactly one statement (the extended protocol refuses a second one), for SQL
    /// built from text a remote server supplied: a definition that smuggles in
    /// `; DROP ...` fails instead of running.
    @discardableResult
    public func execute(_ sql: String) async throws -> PQResult {
        try await query(sql)
    }

    /// Runs one statement with the extended protocol and text parameters.
    @discardableResult
    public func query(_ sql: String, _ parameters: [String?] = [], resultFormat: Format = .text) async throws -> PQResult {
        try await run { handle in
            try Self.withCStrings(parameters) { values in
                try Self.check(PQexecParams(handle, sql, Int32(parameters.count), nil, values, nil, nil, resultFormat.rawValue), handle)
            }
        }
    }

    public func prepare(name: String, _ sql: String) async throws {
        _ = try await run { handle in
            try Self.check(PQprepare(handle, name, sql, 0, nil), handle)
        }
    }

    @discardableResult
    public func executePrepared(name: String, _ parameters: [String?] = [], resultFormat: Format = .text) async throws -> PQResult {
        try await run { handle in
            try Self.withCStrings(parameters) { values in
                try Self.check(PQexecPrepared(handle, name, Int32(parameters.count), values, nil, nil, resultFormat.rawValue), handle)
            }
        }
    }

    /// Sends every step in pipeline mode followed by one Sync, then reads all results.
    /// After an error, later steps report the server's "aborted" state as errors, as libpq does.
    public func pipeline(_ steps: [PipelineStep]) async throws -> [Result<PQResult, PQError>] {
        try await run { handle in
            guard PQenterPipelineMode(handle) == 1 else {
                throw PQError(result: nil, connection: handle)
            }
            defer { PQexitPipelineMode(handle) }
            for step in steps {
                let sent: Int32
                switch step {
                case .query(let sql, let parameters, let format):
                    sent = Self.withCStrings(parameters) { values in
                        PQsendQueryParams(handle, sql, Int32(parameters.count), nil, values, nil, nil, format.rawValue)
                    }
                case .prepare(let name, let sql):
                    sent = PQsendPrepare(handle, name, sql, 0, nil)
                case .executePrepared(let name, let parameters, let format):
                    sent = Self.withCStrings(parameters) { values in
                        PQsendQueryPrepared(handle, name, Int32(parameters.count), values, nil, nil, format.rawValue)
                    }
                }
                guard sent == 1 else { throw PQError(result: nil, connection: handle) }
            }
            guard PQpipelineSync(handle) == 1 else { throw PQError(result: nil, connection: handle) }
            var results: [Result<PQResult, PQError>] = []
            for _ in steps {
                var stepResult: Result<PQResult, PQError>?
                while let result = PQgetResult(handle) {
                    if stepResult == nil { stepResult = Self.classify(result, handle) }
                    PQclear(result)
                }
                results.append(stepResult ?? .failure(PQError(result: nil, connection: handle)))
            }
            guard let sync = PQgetResult(handle) else { throw PQError(message: "pipeline ended without a sync result") }
            let syncStatus = PQresultStatus(sync)
            PQclear(sync)
            guard syncStatus == PGRES_PIPELINE_SYNC else {
                throw PQError(message: "pipeline sync result missing")
            }
            return results
        }
    }

    /// COPY ... FROM STDIN with the given data chunks; returns the final command result.
    @discardableResult
    public func copyIn(_ sql: String, chunks: [[UInt8]]) async throws -> PQResult {
        try await run { handle in
            let start = PQexec(handle, sql)
            guard let start, PQresultStatus(start) == PGRES_COPY_IN else {
                _ = try Self.check(start, handle)
                throw PQError(message: "statement did not start COPY FROM STDIN")
            }
            PQclear(start)
            for chunk in chunks {
                let sent = chunk.withUnsafeBufferPointer { buffer in
                    buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) {
                        PQputCopyData(handle, $0, Int32(buffer.count))
                    }
                }
                guard sent == 1 else { throw PQError(result: nil, connection: handle) }
            }
            guard PQputCopyEnd(handle, nil) == 1 else { throw PQError(result: nil, connection: handle) }
            return try Self.drain(handle)
        }
    }

    /// COPY ... TO STDOUT; `onData` receives each CopyData payload (one row in text/CSV).
    @discardableResult
    public func copyOut(_ sql: String, onData: @escaping @Sendable ([UInt8]) -> Void) async throws -> PQResult {
        try await run { handle in
            let start = PQexec(handle, sql)
            guard let start, PQresultStatus(start) == PGRES_COPY_OUT else {
                _ = try Self.check(start, handle)
                throw PQError(message: "statement did not start COPY TO STDOUT")
            }
            PQclear(start)
            while true {
                var buffer: UnsafeMutablePointer<CChar>?
                let count = PQgetCopyData(handle, &buffer, 0)
                if count > 0, let buffer {
                    onData(buffer.withMemoryRebound(to: UInt8.self, capacity: Int(count)) {
                        Array(UnsafeBufferPointer(start: $0, count: Int(count)))
                    })
                    PQfreemem(buffer)
                } else if count == -1 {
                    break
                } else {
                    throw PQError(result: nil, connection: handle)
                }
            }
            return try Self.drain(handle)
        }
    }

    /// Streams `sourceSQL` (a `COPY ... TO STDOUT`) on this connection into
    /// `targetSQL` (a `COPY ... FROM STDIN`) on `target`, without decoding rows.
    /// Returns the number of rows the target reports. When the source fails
    /// mid-stream the target COPY is aborted with the source's message, so the
    /// target's transaction can be rolled back.
    ///
    /// Both connections are held by one thread for the whole stream (the target's
    /// lock is taken inside this connection's), so no per-row hand-off between
    /// threads is needed.
    public func copy(_ sourceSQL: String, into target: PQConnection, _ targetSQL: String) async throws -> Int {
        try await copyCounting(sourceSQL, into: target, targetSQL).rows
    }

    /// As `copy`, with the bytes of COPY data that went across.
    public func copyCounting(_ sourceSQL: String, into target: PQConnection, _ targetSQL: String) async throws -> (rows: Int, bytes: Int) {
        precondition(target !== self, "copy needs two connections")
        return try await run { sourceHandle in
            try target.lock.withLock {
                do {
                    return try Self.stream(source: sourceHandle, sourceSQL: sourceSQL, target: target.handle, targetSQL: targetSQL, sourceCancel: self.cancelHandle)
                } catch let failure as StreamFailure {
                    // Which server failed decides the message: a target that went away must not
                    // read as the source's "canceling statement" (the source is cancelled because of it).
                    throw failure.onTarget ? target.sided(failure.error) : self.sided(failure.error)
                }
            }
        }
    }

    /// Rows and bytes every `copy(_:into:_:)` of the process has moved (metrics read it).
    public static var copiedTotals: (rows: Int, bytes: Int) { copied.withLockedValue { $0 } }
    private static let copied = NIOLockedValueBox((rows: 0, bytes: 0))

    private struct StreamFailure: Error {
        var error: any Error
        var onTarget: Bool
    }

    private static func stream(source: OpaquePointer, sourceSQL: String, target: OpaquePointer, targetSQL: String, sourceCancel: OpaquePointer?) throws -> (rows: Int, bytes: Int) {
        do {
            return try streamSides(source: source, sourceSQL: sourceSQL, target: target, targetSQL: targetSQL, sourceCancel: sourceCancel)
        } catch let failure as StreamFailure {
            throw failure
        } catch {
            throw StreamFailure(error: error, onTarget: false)
        }
    }

    private static func streamSides(source: OpaquePointer, sourceSQL: String, target: OpaquePointer, targetSQL: String, sourceCancel: OpaquePointer?) throws -> (rows: Int, bytes: Int) {
        func onTarget<T>(_ body: () throws -> T) throws -> T {
            do { return try body() } catch { throw StreamFailure(error: error, onTarget: true) }
        }
        let targetStart = PQexec(target, targetSQL)
        guard let targetStart, PQresultStatus(targetStart) == PGRES_COPY_IN else {
            _ = try onTarget { try check(targetStart, target) }
            throw StreamFailure(error: PQError(message: "target statement did not start COPY FROM STDIN"), onTarget: true)
        }
        PQclear(targetStart)
        let sourceStart = PQexec(source, sourceSQL)
        guard let sourceStart, PQresultStatus(sourceStart) == PGRES_COPY_OUT else {
            let error: any Error
            do {
                _ = try check(sourceStart, source)
                error = PQError(message: "source statement did not start COPY TO STDOUT")
            } catch let caught {
                error = caught
            }
            PQputCopyEnd(target, "pgclone: source COPY failed")
            _ = try? drain(target)
            throw error
        }
        PQclear(sourceStart)
        // Rows are gathered into large CopyData messages (COPY FROM accepts the stream cut
        // anywhere): libpq sends each message in 8 kB writes otherwise, one system call per
        // 8 kB; a 256 kB message goes out in a few.
        let capacity = 256 * 1024
        let batch = UnsafeMutablePointer<CChar>.allocate(capacity: capacity)
        defer { batch.deallocate() }
        var batched = 0
        var streamed = 0
        var targetFailed = false
        func send(_ pointer: UnsafePointer<CChar>, _ count: Int) {
            guard !targetFailed, count > 0 else { return }
            if PQputCopyData(target, pointer, Int32(count)) != 1 {
                targetFailed = true
                if let sourceCancel {
                    var errorBuffer = [CChar](repeating: 0, count: 256)
                    PQcancel(sourceCancel, &errorBuffer, Int32(errorBuffer.count))
                }
            }
        }
        while !targetFailed {
            var buffer: UnsafeMutablePointer<CChar>?
            let count = PQgetCopyData(source, &buffer, 0)
            if count > 0, let buffer {
                let size = Int(count)
                streamed &+= size
                if batched + size > capacity {
                    send(batch, batched)
                    batched = 0
                }
                if size > capacity {
                    send(buffer, size)
                } else if !targetFailed {
                    (batch + batched).update(from: buffer, count: size)
                    batched += size
                }
                PQfreemem(buffer)
            } else if count == -1 {
                send(batch, batched)
                batched = 0
                break
            } else {
                let error = PQError(result: nil, connection: source)
                PQputCopyEnd(target, "pgclone: source connection failed during COPY")
                _ = try? drain(target)
                throw error
            }
        }
        if targetFailed {
            // The source was cancelled because the target failed: read what it still sends,
            // and drop its error, which says nothing about the cause.
            while true {
                var rest: UnsafeMutablePointer<CChar>?
                let count = PQgetCopyData(source, &rest, 0)
                if let rest { PQfreemem(rest) }
                if count < 0 { break }
            }
            _ = try? drain(source)
            _ = try onTarget { try drain(target) }
            throw StreamFailure(error: PQError(result: nil, connection: target), onTarget: true)
        }
        do {
            _ = try drain(source)
        } catch {
            PQputCopyEnd(target, "pgclone: source COPY failed")
            _ = try? drain(target)
            throw error
        }
        guard PQputCopyEnd(target, nil) == 1 else { throw StreamFailure(error: PQError(result: nil, connection: target), onTarget: true) }
        let done = try onTarget { try drain(target) }
        let rows = done.affectedRows ?? 0
        copied.withLockedValue { $0 = ($0.rows &+ rows, $0.bytes &+ streamed) }
        return (rows, streamed)
    }

    /// Asks the server to cancel the statement running on this connection.
    /// Safe to call from any thread while another call is blocked.
    public func cancel() throws {
        guard let cancelHandle else { throw PQError(message: "connection has no cancel key") }
        var errorBuffer = [CChar](repeating: 0, count: 256)
        guard PQcancel(cancelHandle, &errorBuffer, Int32(errorBuffer.count)) == 1 else {
            throw PQError(message: String(decoding: errorBuffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
    }

    // MARK: - Helpers (run on a pool thread, holding the lock)

    private static func classify(_ result: OpaquePointer, _ handle: OpaquePointer) -> Result<PQResult, PQError> {
        switch PQresultStatus(result) {
        case PGRES_FATAL_ERROR, PGRES_BAD_RESPONSE, PGRES_NONFATAL_ERROR, PGRES_PIPELINE_ABORTED:
            return .failure(PQError(result: result, connection: handle))
        default:
            return .success(PQResult(result))
        }
    }

    /// Converts a result (taking ownership), throwing for error statuses.
    private static func check(_ result: OpaquePointer?, _ handle: OpaquePointer) throws -> PQResult {
        guard let result else { throw PQError(result: nil, connection: handle) }
        defer { PQclear(result) }
        return try classify(result, handle).get()
    }

    /// Reads results until libpq has none left; returns the last, throws the first error.
    private static func drain(_ handle: OpaquePointer) throws -> PQResult {
        var last: PQResult?
        var firstError: PQError?
        while let result = PQgetResult(handle) {
            switch classify(result, handle) {
            case .success(let value): last = value
            case .failure(let error): if firstError == nil { firstError = error }
            }
            PQclear(result)
        }
        if let firstError { throw firstError }
        guard let last else { throw PQError(result: nil, connection: handle) }
        return last
    }

    private static func withCStrings<T>(_ values: [String?], _ body: ([UnsafePointer<CChar>?]) throws -> T) rethrows -> T {
        let pointers: [UnsafeMutablePointer<CChar>?] = values.map { $0.flatMap { strdup($0) } }
        defer { pointers.forEach { free($0) } }
        return try body(pointers.map { $0.map { UnsafePointer($0) } })
    }
}
