import NIOConcurrencyHelpers

/// The names of the server's built-in functions (OIDs below 16384, the same in every
/// database of a cluster). Read once, with the first masking context of any session,
/// and shared: a masked statement calling a name that is neither built in nor among
/// the user functions its context knows was created since, and needs a fresh context.
final class BuiltinFunctions: Sendable {
    private let box = NIOLockedValueBox<Set<String>?>(nil)

    var names: Set<String>? { box.withLockedValue { $0 } }

    func store(_ names: Set<String>) {
        guard !names.isEmpty else { return }
        box.withLockedValue { if $0 == nil { $0 = names } }
    }
}
