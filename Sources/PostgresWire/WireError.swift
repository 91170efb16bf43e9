/// A violation of the PostgreSQL v3 protocol found while decoding untrusted bytes.
///
/// `description` is deliberately generic: it is safe to log and to send to a
/// client, and never contains message bytes (which may hold row values).
public struct WireError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        /// A declared length is negative, too small or above the protocol limit.
        case invalidLength(Int)
        /// A message type byte that is not defined for this direction.
        case unknownMessageType(UInt8)
        /// The payload ended before all its fields were read.
        case truncated
        /// Bytes were left over after all fields were read.
        case trailingBytes(Int)
        /// A field holds a value the protocol does not allow.
        case invalidField(String)
    }

    public var kind: Kind
    /// The type byte of the message being decoded, when known.
    public var messageType: UInt8?

    public init(_ kind: Kind, messageType: UInt8? = nil) {
        self.kind = kind
        self.messageType = messageType
    }

    public var description: String {
        switch kind {
        case .invalidLength(let length):
            return "invalid message length \(length)"
        case .unknownMessageType(let type):
            return "invalid message type \(Self.printable(type))"
        case .truncated:
            return "incomplete message" + Self.suffix(messageType)
        case .trailingBytes(let count):
            return "\(count) unexpected bytes at end of message" + Self.suffix(messageType)
        case .invalidField(let what):
            return "invalid \(what)" + Self.suffix(messageType)
        }
    }

    private static func suffix(_ type: UInt8?) -> String {
        type.map { " of type \(printable($0))" } ?? ""
    }

    static func printable(_ byte: UInt8) -> String {
        (0x21...0x7e).contains(byte) ? "\"\(Character(Unicode.Scalar(byte)))\"" : "0x" + String(byte, radix: 16)
    }
}
