/// Size limits the codec enforces on untrusted input.
///
/// PostgreSQL itself caps a message at 1 GB (`PQ_LARGE_MESSAGE_LIMIT`) and a
/// startup packet at 10 000 bytes (`MAX_STARTUP_PACKET_LENGTH`); a proxy that
/// accepted more would let one client make it hold arbitrary memory.
public enum WireLimits {
    /// Largest declared length (including the 4 length bytes) of a typed message.
    public static let maximumMessageLength = 0x4000_0000
    /// Largest startup-phase packet (SSLRequest, CancelRequest, StartupMessage).
    public static let maximumStartupPacketLength = 10_000
}
