import Logging
import MeshTransport
import MeshWire

/// The ROUTER socket peers connect to (workers, or later pipeline stages): router-mandatory (a
/// send to a peer that is gone fails at once), the wire's largest message, and CURVE with its ZAP
/// handler when `security` is given.
final class ListeningRouter {
    let socket: ZMQSocket
    private let zap: ZAPHandler?

    init(context: ZMQContext, endpoint: String, security: Cluster.Security?, logger: Logger) throws {
        socket = try ZMQSocket(context: context, kind: .router)
        try socket.setRouterMandatory()
        try socket.setMaxMessageSize(WireCodec.maxMessageBytes)
        if let security {
            zap = try ZAPHandler(context: context, keys: security.authorizedKeys, logger: logger)
            try socket.makeCurveServer(security.certificate)
        } else {
            zap = nil
        }
        try socket.bind(endpoint)
    }

    deinit { zap?.stop() }
}
