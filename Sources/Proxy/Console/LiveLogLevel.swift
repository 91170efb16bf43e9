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
            set { stream[metadataKey: key] = newValue }
        }

        public func log(event: LogEvent) {
            stream.log(event: event)
        }
    }
}
