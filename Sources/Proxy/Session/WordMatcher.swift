/// Finds whether a text contains any of a few words, ignoring ASCII case, in one pass over
/// contiguous bytes: the check every statement of a session that is not masked pays.
struct WordMatcher: Sendable {
    /// The words (lower-case ASCII) by their first byte.
    private let byFirstByte: [[[UInt8]]]
    private let shortest: Int

    init(_ words: [String]) {
        var table = [[[UInt8]]](repeating: [], count: 256)
        for word in words {
            let bytes = Array(word.lowercased().utf8)
            table[Int(bytes[0])].append(bytes)
        }
        byFirstByte = table
        shortest = words.map(\.utf8.count).min() ?? 1
    }

    func matches<Bytes: Collection>(_ bytes: Bytes) -> Bool where Bytes.Element == UInt8 {
        if let found = bytes.withContiguousStorageIfAvailable({ matches(contiguous: $0) }) { return found }
        return Array(bytes).withUnsafeBufferPointer { matches(contiguous: $0) }
    }

    private func matches(contiguous bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard bytes.count >= shortest else { return false }
        var index = 0
        let end = bytes.count - shortest
        while index <= end {
            let first = Self.lower(bytes[index])
            let candidates = byFirstByte[Int(first)]
            if !candidates.isEmpty {
                for word in candidates where index + word.count <= bytes.count {
                    var offset = 1
                    while offset < word.count, Self.lower(bytes[index + offset]) == word[offset] { offset += 1 }
                    if offset == word.count { return true }
                }
            }
            index += 1
        }
        return false
    }

    @inline(__always)
    private static func lower(_ byte: UInt8) -> UInt8 {
        byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
    }
}
