import Foundation

/// Runs real client programs (psql, pgbench, python) and collects their output.
enum Shell {
    struct Output: Sendable {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `arguments[0]` (looked up in PATH) off the cooperative pool.
    static func run(_ arguments: [String], environment: [String: String] = [:], input: String? = nil, timeout: Double = 120) async throws -> Output {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try runBlocking(arguments, environment: environment, input: input, timeout: timeout) })
            }
        }
    }

    /// Starts a process and returns it without waiting (for kill tests).
    static func spawn(_ arguments: [String], environment: [String: String] = [:]) throws -> ChildProcess {
        try ChildProcess("/usr/bin/env", arguments, environment: environment)
    }

    private static func runBlocking(_ arguments: [String], environment: [String: String], input: String?, timeout: Double) throws -> Output {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pgclone-shell-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let outURL = directory.appendingPathComponent("out")
        let errURL = directory.appendingPathComponent("err")
        FileManager.default.createFile(atPath: outURL.path, contents: nil)
        FileManager.default.createFile(atPath: errURL.path, contents: nil)
        var standardInput = ChildProcess.Stream.null
        if let input {
            let inURL = directory.appendingPathComponent("in")
            try input.write(to: inURL, atomically: true, encoding: .utf8)
            standardInput = .file(inURL.path)
        }
        let process = try ChildProcess("/usr/bin/env", arguments, environment: environment,
                                       input: standardInput, output: .file(outURL.path), error: .file(errURL.path))
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            if Date() > deadline {
                process.terminate()
                process.waitUntilExit()
                return Output(status: -1, stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "", stderr: "timed out after \(timeout)s")
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return Output(
            status: process.terminationStatus,
            stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "")
    }

    /// psql with a predictable output format: unaligned, tuples only, stop on error.
    static func psql(_ conninfo: String, _ sql: String, extra: [String] = []) async throws -> Output {
        try await run(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", conninfo] + extra, input: sql)
    }
}
