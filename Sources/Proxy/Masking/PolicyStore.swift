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
        /// The last good policies from files and from the state database, merged into `policies`.
        var filePolicies: [TablePolicy] = []
        var statePolicies: [TablePolicy] = []
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
                status.filePolicies = policies
                return Self.merge(&status)
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

    /// Installs the policies read from the state database (create_masking_policy).
    public func setStatePolicies(_ policies: [TablePolicy]) {
        let changed = state.withLockedValue { status -> Bool in
            status.statePolicies = policies
            return Self.merge(&status)
        }
        if changed {
            logger.info("policies updated from the state database", metadata: ["policies.version": "\(current.version)"])
        }
    }

    /// Files first; a state policy for a table a file already covers is ignored.
    private static func merge(_ status: inout Status) -> Bool {
        var merged = status.filePolicies
        for policy in status.statePolicies where !merged.contains(where: {
            $0.schema == policy.schema && $0.table == policy.table && ($0.database == nil || $0.database == policy.database)
        }) {
            merged.append(policy)
        }
        guard merged != status.policies.policies else { return false }
        status.policies = PolicySet(policies: merged, version: status.policies.version + 1)
        return true
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
