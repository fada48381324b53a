import CZeroMQ

/// A libzmq call failed; `message` says which call and why.
public struct TransportError: Error, CustomStringConvertible, Sendable {
    public let code: Int32
    public let message: String
    public var description: String { message }

    static func last(_ operation: String) -> TransportError {
        let code = zmq_errno()
        return TransportError(code: code, message: "\(operation): \(String(cString: zmq_strerror(code)))")
    }

    /// A send or receive that could not proceed within its timeout.
    public var isTimeout: Bool { code == EAGAIN }

    /// Set when a ROUTER with router-mandatory sends to a peer that is not connected.
    public var isUnreachablePeer: Bool { code == EHOSTUNREACH }
}
