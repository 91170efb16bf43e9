import Foundation
import Synchronization

/// A child program started with posix_spawn.
///
/// Why not Foundation's `Process`: on Linux its `run()` emulates close-on-exec by adding one
/// close action per descriptor number up to the highest open one, read while other threads of
/// the test process open and close sockets; with a thousand descriptors open it crashed the
/// whole test run (SIGSEGV in memcpy inside `Process.run()`). Here the child's standard streams
/// are files (or /dev/null) opened close-on-exec and dup2'ed in the child, and every other
/// descriptor is closed there by one `closefrom` action.
final class ChildProcess: Sendable {
    enum Stream: Sendable {
        case null
        case file(String)
    }

    let processIdentifier: pid_t
    /// The wait status once the child has been reaped.
    private let status = Mutex<Int32?>(nil)

    /// Starts `executable` (an absolute path) with `arguments` (without argv[0]).
    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
         input: Stream = .null, output: Stream = .null, error: Stream = .null) throws {
        let merged = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let streams = try [input, output, error].enumerated().map { index, stream -> Int32 in
            let path: String
            switch stream {
            case .null: path = "/dev/null"
            case .file(let file): path = file
            }
            let fd = open(path, (index == 0 ? O_RDONLY : O_WRONLY | O_APPEND) | O_CLOEXEC)
            guard fd >= 0 else { throw ChildProcessError("cannot open \(path): \(String(cString: strerror(errno)))") }
            return fd
        }
        defer { streams.forEach { _ = close($0) } }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (target, fd) in streams.enumerated() {
            posix_spawn_file_actions_adddup2(&actions, fd, Int32(target))
        }
        if let closeFrom = Self.addCloseFrom {
            _ = closeFrom(&actions, 3)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Its own process group, as Foundation did: a ^C to the test run is not also the child's.
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid = pid_t()
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard result == 0 else { throw ChildProcessError("cannot start \(executable): \(String(cString: strerror(result)))") }
        processIdentifier = pid
    }

    /// glibc >= 2.34 has `posix_spawn_file_actions_addclosefrom_np`, which Swift's Glibc module
    /// does not import; found at run time.
    private static let addCloseFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()

    /// Reaps the child if it has exited (without blocking).
    var isRunning: Bool {
        status.withLock { status in
            guard status == nil else { return false }
            var raw: Int32 = 0
            let result = waitpid(processIdentifier, &raw, WNOHANG)
            if result == processIdentifier { status = raw }
            return result == 0
        }
    }

    /// Blocks until the child has exited.
    func waitUntilExit() {
        status.withLock { status in
            while status == nil {
                var raw: Int32 = 0
                let result = waitpid(processIdentifier, &raw, 0)
                if result == processIdentifier { status = raw } else if errno != EINTR { status = -1 }
            }
        }
    }

    func signal(_ signal: Int32) {
        if isRunning { _ = kill(processIdentifier, signal) }
    }

    func terminate() { signal(SIGTERM) }

    /// The exit code, or the signal number that ended the child (as Foundation reports it).
    var terminationStatus: Int32 {
        let raw = status.withLock { $0 } ?? -1
        let signal = raw & 0x7f
        return signal == 0 ? (raw >> 8) & 0xff : signal
    }
}

struct ChildProcessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
