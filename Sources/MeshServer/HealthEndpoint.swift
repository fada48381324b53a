import Foundation
import Hummingbird
import Logging
import NIOCore

/// A process's own health over HTTP, for a process that serves no API (a worker): `GET /health`
/// (200 when it can do its job, else 503, with details) and `GET /health/live` (200 while it is not
/// stuck, else 503), for orchestrators' readiness and liveness probes.
public final class HealthEndpoint: Sendable {
    public struct Report: Sendable {
        public var ready: Bool
        public var live: Bool
        public var details: [String: any Sendable]
        public init(ready: Bool, live: Bool, details: [String: any Sendable]) {
            self.ready = ready
            self.live = live
            self.details = details
        }
    }

    private let host: String
    private let port: Int
    private let report: @Sendable () -> Report
    private let logger: Logger

    public init(host: String, port: Int, logger: Logger, report: @escaping @Sendable () -> Report) {
        self.host = host
        self.port = port
        self.logger = logger
        self.report = report
    }

    /// Starts serving on its own task; returns the bound port once it listens.
    public func start() throws -> Int {
        let report = self.report
        let router = Router()
        router.get("/health") { _, _ in
            let now = report()
            var body: [String: Any] = now.details
            body["status"] = now.ready ? "ok" : "unavailable"
            return JSON.response(body, status: now.ready ? .ok : .serviceUnavailable)
        }
        router.get("/health/live") { _, _ in
            let live = report().live
            return JSON.response(["status": live ? "live" : "stuck"], status: live ? .ok : .serviceUnavailable)
        }
        var logger = logger
        if logger.logLevel > .debug { logger.logLevel = .warning }
        let startup = Startup()
        let application = Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: "expertmesh"),
            onServerRunning: { channel in startup.finish(.success(channel.localAddress?.port ?? 0)) }, logger: logger)
        Task.detached {
            do {
                try await application.runService(gracefulShutdownSignals: [])
            } catch {
                startup.finish(.failure(error))
            }
        }
        do {
            return try startup.wait()
        } catch {
            throw ServerStartError("cannot serve health on \(host):\(port): \(error); is the port in use?")
        }
    }
}
