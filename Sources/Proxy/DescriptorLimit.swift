#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process's limit on open descriptors.
///
/// A proxy holds two descriptors per client (its socket and its server connection), and
/// service managers and container runtimes commonly start processes with a soft limit of
/// 1,024 under a far higher hard one: at the soft limit `accept` fails and clients wait. A
/// process may raise its own soft limit up to the hard one without privileges, so the proxy
/// does that once at start (as the Go runtime does for every program), before anything sizes
/// itself on the limit.
public enum DescriptorLimit {
    public struct Change: Equatable, Sendable {
        public var before: UInt64
        public var after: UInt64
    }

    /// The current soft and hard limits, or nil where the system does not say.
    public static func current() -> (soft: UInt64, hard: UInt64)? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        return (UInt64(limit.rlim_cur), UInt64(limit.rlim_max))
    }

    /// Raises the soft limit to the hard limit (at most `ceiling`, so that nothing that sizes
    /// a table on the limit meets an "unlimited" one). Returns what changed, or nil when
    /// nothing did (already there, or the system refused).
    @discardableResult
    public static func raiseSoftLimitToHard(ceiling: UInt64 = 1 << 20) -> Change? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        let target = min(UInt64(limit.rlim_max), ceiling)
        let before = UInt64(limit.rlim_cur)
        guard before < target else { return nil }
        limit.rlim_cur = rlim_t(target)
        guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        return Change(before: before, after: target)
    }
}
