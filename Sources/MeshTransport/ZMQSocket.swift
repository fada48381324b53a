import CZeroMQ
import Foundation

/// One libzmq context per process.
public final class ZMQContext: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    public init() {
        handle = zmq_ctx_new()
    }

    deinit { zmq_ctx_term(handle) }
}

/// A ZeroMQ socket. Owned by one thread at a time (libzmq sockets are not thread-safe).
public final class ZMQSocket: @unchecked Sendable {
    public enum Kind { case router, dealer, pair, reply }

    let handle: UnsafeMutableRawPointer
    private let context: ZMQContext
    private var closed = false

    public init(context: ZMQContext, kind: Kind) throws {
        let type: Int32
        switch kind {
        case .router: type = ZMQ_ROUTER
        case .dealer: type = ZMQ_DEALER
        case .pair: type = ZMQ_PAIR
        case .reply: type = ZMQ_REP
        }
        guard let socket = zmq_socket(context.handle, type) else { throw TransportError.last("zmq_socket") }
        handle = socket
        self.context = context
        try setInt(ZMQ_LINGER, 0)
    }

    deinit { close() }

    public func close() {
        guard !closed else { return }
        closed = true
        zmq_close(handle)
    }

    // MARK: options

    public func setInt(_ option: Int32, _ value: Int32) throws {
        var v = value
        guard zmq_setsockopt(handle, option, &v, MemoryLayout<Int32>.size) == 0 else { throw TransportError.last("zmq_setsockopt(\(option))") }
    }

    public func setInt64(_ option: Int32, _ value: Int64) throws {
        var v = value
        guard zmq_setsockopt(handle, option, &v, MemoryLayout<Int64>.size) == 0 else { throw TransportError.last("zmq_setsockopt(\(option))") }
    }

    public func setBytes(_ option: Int32, _ value: [UInt8]) throws {
        guard zmq_setsockopt(handle, option, value, value.count) == 0 else { throw TransportError.last("zmq_setsockopt(\(option))") }
    }

    /// Stable identity a DEALER presents to a ROUTER.
    public func setRoutingId(_ id: [UInt8]) throws { try setBytes(ZMQ_ROUTING_ID, id) }

    /// A ROUTER fails loudly (EHOSTUNREACH) when sending to a peer that is gone.
    public func setRouterMandatory() throws { try setInt(ZMQ_ROUTER_MANDATORY, 1) }

    /// A send that cannot proceed within this time fails with a timeout (`isTimeout`).
    public func setSendTimeout(milliseconds: Int32) throws { try setInt(ZMQ_SNDTIMEO, milliseconds) }

    /// Messages larger than this are refused by libzmq (the connection is dropped).
    public func setMaxMessageSize(_ bytes: Int64) throws { try setInt64(ZMQ_MAXMSGSIZE, bytes) }

    /// Authenticates and encrypts as a CURVE server; clients' keys are checked by the ZAP handler
    /// of the socket's context (`ZAPHandler`).
    public func makeCurveServer(_ certificate: CurveCertificate) throws {
        guard let secret = certificate.secretKey else { throw CurveError("a CURVE server needs its secret key") }
        try setInt(ZMQ_CURVE_SERVER, 1)
        try setBytes(ZMQ_CURVE_SECRETKEY, Array(secret.utf8))
        try setBytes(ZMQ_ZAP_DOMAIN, Array(ZAPHandler.domain.utf8))
    }

    /// Authenticates and encrypts as a CURVE client of the server whose public key is `serverKey`.
    public func makeCurveClient(_ certificate: CurveCertificate, serverKey: String) throws {
        guard let secret = certificate.secretKey else { throw CurveError("a CURVE client needs its secret key") }
        try setBytes(ZMQ_CURVE_SERVERKEY, Array(serverKey.utf8))
        try setBytes(ZMQ_CURVE_PUBLICKEY, Array(certificate.publicKey.utf8))
        try setBytes(ZMQ_CURVE_SECRETKEY, Array(secret.utf8))
    }

    // MARK: endpoints

    public func bind(_ endpoint: String) throws {
        guard zmq_bind(handle, endpoint) == 0 else { throw TransportError.last("cannot listen on \(endpoint)") }
    }

    public func connect(_ endpoint: String) throws {
        guard zmq_connect(handle, endpoint) == 0 else { throw TransportError.last("cannot connect to \(endpoint)") }
    }

    /// The endpoint actually bound (resolves `tcp://127.0.0.1:*`).
    public var lastEndpoint: String {
        var buffer = [CChar](repeating: 0, count: 256)
        var size = buffer.count
        zmq_getsockopt(handle, ZMQ_LAST_ENDPOINT, &buffer, &size)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    // MARK: messages

    /// Received frames at least this large are not copied out of libzmq.
    static let zeroCopyThreshold = 4096

    /// Sends all frames as one multipart message. Frames are copied into libzmq's buffers: on
    /// loopback that measured faster than zero-copy sends, whose buffers libzmq's I/O thread
    /// frees later (large unmaps on another core).
    public func send(_ frames: [Data]) throws {
        for (index, frame) in frames.enumerated() {
            let flags = index < frames.count - 1 ? ZMQ_SNDMORE : 0
            let rc = frame.withUnsafeBytes { raw in zmq_send(handle, raw.baseAddress, raw.count, flags) }
            guard rc >= 0 else { throw TransportError.last("zmq_send") }
        }
    }

    /// Receives one multipart message; nil when `timeoutMilliseconds` passes first (-1 waits forever).
    /// Large frames are not copied: the returned `Data` owns the libzmq message.
    public func receive(timeoutMilliseconds: Int = -1) throws -> [Data]? {
        if timeoutMilliseconds >= 0, try !poll(timeoutMilliseconds: timeoutMilliseconds) { return nil }
        var frames: [Data] = []
        lastPeerAddress = nil
        while true {
            let message = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
            zmq_msg_init(message)
            guard zmq_msg_recv(message, handle, 0) >= 0 else {
                let error = TransportError.last("zmq_msg_recv")
                zmq_msg_close(message)
                message.deallocate()
                throw error
            }
            let size = zmq_msg_size(message)
            let more = zmq_msg_more(message) != 0
            // The routing-id frame ROUTER adds carries no metadata; the peer's own frames do.
            if lastPeerAddress == nil, let address = zmq_msg_gets(message, "Peer-Address") { lastPeerAddress = String(cString: address) }
            if size >= Self.zeroCopyThreshold {
                frames.append(Data(bytesNoCopy: zmq_msg_data(message), count: size, deallocator: .custom { _, _ in
                    zmq_msg_close(message)
                    message.deallocate()
                }))
            } else {
                frames.append(size == 0 ? Data() : Data(bytes: zmq_msg_data(message), count: size))
                zmq_msg_close(message)
                message.deallocate()
            }
            if !more { break }
        }
        return frames
    }

    /// The IP address of the peer the last received message came from (TCP only; nil otherwise).
    public private(set) var lastPeerAddress: String?

    /// True when a message can be read within the timeout.
    public func poll(timeoutMilliseconds: Int) throws -> Bool {
        var item = zmq_pollitem_t(socket: handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
        let rc = zmq_poll(&item, 1, timeoutMilliseconds)
        if rc < 0 {
            if zmq_errno() == EINTR { return false }
            throw TransportError.last("zmq_poll")
        }
        return rc > 0
    }
}
