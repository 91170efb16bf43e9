import Foundation
import Logging
import Masking
import NIOConcurrencyHelpers
import Synchronization

/// The policies in force. A reload that finds any invalid file keeps the last good
/// set (masking never turns off because of a bad file) and records the error.
public final class PolicyStore: Sendable {
    public struct Status: Sendable {
        public var policies: PolicySet
        public var lastError: String?
        public var lastReload: Date?
        /// Why the state database's policies could not be read last time (the last good ones stay).
        public var stateError: String?
        /// Whether the state database's policies have been read at least once.
        public var stateLoaded = false
        /// The server's clock at the last good read of the state database's policies.
        public var stateReadAt: String?
        /// The last good policies from files and from the state database, merged into `policies`.
        var filePolicies: [TablePolicy] = []
        var statePolicies: [TablePolicy] = []
    }

    /// The policy files' directory (RELOAD may change it).
    public var directory: String? { directoryBox.withLockedValue { $0 } }
    private let directoryBox: NIOLockedValueBox<String?>
    /// Whether policies also come from the state database (create_masking_policy).
    public let hasStateSource: Bool
    private let state: NIOLockedValueBox<Status>
    /// The version and readiness, readable without the lock: sessions look at them on every read.
    private let versionNow = Synchronization.Atomic<Int>(0)
    private let readyNow: Synchronization.Atomic<Bool>
    private let logger: Logger

    public init(directory: String?, hasStateSource: Bool = false, logger: Logger) {
        self.directoryBox = NIOLockedValueBox(directory)
        self.hasStateSource = hasStateSource
        self.logger = logger
        self.state = NIOLockedValueBox(Status(policies: .empty, lastError: nil, lastReload: nil))
        self.readyNow = Synchronization.Atomic(!hasStateSource)
    }

    /// The current version, without the lock.
    public var version: Int { versionNow.load(ordering: .acquiring) }

    /// `isReady`, without the lock.
    public var isReadyNow: Bool { readyNow.load(ordering: .acquiring) }

    public var current: PolicySet { state.withLockedValue { $0.policies } }
    public var status: Status { state.withLockedValue { $0 } }

    /// Every configured source has been read once: until then nobody knows whom to mask, and
    /// sessions that could be masked are refused rather than relayed.
    public var isReady: Bool { !hasStateSource || state.withLockedValue { $0.stateLoaded } }

    /// Why the policies are not known yet, for the refusal.
    public var notReadyReason: String {
        let error = state.withLockedValue { $0.stateError }
        return "pgclone has not yet read the masking policies stored in its state database" + (error.map { " (\($0))" } ?? "")
    }

    /// Points at another directory (read at the next `reload`); with none, the file policies go.
    public func setDirectory(_ directory: String?) {
        guard directoryBox.withLockedValue({ old in defer { old = directory }; return old != directory }) else { return }
        if directory == nil {
            state.withLockedValue { status in
                status.filePolicies = []
                _ = Self.merge(&status)
            }
            versionNow.store(current.version, ordering: .releasing)
        }
    }

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
            versionNow.store(current.version, ordering: .releasing)
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
    public func setStatePolicies(_ snapshot: StatePolicies.Snapshot) {
        let (changed, recovered) = state.withLockedValue { status -> (Bool, Bool) in
            let recovered = status.stateError != nil
            status.statePolicies = snapshot.policies
            status.stateReadAt = snapshot.readAt
            status.stateLoaded = true
            status.stateError = nil
            return (Self.merge(&status), recovered)
        }
        readyNow.store(true, ordering: .releasing)
        versionNow.store(current.version, ordering: .releasing)
        if recovered { logger.notice("masking policies read from the state database again") }
        if changed {
            logger.info("policies updated from the state database", metadata: ["policies.version": "\(current.version)"])
        }
    }

    /// The state database could not be read: the last good policies stay, and the error shows
    /// in policy_status(). Logged once per outage.
    public func stateFailed(_ error: String) {
        let first = state.withLockedValue { status -> Bool in
            defer { status.stateError = error }
            return status.stateError == nil
        }
        if first {
            logger.error("cannot read the masking policies stored in the state database; the last good set stays in force", metadata: ["error": "\(error)"])
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
