import Foundation
import Logging
import Synchronization

/// The log level in force, changeable by RELOAD: every logger's handler reads it.
public enum LiveLogLevel {
    public static let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
    private static let current = Atomic<Int>(2)

    public static var level: Logger.Level {
        get { Logger.Level.allCases[current.load(ordering: .relaxed)] }
        set { current.store(Logger.Level.allCases.firstIndex(of: newValue) ?? 2, ordering: .relaxed) }
    }

    static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F: out += String(format: "\\x%02X", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    static func escaped(_ value: Logger.Metadata.Value) -> Logger.Metadata.Value {
        switch value {
        case .string(let text): return .string(escaped(text))
        case .stringConvertible(let convertible): return .string(escaped(convertible.description))
        case .array(let values): return .array(values.map(escaped))
        case .dictionary(let values): return .dictionary(values.mapValues(escaped))
        }
    }

    /// A handler writing to standard error at the live level.
    public struct Handler: LogHandler {
        private var stream: StreamLogHandler

        public init(label: String) {
            stream = StreamLogHandler.standardError(label: label)
            stream.logLevel = .trace
        }

        /// The process's level: setting it on one logger does nothing (RELOAD changes it for all).
        public var logLevel: Logger.Level {
            get { LiveLogLevel.level }
            set {}
        }

        public var metadata: Logger.Metadata {
            get { stream.metadata }
            set { stream.metadata = newValue }
        }

        public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { stream[metadataKey: key] }
            set { stream[metadataKey: key] = newValue.map(LiveLogLevel.escaped) }
        }

        /// Values from clients (user and database names, application_name, statement text) can
        /// hold line breaks: escaped, one event stays one line and cannot forge another.
        public func log(event: LogEvent) {
            var event = event
            event.message = Logger.Message(stringLiteral: LiveLogLevel.escaped(event.message.description))
            event.metadata = event.metadata?.mapValues(LiveLogLevel.escaped)
            stream.log(event: event)
        }
    }
}
