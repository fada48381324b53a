import CZeroMQ
import Foundation
import Logging

/// The public keys allowed to connect, read from a directory of `.key` files; `reload` reads it
/// again (the coordinator calls it on SIGHUP).
public final class AuthorizedKeys: @unchecked Sendable {
    public let directory: String
    private let lock = NSLock()
    private var keys: [String: String]

    public init(directory: String) throws {
        self.directory = directory
        keys = try CurveCertificate.publicKeys(inDirectory: directory)
    }

    public var count: Int { lock.withLock { keys.count } }

    /// The file that authorises `key`, if any.
    public func file(of key: String) -> String? { lock.withLock { keys[key] } }

    @discardableResult
    public func reload() throws -> Int {
        let fresh = try CurveCertificate.publicKeys(inDirectory: directory)
        lock.withLock { keys = fresh }
        return fresh.count
    }
}

/// ZeroMQ's authentication protocol (ZAP, RFC 27) for one context: every CURVE handshake on its
/// sockets asks this handler, on its own thread, whether the client's public key may connect.
public final class ZAPHandler: @unchecked Sendable {
    static let domain = "expertmesh"
    private let lock = NSLock()
    private var stopped = false
    private let finished = DispatchSemaphore(value: 0)

    /// Binds the handler before returning, so no handshake can happen without it.
    public init(context: ZMQContext, keys: AuthorizedKeys, logger: Logger) throws {
        let bound = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var failure: (any Error)?
        let thread = Thread { [self] in
            let socket: ZMQSocket
            do {
                socket = try ZMQSocket(context: context, kind: .reply)
                try socket.bind("inproc://zeromq.zap.01")
            } catch {
                failure = error
                bound.signal()
                finished.signal()
                return
            }
            bound.signal()
            while !lock.withLock({ stopped }) {
                guard let request = try? socket.receive(timeoutMilliseconds: 200) else { continue }
                try? socket.send(Self.answer(request, keys: keys, logger: logger))
            }
            socket.close()
            finished.signal()
        }
        thread.name = "zap"
        thread.start()
        bound.wait()
        if let failure { throw CurveError("cannot start the key check (ZAP handler): \(failure)") }
    }

    /// The reply to one ZAP request: [version, request id, domain, address, identity, mechanism, key].
    static func answer(_ request: [Data], keys: AuthorizedKeys, logger: Logger) -> [Data] {
        func reply(_ code: String, _ text: String, user: String = "") -> [Data] {
            [Data("1.0".utf8), request.count > 1 ? request[1] : Data(), Data(code.utf8), Data(text.utf8), Data(user.utf8), Data()]
        }
        guard request.count >= 7, String(decoding: request[0], as: UTF8.self) == "1.0",
              String(decoding: request[5], as: UTF8.self) == "CURVE", let key = CurveCertificate.z85(Array(request[6])) else {
            logger.warning("refused a connection that is not a CURVE handshake")
            return reply("400", "CURVE required")
        }
        let address = String(decoding: request[3], as: UTF8.self)
        guard let file = keys.file(of: key) else {
            let refusal = "refused a peer (worker or pipeline stage) from \(address): its public key \(key) is not "
                + "among the authorized keys in \(keys.directory) (copy its .key file there and send SIGHUP)"
            logger.warning("\(refusal)", metadata: ["address": "\(address)", "key": "\(key)"])
            return reply("400", "key not authorized")
        }
        return reply("200", "OK", user: file)
    }

    public func stop() {
        lock.withLock { stopped = true }
        finished.wait()
    }
}
