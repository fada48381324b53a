import Foundation
import Logging
import MeshModels
import MeshTensors
import MeshTransport
import MeshWire

public struct WorkerOptions: Sendable {
    public var coordinator: String
    public var modelDirectory: URL
    public var name: String
    public var heartbeatInterval: Double
    /// How the experts are held (int8: quantised as they load).
    public var expertFormat: WeightFormat
    /// Expert bytes (as the checkpoint stores them) this worker may hold; 0: no limit.
    public var capacityBytes: UInt64 = 0
    /// CURVE to the coordinator: this worker's key pair and the coordinator's public key.
    public var curve: (certificate: CurveCertificate, coordinatorKey: String)?
    public init(coordinator: String, modelDirectory: URL, name: String, heartbeatInterval: Double = 1.0,
                expertFormat: WeightFormat = .file) {
        self.coordinator = coordinator
        self.expertFormat = expertFormat
        self.modelDirectory = modelDirectory
        self.name = name
        self.heartbeatInterval = heartbeatInterval
    }
}

/// An expert-shard worker: connects to the coordinator (DEALER, routing id = its name), says
/// hello, loads its assignment, then serves expert requests. Keeps no per-request state. If the
/// coordinator falls silent it reconnects with backoff and says hello again.
public final class Worker {
    public let options: WorkerOptions
    private let logger: Logger
    private let model: LoadedModel
    private let fingerprint: String
    private var shard: ExpertShard?
    private var replyDType: DType = .f32
    /// Read by the health endpoint (`worker --health`).
    public let health = WorkerHealth()
    /// This process's ZeroMQ identity: its name and a random suffix, so a second process under
    /// the same name is told so by the coordinator instead of being dropped by ZeroMQ.
    private lazy var routingId = Array(options.name.utf8.prefix(200)) + Array("#\(UUID().uuidString.prefix(8))".utf8)

    public init(options: WorkerOptions, logger: Logger) throws {
        self.options = options
        self.logger = logger
        try options.expertFormat.checkSupported()
        model = try LoadedModel(directory: options.modelDirectory)
        guard !model.spec.moeLayerIndices.isEmpty else {
            throw ModelError("\(options.modelDirectory.lastPathComponent) is a dense \(model.spec.modelType) model: it has no "
                             + "experts for a worker to hold; serve it with `expertmesh serve` or a coordinator alone")
        }
        fingerprint = ModelFingerprint.of(model)
    }

    /// Serves until `shouldStop` returns true (checked at least every heartbeat interval).
    /// Throws only for problems a reconnect cannot fix (protocol or model mismatch).
    public func run(shouldStop: () -> Bool) throws {
        let context = ZMQContext()
        var backoff = Backoff(initial: 0.1, maximum: 5)
        while !shouldStop() {
            let socket = try ZMQSocket(context: context, kind: .dealer)
            try socket.setRoutingId(routingId)
            try socket.setMaxMessageSize(WireCodec.maxMessageBytes)
            // A DEALER with no connection blocks on send (a refused CURVE handshake leaves none):
            // a send that cannot go within a heartbeat interval ends the session instead.
            try socket.setSendTimeout(milliseconds: Int32(options.heartbeatInterval * 1000))
            if let curve = options.curve { try socket.makeCurveClient(curve.certificate, serverKey: curve.coordinatorKey) }
            try socket.connect(options.coordinator)
            let line = String(format: "connecting to %@ as '%@' (resident set %.1f MB before loading experts)",
                                      options.coordinator, options.name, Double(ProcessMemory.residentBytes) / 1e6)
            logger.info("\(line)")
            let outcome: Outcome
            do {
                try send(socket, .hello(Hello(modelFingerprint: fingerprint, workerName: options.name,
                                              capacityBytes: options.capacityBytes, threads: UInt32(Parallel.coreCount))))
                outcome = try session(socket, context: context, shouldStop: shouldStop, backoff: &backoff)
            } catch let error as TransportError where error.isTimeout {
                outcome = .lostCoordinator
            }
            health.update { $0.connected = false }
            if outcome == .stopped {
                try? send(socket, .goodbye(reason: "worker '\(options.name)' shutting down"))
                socket.close()
                return
            }
            socket.close()
            let delay = backoff.next()
            let hint = options.curve.map { " (or it does not authorize this worker's public key \($0.certificate.publicKey))" } ?? ""
            logger.warning("coordinator unreachable or gone\(hint); reconnecting in \(String(format: "%.1f", delay)) s")
            Thread.sleep(forTimeInterval: delay)
        }
    }

    private enum Outcome { case stopped, lostCoordinator }

    /// Requests with at most this many tokens are computed on the socket thread.
    static let inlineTokenLimit: UInt32 = 16

