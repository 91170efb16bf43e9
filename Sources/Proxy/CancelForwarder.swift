import NIOCore
import NIOPosix
import PostgresWire

/// Sends a CancelRequest for a backend session on a fresh connection, as the protocol requires.
enum CancelForwarder {
    /// Succeeds once the request is written (or could not be): the client's own cancel
    /// connection closes after that, as PostgreSQL closes it after signalling the backend.
    static func send(_ key: BackendKey, to endpoint: BackendEndpoint, on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        let bootstrap = ClientBootstrap(group: eventLoop).connectTimeout(.seconds(5))
        let connected: EventLoopFuture<any Channel>
        switch endpoint.address {
        case .tcp(let host, let port): connected = bootstrap.connect(host: host, port: port)
        case .unixSocket(let path): connected = bootstrap.connect(unixDomainSocketPath: path)
        }
        return connected.flatMap { channel in
            var packet = ByteBuffer()
            StartupPacket.cancelRequest(key).encode(into: &packet)
            return channel.writeAndFlush(packet).flatMap {
                // The server closes the connection once it has signalled the backend.
                channel.closeFuture
            }.always { _ in channel.close(promise: nil) }
        }.recover { _ in }
    }
}
