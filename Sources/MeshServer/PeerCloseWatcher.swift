import Foundation
import Hummingbird
import NIOCore

/// Tells a request handler when its client has gone: the client closed its side of the
/// connection (a FIN: Hummingbird allows half-closure, so the channel stays open) or the
/// connection died. One per connection, in the HTTP pipeline; keep-alive is unaffected.
final class PeerCloseWatcher: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = NIOAny
    private let lock = NSLock()
    private var gone = false
    private var callbacks: [Int: @Sendable () -> Void] = [:]
    private var nextToken = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed? = event as? ChannelEvent { peerLeft() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        peerLeft()
        context.fireChannelInactive()
    }

    private func peerLeft() {
        let waiting = lock.withLock {
            gone = true
            defer { callbacks = [:] }
            return Array(callbacks.values)
        }
        waiting.forEach { $0() }
    }

    /// Calls `callback` once the client goes (at once if it has); returns a token for `forget`.
    func onPeerGone(_ callback: @escaping @Sendable () -> Void) -> Int {
        let (token, alreadyGone) = lock.withLock {
            nextToken += 1
            if !gone { callbacks[nextToken] = callback }
            return (nextToken, gone)
        }
        if alreadyGone { callback() }
        return token
    }

    func forget(_ token: Int) {
        lock.withLock { _ = callbacks.removeValue(forKey: token) }
    }
}

/// The request context of the API: Hummingbird's, plus the connection's peer watcher.
struct APIRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }

    /// The watcher of this request's connection.
    func peerWatcher() async throws -> PeerCloseWatcher {
        try await channel.pipeline.handler(type: PeerCloseWatcher.self).get()
    }
}