    private func session(_ socket: ZMQSocket, context: ZMQContext, shouldStop: () -> Bool, backoff: inout Backoff) throws -> Outcome {
        let interval = options.heartbeatInterval
        var liveness = Liveness(interval: interval, maxLives: 3, now: now())
        let lane = try ComputeLane(context: context)
        defer { lane.stop() }
        while !shouldStop() {
            health.update { $0.lastLoopTurn = Date() }
            let ready = try ZMQPoller.readable([socket, lane.replies], timeoutMilliseconds: Int(interval * 500))
            if ready[1], let reply = try lane.replies.receive(timeoutMilliseconds: 0) {
                try socket.send(reply)
                liveness.sent(at: now())
            }
            if ready[0], let parts = try socket.receive(timeoutMilliseconds: 0) {
                liveness.heard(at: now())
                health.update { $0.connected = true }
                backoff.reset()
                do {
                    let message = try WireCodec.decode(parts)
                    if try handle(message, socket, lane: lane) == .lostCoordinator { return .lostCoordinator }
                } catch let error as WireError {
                    logger.warning("refused a malformed message: \(error)")
                    try send(socket, .error(WireFailure(code: error.code, message: error.description)))
                }
            }
            liveness.tick(at: now())
            if !liveness.isAlive { return .lostCoordinator }
            if liveness.shouldSendHeartbeat(at: now()) {
                try send(socket, .heartbeat(sentUnixMilliseconds: UInt64(Date().timeIntervalSince1970 * 1000)))
            }
        }
        return .stopped
    }

    private func handle(_ message: WireMessage, _ socket: ZMQSocket, lane: ComputeLane) throws -> Outcome? {
        switch message.body {
        case .assignment(let assignment):
            try accept(assignment, socket)
        case .expertRequest(let header):
            guard let shard else {
                try send(socket, .error(WireFailure(requestId: header.requestId, code: .notReady, message: "worker '\(options.name)' has no assignment yet")))
                return nil
            }
            if header.tokenCount <= Self.inlineTokenLimit {
                // Decode-sized work takes well under a heartbeat interval: serve it here and save
                // the two thread hand-offs of the compute lane (they dominate small exchanges).
                try sendMessage(socket, shard.serve(header, tensors: message.tensors, replyDType: replyDType))
            } else {
                lane.submit(ComputeLane.Job(shard: shard, header: header, tensors: message.tensors, replyDType: replyDType))
            }
        case .statusRequest:
            let counters = shard?.counters ?? ExpertShard.Counters()
            try send(socket, .status(WorkerStatus(
                workerName: options.name, experts: shard?.keys ?? [], requestsServed: counters.requestsServed,
                tokensServed: counters.tokensServed, residentBytes: ProcessMemory.residentBytes, busySeconds: counters.busySeconds)))
        case .error(let failure):
            logger.error("coordinator refused us: \(failure.message)")
            if [.versionMismatch, .modelMismatch, .nameInUse].contains(failure.code) { throw WorkerRefused(description: failure.message) }
            // A coordinator that does not know this session (it restarted): say hello again now.
            if failure.code == .notReady, failure.requestId == 0 { return .lostCoordinator }
        case .goodbye(let reason):
            logger.notice("coordinator said goodbye: \(reason)")
            return .lostCoordinator
        case .heartbeat, .hello, .ready, .expertReply, .status:
            break
        }
        return nil
    }

    private func accept(_ assignment: Assignment, _ socket: ZMQSocket) throws {
        guard assignment.protocolVersion == wireProtocolVersion else {
            let text = "protocol version mismatch: coordinator speaks \(assignment.protocolVersion), worker speaks \(wireProtocolVersion)"
            try send(socket, .error(WireFailure(code: .versionMismatch, message: text)))
            throw WorkerRefused(description: text)
        }
        replyDType = assignment.replyDType
        // Set before any request of this assignment is computed, on the socket thread that serves them.
        MatmulKernels.decodeKernels = assignment.generatedTokensOnTiles ? .tiles : .dot
        if shard?.keys != assignment.experts.sorted() {
            let kept = assignment.experts.filter { shard?.experts[$0] != nil }.count
            logger.info("loading \(assignment.experts.count) experts (\(options.expertFormat.rawValue)\(kept > 0 ? "; \(kept) of them held already and kept" : "")) …")
            let start = Date()
            health.update { $0.loading = true }
            defer { health.update { $0.loading = false; $0.lastLoopTurn = Date() } }
            do {
                let loaded = try ExpertShard(model: model, keys: assignment.experts, format: options.expertFormat, keeping: shard)
                shard = loaded
                health.update { $0.experts = loaded.keys.count; $0.expertBytes = loaded.expertBytes }
            } catch {
                try send(socket, .error(WireFailure(code: .loadFailed, message: "worker '\(options.name)' cannot load its experts: \(error)")))
                return
            }
            let line = String(format: "loaded %d experts (%.1f MB) in %.2f s; resident set %.1f MB", assignment.experts.count,
                       Double(shard!.expertBytes) / 1e6, Date().timeIntervalSince(start), Double(ProcessMemory.residentBytes) / 1e6)
            logger.info("\(line)")
        }
        try send(socket, .ready(Ready(experts: shard!.keys, expertBytes: shard!.expertBytes,
                                      residentBytes: ProcessMemory.residentBytes, loadSeconds: 0)))
    }

    private func send(_ socket: ZMQSocket, _ body: WireBody) throws {
        try sendMessage(socket, WireMessage(body))
    }

    private func sendMessage(_ socket: ZMQSocket, _ message: WireMessage) throws {
        try socket.send(WireCodec.encode(message))
    }

    private func now() -> Double { Date().timeIntervalSince1970 }
}

/// The coordinator and this worker cannot work together (protocol version or model differ):
/// reconnecting would not help, so the worker stops with this message.
public struct WorkerRefused: Error, CustomStringConvertible {
    public let description: String
}
