import Foundation
import Logging
import Masking
import NIOConcurrencyHelpers

/// The policies in force. A reload that finds any invalid file keeps the last good
/// set (masking never turns off because of a bad file) and records the error.
public final class PolicyStore: Sendable {
    public struct Status: Sendable {
        public var policies: PolicySet
        public var lastError: String?
        public var lastReload: Date?
    }

    public let directory: String?
    private let state: NIOLockedValueBox<Status>
    private let logger: Logger

    public init(directory: String?, logger: Logger) {
        self.directory = directory
        self.logger = logger
        self.state = NIOLockedValueBox(Status(policies: .empty, lastError: nil, lastReload: nil))
    }

    public var current: PolicySet { state.withLockedValue { $0.policies } }
    public var status: Status { state.withLockedValue { $0 } }

    /// Reloads from the directory; returns the error text when the files were rejected.
    @discardableResult
    public func reload() -> String? {
        guard let directory else { return nil }
        do {
            let policies = try PolicyLoader.load(directory: directory)
            let changed = state.withLockedValue { status -> Bool in
                status.lastError = nil
                status.lastReload = Date()
                guard policies != status.policies.policies else { return false }
                status.policies = PolicySet(policies: policies, version: status.policies.version + 1)
                return true
            }
            if changed {
                logger.info("policies loaded", metadata: ["policies.count": "\(policies.count)", "policies.version": "\(current.version)"])
            }
            return nil
        } catch {
            let text = error.description
            state.withLockedValue {
                $0.lastError = text
                $0.lastReload = Date()
            }
            logger.error("policy reload rejected; keeping the last good policies", metadata: ["error": "\(text)"])
            return text
        }
    }

    /// A fingerprint of the directory (names, sizes, modification times) to notice edits.
    func directorySignature() -> String {
        guard let directory, let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return "" }
        return names.sorted().filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.map { name -> String in
            let attributes = try? FileManager.default.attributesOfItem(atPath: (directory as NSString).appendingPathComponent(name))
            let size = (attributes?[.size] as? NSNumber)?.intValue ?? -1
            let modified = (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            return "\(name):\(size):\(modified)"
        }.joined(separator: "|")
    }
}
