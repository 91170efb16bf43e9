import NIOCore
import NIOPosix
import PostgresWire

/// Sends a CancelRequest for a backend session on a fresh connection, as the protocol requires.
enum CancelForwarder {
    static func send(_ key: BackendKey, to endpoint: BackendEndpoint, on eventLoop: any EventLoop) {
        let bootstrap = ClientBootstrap(group: eventLoop).connectTimeout(.seconds(5))
        let connected: EventLoopFuture<any Channel>
        switch endpoint.address {
        case .tcp(let host, let port): connected = bootstrap.connect(host: host, port: port)
        case .unixSocket(let path): connected = bootstrap.connect(unixDomainSocketPath: path)
        }
        connected.whenSuccess { channel in
            var packet = ByteBuffer()
            StartupPacket.cancelRequest(key).encode(into: &packet)
            channel.writeAndFlush(packet).whenComplete { _ in
                channel.close(promise: nil)
            }
        }
    }
}
