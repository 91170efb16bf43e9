import ArgumentParser
import CloneEngine
import Masking
import Foundation
import JSON
import PQ

/// Options every clone subcommand shares: where from, where to, and the JSON options of the SQL API.
struct CloneCommandOptions: ParsableArguments {
    @Option(help: "libpq conninfo of the source server (or PGCLONE_SOURCE).")
    var source: String?

    @Option(help: "libpq conninfo of the target database (or PGCLONE_TARGET); objects are created as its user.")
    var target: String?

    @Option(help: "JSON options, as in the SQL API: {\"conflict\": \"replace\", \"mask\": {...}, \"where\": \"...\", ...}.")
    var options: String?

    @Flag(help: "Copy the structure only.")
    var noData = false

    @Option(help: "Tables copied at the same time (schema and database clones), 1 to 64.")
    var parallel: Int?

    /// As the SQL API's "parallel" option (it accepted 0 and negative counts as 1).
    func validate() throws {
        if let parallel, !(1...64).contains(parallel) {
            throw ValidationError("--parallel must be an integer from 1 to 64")
        }
    }

    func sourceConnInfo() throws -> String {
        guard let value = source ?? ProcessInfo.processInfo.environment["PGCLONE_SOURCE"] else {
            throw ValidationError("--source is required (a libpq conninfo of the source server)")
        }
        return value
    }

    func cloneOptions() throws -> CloneOptions {
        if let secret = ProcessInfo.processInfo.environment["PGCLONE_MASK_SECRET"], !secret.isEmpty {
            do { try MaskingKey.install(secret) } catch { throw ValidationError("PGCLONE_MASK_SECRET: \(error.message)") }
        }
        var base = CloneOptions()
        base.copyData = !noData
        do {
            var parsed = try CloneOptions.parse(options, base: base)
            if let parallel { parsed.parallel = parallel }
            return parsed
        } catch {
            throw ValidationError(error.message)
        }
    }

    func targetConnInfo() throws -> String {
        guard let text = target ?? ProcessInfo.processInfo.environment["PGCLONE_TARGET"] else {
            throw ValidationError("--target is required (a libpq conninfo of the target database)")
        }
        return text
    }

    /// The JSON options text as the SQL API takes it, with --parallel written into it.
    func options(overridingParallel: Bool) throws -> String? {
        guard let parallel else { return options }
        var fields: [String: JSONNode] = [:]
        if let options, !options.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            guard case .object(let given)? = try? JSONReader.parse(options) else { throw ValidationError("--options must be a JSON object") }
            fields = given
        }
        fields["parallel"] = .number(Double(parallel))
        return JSONNode.object(fields).text
    }

    /// The target, acting as the role its conninfo logs in as.
    func cloneTarget() async throws -> CloneTarget {
        guard let text = target ?? ProcessInfo.processInfo.environment["PGCLONE_TARGET"] else {
            throw ValidationError("--target is required (a libpq conninfo of the target database)")
        }
        let info: ConnInfo
        do {
            info = try ConnInfo(parsing: text)
        } catch {
            throw ValidationError("--target: \(error)")
        }
        do {
            let connection = try await PQConnection.connect(text, label: "target-probe")
            let who = try await connection.exec("SELECT current_user, current_database()")
            return CloneTarget(serviceConnInfo: info, database: who.string(0, 1)!, role: who.string(0, 0)!)
        } catch let error as PQError {
            throw CommandFailure("could not connect to target: \(error.message)")
        }
    }
}

/// A failure reported as `pgclone: message` with exit status 1.
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs a clone and turns engine errors into a clear message and exit status.
func runClone(_ body: () async throws -> String) async throws {
    do {
        print(try await body())
    } catch let error as CloneError {
        var text = "pgclone: ERROR: \(error.message)"
        if let hint = error.hint { text += "\nHINT: \(hint)" }
        FileHandle.standardError.write(Data((text + "\n").utf8))
        throw ExitCode.failure
    } catch let error as CommandFailure {
        FileHandle.standardError.write(Data("pgclone: \(error.description)\n".utf8))
        throw ExitCode.failure
    }
}

/// A progress bar on a terminal, one line per table otherwise.
final class TerminalProgress: CloneProgress, @unchecked Sendable {
    private let lock = NSLock()
    private var total = 0
    private var done = 0
    private var rows = 0
    private let isTerminal = isatty(STDERR_FILENO) == 1

    func start(tables: Int) {
        lock.withLock { total = tables }
    }

    func tableStarted(_ name: String) {
        lock.withLock { draw(current: name) }
    }

    func tableFinished(_ name: String, rows count: Int, bytes: Int) {
        lock.withLock {
            done += 1
            rows += count
            if isTerminal {
                draw(current: name)
                if done == total { FileHandle.standardError.write(Data("\n".utf8)) }
            } else {
                FileHandle.standardError.write(Data("[\(done)/\(total)] \(name): \(count) rows\n".utf8))
            }
        }
    }

    private func draw(current: String) {
        guard isTerminal, total > 0 else { return }
        let width = 30
        let filled = width * done / total
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let line = "\r[\(bar)] \(done)/\(total) tables, \(rows) rows  \(current.prefix(40))\u{1B}[K"
        FileHandle.standardError.write(Data(line.utf8))
    }
}
