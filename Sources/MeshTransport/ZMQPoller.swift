import CZeroMQ

/// Waits on several sockets of the calling thread at once.
public enum ZMQPoller {
    /// Which of `sockets` have a message to read, waiting up to `timeoutMilliseconds` (-1: forever).
    public static func readable(_ sockets: [ZMQSocket], timeoutMilliseconds: Int) throws -> [Bool] {
        var items = sockets.map { zmq_pollitem_t(socket: $0.handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0) }
        let rc = zmq_poll(&items, Int32(items.count), timeoutMilliseconds)
        if rc < 0 {
            if zmq_errno() == EINTR { return sockets.map { _ in false } }
            throw TransportError.last("zmq_poll")
        }
        return items.map { $0.revents & Int16(ZMQ_POLLIN) != 0 }
    }
}
