import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import ServiceLifecycle

/// The API's HTTP server (Hummingbird, on SwiftNIO's event loops), run beside an engine that
/// owns a thread of its own. Shutdown, on SIGTERM or SIGINT (swift-service-lifecycle):
/// 1. the engine takes no new requests (they get 503) and finishes those it runs, cancelling
///    what is left after `drainTimeout`; it then calls `drained()`;
/// 2. the HTTP server stops accepting connections and closes once the last response is sent;
/// 3. `isStopped` turns true and the engine's owner says goodbye (to workers) and returns.
public final class HTTPFrontEnd: @unchecked Sendable {
    public let host: String
    private let lock = NSLock()
    private var drainStarted = false
    private var drainedContinuation: CheckedContinuation<Void, Never>?
    private var isDrained = false
    private var stopped = false
    private let startup = Startup()
    private let application: Application<RouterResponder<APIRequestContext>>
    /// Seconds the engine may take to finish running requests once shutdown begins.
    public let drainTimeout: Double

    /// `logger`: the process's; Hummingbird's own lines (one per request) show at debug and trace only.
    public init(api: OpenAIAPI, host: String, port: Int, drainTimeout: Double = 30, logger: Logger) {
        self.host = host
        self.drainTimeout = drainTimeout
        var logger = logger
        if logger.logLevel > .debug { logger.logLevel = .warning }
        let limits = api.limits
        let channel = HTTP1Channel.Configuration(
            additionalChannelHandlers: [PeerCloseWatcher()],
            idleTimeout: .milliseconds(Int64(limits.idleTimeoutSeconds * 1000)),
            httpDecoderConfiguration: .init(maxHeaderFieldSize: limits.maxHeaderBytes,
                                            maxHeaderListSize: limits.maxHeaderBytes, maxHeaderFieldCount: 200))
        application = Application(
            responder: api.router().buildResponder(), server: .http1(configuration: channel),
            configuration: .init(address: .hostname(host, port: port), serverName: "expertmesh"),
            onServerRunning: { [startup] channel in startup.finish(.success(channel.localAddress?.port ?? port)) },
            logger: logger)
    }

    /// Starts serving; returns the bound port once the socket listens, or throws why it cannot.
    public func start() throws -> Int {
        let drain = DrainService(frontEnd: self)
        var configuration = ServiceGroupConfiguration(
            services: [application, drain], gracefulShutdownSignals: [.sigterm, .sigint], logger: application.logger)
        // Past the drain and a margin for the last writes, a client that stopped reading cannot
        // hold the process: shutdown escalates to cancellation.
        configuration.maximumGracefulShutdownDuration = .seconds(drainTimeout + 10)
        let group = ServiceGroup(configuration: configuration)
        Task.detached { [self] in
            do {
                try await group.run()
            } catch {
                startup.finish(.failure(error))
            }
            lock.withLock { stopped = true }
            startup.finish(.failure(ServerStartError("the HTTP server stopped before it started")))
        }
        do {
            return try startup.wait()
        } catch {
            throw ServerStartError("cannot serve HTTP on \(host): \(error); is the port in use?")
        }
    }

    /// True once shutdown began: the engine must take no new request.
    public var drainRequested: Bool { lock.withLock { drainStarted } }

    /// The engine runs nothing any more: HTTP may close.
    public func drained() {
        lock.lock()
        isDrained = true
        let continuation = drainedContinuation
        drainedContinuation = nil
        lock.unlock()
        continuation?.resume()
    }

    /// True once the HTTP server has closed (after shutdown, or if it failed).
    public var isStopped: Bool { lock.withLock { stopped } }

    fileprivate func beginDrain() async {
        await withCheckedContinuation { continuation in
            lock.lock()
            drainStarted = true
            if isDrained {
                lock.unlock()
                continuation.resume()
            } else {
                drainedContinuation = continuation
                lock.unlock()
            }
        }
    }
}

/// The bound port, or why the server did not start; the first answer wins.
final class Startup: @unchecked Sendable {
    private let lock = NSLock()
    private var result: Result<Int, any Error>?
    private let signal = DispatchSemaphore(value: 0)

    func finish(_ answer: Result<Int, any Error>) {
        let first = lock.withLock {
            guard result == nil else { return false }
            result = answer
            return true
        }
        if first { signal.signal() }
    }

    func wait() throws -> Int {
        signal.wait()
        return try lock.withLock { result! }.get()
    }
}

/// Why a server could not start (its HTTP socket, its chat template file).
public struct ServerStartError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Last in the service group, so first told of shutdown: holds the HTTP server open until the
/// engine has finished (or cancelled) what it runs.
private struct DrainService: Service {
    let frontEnd: HTTPFrontEnd

    func run() async throws {
        do {
            try await gracefulShutdown()
        } catch {
            return
        }
        await frontEnd.beginDrain()
    }
}
