import Foundation

/// One command of the admin console (`psql -d pgclone` through the proxy), as PgBouncer's.
enum ConsoleCommand: Equatable, Sendable {
    case show(Topic)
    case reload
    case pause(database: String?)
    case resume(database: String?)
    case killClient(id: Int)
    case shutdown

    enum Topic: String, CaseIterable, Sendable {
        case help, version, config, clients, servers, stats, policies, jobs
    }

    struct ParseError: Error, Equatable {
        var sqlState: String
        var message: String
        var hint: String?
    }

    /// What each command does, for SHOW HELP.
    static let help: [(String, String)] = [
        ("SHOW HELP", "this list"),
        ("SHOW VERSION", "the pgclone version"),
        ("SHOW CONFIG", "settings: value, default, whether RELOAD can change it"),
        ("SHOW CLIENTS", "client connections"),
        ("SHOW SERVERS", "server connections (one per client)"),
        ("SHOW STATS", "totals and averages per database"),
        ("SHOW POLICIES", "masking policies in force and whether the server backs them up"),
        ("SHOW JOBS", "background jobs"),
        ("RELOAD", "re-read the config file, the environment and the policies"),
        ("PAUSE [db]", "new transactions wait (running ones finish); returns when none is active"),
        ("RESUME [db]", "let waiting transactions go"),
        ("KILL_CLIENT id", "close one client connection (and its server connection)"),
        ("SHUTDOWN", "stop the proxy gracefully"),
    ]

    /// Splits a simple Query's text into commands (`;`-separated, blank ones dropped).
    static func parseAll(_ text: String) -> [Result<ConsoleCommand, ParseError>] {
        statements(text).map(parse)
    }

    /// The text's commands: split at semicolons outside double quotes, blank ones dropped.
    static func statements(_ text: String) -> [String] {
        pieces(text) { $0 == ";" }.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
    }

    /// Words separated by white space; a double-quoted word keeps its spaces (and its quotes).
    static func words(_ text: String) -> [String] {
        pieces(text) { $0.isWhitespace }.filter { !$0.isEmpty }
    }

    /// The text split at separators outside double quotes (the separators dropped).
    private static func pieces(_ text: String, separatedBy isSeparator: (Character) -> Bool) -> [String] {
        var pieces: [String] = []
        var current = ""
        var quoted = false
        for character in text {
            if character == "\"" { quoted.toggle() }
            if isSeparator(character) && !quoted {
                pieces.append(current)
                current = ""
            } else {
                current.append(character)
            }
        }
        pieces.append(current)
        return pieces
    }

    /// A piece of the client's text in a message: at most 64 characters of it.
    static func quoted(_ text: String) -> String {
        text.count > 64 ? String(text.prefix(64)) + "…" : text
    }

    static func parse(_ text: String) -> Result<ConsoleCommand, ParseError> {
        let words = words(text)
        guard let verb = words.first?.uppercased() else {
            return .failure(ParseError(sqlState: "42601", message: "empty console command"))
        }
        func arguments(_ allowed: ClosedRange<Int>) -> Result<[String], ParseError> {
            let rest = Array(words.dropFirst())
            guard allowed.contains(rest.count) else {
                return .failure(ParseError(sqlState: "42601", message: "\(verb) takes \(allowed.upperBound == 0 ? "no arguments" : allowed.lowerBound == allowed.upperBound ? "\(allowed.lowerBound) argument" : "at most \(allowed.upperBound) argument")",
                                           hint: "SHOW HELP lists the commands."))
            }
            return .success(rest)
        }
        switch verb {
        case "SHOW":
            guard words.count == 2 else {
                return .failure(ParseError(sqlState: "42601", message: "SHOW needs one of: \(Topic.allCases.map { $0.rawValue.uppercased() }.joined(separator: ", "))"))
            }
            guard let topic = Topic(rawValue: words[1].lowercased()) else {
                return .failure(ParseError(sqlState: "42704", message: "unknown SHOW topic \"\(quoted(words[1]))\"",
                                           hint: "Topics: \(Topic.allCases.map { $0.rawValue.uppercased() }.joined(separator: ", "))."))
            }
            return .success(.show(topic))
        case "RELOAD":
            return arguments(0...0).map { _ in .reload }
        case "SHUTDOWN":
            return arguments(0...0).map { _ in .shutdown }
        case "PAUSE":
            return arguments(0...1).map { .pause(database: $0.first.map(unquote)) }
        case "RESUME":
            return arguments(0...1).map { .resume(database: $0.first.map(unquote)) }
        case "KILL_CLIENT":
            switch arguments(1...1) {
            case .failure(let error): return .failure(error)
            case .success(let rest):
                guard let id = Int(rest[0]), id > 0 else {
                    return .failure(ParseError(sqlState: "22P02", message: "KILL_CLIENT needs a client id (the id column of SHOW CLIENTS), not \"\(quoted(rest[0]))\""))
                }
                return .success(.killClient(id: id))
            }
        default:
            return .failure(ParseError(sqlState: "42601", message: "unknown pgclone console command \"\(quoted(words[0]))\"",
                                       hint: "The console takes PgBouncer-style commands; SHOW HELP lists them."))
        }
    }

    /// `"My DB"` → `My DB`; bare names as typed.
    static func unquote(_ word: String) -> String {
        guard word.count >= 2, word.hasPrefix("\""), word.hasSuffix("\"") else { return word }
        return String(word.dropFirst().dropLast()).replacingOccurrences(of: "\"\"", with: "\"")
    }
}
