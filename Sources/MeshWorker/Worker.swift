import Foundation
import Logging
import MeshModels
import MeshTensors
import MeshTransport
import MeshWire

public struct WorkerOptions: Sendable {
    /// Every coordinator this worker serves (stage-0 replicas sharing one worker pool): it holds the
    /// union of their assignments and answers each on its own connection.
    public var coordinators: [String]
    public var modelDirectory: URL
    public var name: String
    public var heartbeatInterval: Double
    /// How the experts are held (int8: quantised as they load).
    public var expertFormat: WeightFormat
    /// Expert bytes (as the checkpoint stores them) this worker may hold; 0: no limit.
    public var capacityBytes: UInt64 = 0
    /// Seconds to poll for the next request without sleeping after a reply (`--busy-poll`).
    public var busyPoll: Double = 0
    /// CURVE to the coordinator: this worker's key pair and the coordinator's public key.
    public var curve: (certificate: CurveCertificate, coordinatorKey: String)?
    public init(coordinators: [String], modelDirectory: URL, name: String, heartbeatInterval: Double = 1.0,
                expertFormat: WeightFormat = .file) {
        self.coordinators = coordinators
        self.expertFormat = expertFormat
        self.modelDirectory = modelDirectory
        self.name = name
        self.heartbeatInterval = heartbeatInterval
    }
}

/// An expert-shard worker: connects to each coordinator (DEALER, routing id = its name), says
/// hello, loads its assignment, then serves expert requests. Keeps no per-request state. If a
/// coordinator falls silent it reconnects to it with backoff and says hello again. With several
/// coordinators, each connection has its own thread and the experts held are the union of their
/// assignments.
public final class Worker: @unchecked Sendable {
    public let options: WorkerOptions
    private let logger: Logger
    private let model: LoadedModel
    private let fingerprint: String
    /// The experts held, and each connection's assignment (guarded by `holdingLock`; loading a new
    /// shard happens under it, while other connections keep serving from the shard they have).
    private var shard: ExpertShard?
    private var assigned: [Int: [ExpertKey]] = [:]
    private var connected: Set<Int> = []
    private let holdingLock = NSLock()
    /// Why a connection ended for good (protocol or model mismatch): it ends the others too.
    private var refusal: Error?
    private let refusalLock = NSLock()
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
    public func run(shouldStop: @escaping @Sendable () -> Bool) throws {
        guard options.coordinators.count > 1 else { return try run(connection: 0, shouldStop: shouldStop) }
        // One thread per coordinator; the first connection refused for good stops them all.
        let group = DispatchGroup()
        for connection in options.coordinators.indices {
            group.enter()
            Thread { [self] in
                do {
                    try run(connection: connection) { shouldStop() || refusalLock.withLock { refusal != nil } }
                } catch {
                    refusalLock.withLock { refusal = refusal ?? error }
                }
                group.leave()
            }.start()
        }
        group.wait()
        if let refusal = refusalLock.withLock({ refusal }) { throw refusal }
    }

    /// One coordinator's connection, reconnecting with backoff until `shouldStop`.
    private func run(connection: Int, shouldStop: () -> Bool) throws {
        let endpoint = options.coordinators[connection]
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
            try socket.connect(endpoint)
            let line = String(format: "connecting to %@ as '%@' (resident set %.1f MB before loading experts)",
                                      endpoint, options.name, Double(ProcessMemory.residentBytes) / 1e6)
            logger.info("\(line)")
            let outcome: Outcome
            do {
                try send(socket, .hello(Hello(modelFingerprint: fingerprint, workerName: options.name,
                                              capacityBytes: options.capacityBytes, threads: UInt32(Parallel.coreCount))))
                outcome = try session(socket, connection: connection, context: context, shouldStop: shouldStop,
                                      backoff: &backoff)
            } catch let error as TransportError where error.isTimeout {
                outcome = .lostCoordinator
            }
            setConnected(connection, false)
            if outcome == .stopped {
                try? send(socket, .goodbye(reason: "worker '\(options.name)' shutting down"))
                socket.close()
                return
            }
            socket.close()
            let delay = backoff.next()
            let hint = options.curve.map { " (or it does not authorize this worker's public key \($0.certificate.publicKey))" } ?? ""
            logger.warning("coordinator \(endpoint) unreachable or gone\(hint); reconnecting in \(String(format: "%.1f", delay)) s")
            Thread.sleep(forTimeInterval: delay)
        }
    }

    private enum Outcome { case stopped, lostCoordinator }

    /// Requests with at most this many tokens are computed on the socket thread.
    static let inlineTokenLimit: UInt32 = 16

    private func session(_ socket: ZMQSocket, connection: Int, context: ZMQContext, shouldStop: () -> Bool,
                         backoff: inout Backoff) throws -> Outcome {
        let interval = options.heartbeatInterval
        var replyDType = DType.f32
        var liveness = Liveness(interval: interval, maxLives: 3, now: now())
        let lane = try ComputeLane(context: context)
        defer { lane.stop() }
        // Until when to poll without sleeping: set after answering a decode-sized request on this
        // thread (the next is a round trip away), never while the compute lane has work.
        var busyUntil = 0.0
        while !shouldStop() {
            health.update { $0.lastLoopTurn = Date() }
            var ready = [false, false]
            while !ready.contains(true) && now() < busyUntil {
                ready = try ZMQPoller.readable([socket, lane.replies], timeoutMilliseconds: 0)
            }
            if !ready.contains(true) {
                ready = try ZMQPoller.readable([socket, lane.replies], timeoutMilliseconds: Int(interval * 500))
            }
            if ready[1], let reply = try lane.replies.receive(timeoutMilliseconds: 0) {
                try socket.send(reply)
                liveness.sent(at: now())
            }
            if ready[0], let parts = try socket.receive(timeoutMilliseconds: 0) {
                liveness.heard(at: now())
                setConnected(connection, true)
                backoff.reset()
                do {
                    let message = try WireCodec.decode(parts)
                    if try handle(message, socket, connection: connection, replyDType: &replyDType, lane: lane)
                        == .lostCoordinator { return .lostCoordinator }
                    if case .expertRequest(let header) = message.body, header.tokenCount <= Self.inlineTokenLimit {
                        busyUntil = now() + options.busyPoll   // answered here: the next one is a round trip away
                    }
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

    private func handle(_ message: WireMessage, _ socket: ZMQSocket, connection: Int, replyDType: inout DType,
                        lane: ComputeLane) throws -> Outcome? {
        switch message.body {
        case .assignment(let assignment):
            replyDType = assignment.replyDType
            try accept(assignment, from: connection, socket)
        case .expertRequest(let header):
            guard let shard = holdingLock.withLock({ self.shard }) else {
                try send(socket, .error(WireFailure(requestId: header.requestId, code: .notReady, message: "worker '\(options.name)' has no assignment yet")))
                return nil
            }
            if header.tokenCount <= Self.inlineTokenLimit {
                // Decode-sized work takes well under a heartbeat interval: serve it here and save
                // the two thread hand-offs of the compute lane (they dominate small exchanges).
                try sendMessage(socket, shard.serve(header, tensors: message.tensors, replyDType: replyDType))
                // The next request is a network round trip away: the kernels' helper threads
                // sleep rather than spin meanwhile (a coordinator on this host needs the cores).
                Parallel.rest()
            } else {
                lane.submit(ComputeLane.Job(shard: shard, header: header, tensors: message.tensors, replyDType: replyDType))
            }
        case .statusRequest:
            let shard = holdingLock.withLock { self.shard }
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
        case .heartbeat, .hello, .ready, .expertReply, .status, .stageHello, .stageAssignment, .stageReady, .stageForward,
             .stageReply:
            break
        }
        return nil
    }

    /// Loads what `connection`'s coordinator assigns (and keeps what the others assigned), then
    /// tells it which of its experts are ready.
    private func accept(_ assignment: Assignment, from connection: Int, _ socket: ZMQSocket) throws {
        guard assignment.protocolVersion == wireProtocolVersion else {
            let text = "protocol version mismatch: coordinator speaks \(assignment.protocolVersion), worker speaks \(wireProtocolVersion)"
            try send(socket, .error(WireFailure(code: .versionMismatch, message: text)))
            throw WorkerRefused(description: text)
        }
        // Set before any request of this assignment is computed, on the socket thread that serves them.
        MatmulKernels.decodeKernels = assignment.generatedTokensOnTiles ? .tiles : .dot
        holdingLock.lock()
        defer { holdingLock.unlock() }
        assigned[connection] = assignment.experts
        let wanted = Array(Set(assigned.values.joined())).sorted()
        if shard?.keys != wanted {
            let kept = wanted.filter { shard?.experts[$0] != nil }.count
            logger.info("loading \(wanted.count) experts (\(options.expertFormat.rawValue)\(kept > 0 ? "; \(kept) of them held already and kept" : "")) …")
            let start = Date()
            health.update { $0.loading = true }
            defer { health.update { $0.loading = false; $0.lastLoopTurn = Date() } }
            do {
                let loaded = try ExpertShard(model: model, keys: wanted, format: options.expertFormat, keeping: shard)
                shard = loaded
                health.update { $0.experts = loaded.keys.count; $0.expertBytes = loaded.expertBytes }
            } catch {
                try send(socket, .error(WireFailure(code: .loadFailed, message: "worker '\(options.name)' cannot load its experts: \(error)")))
                return
            }
            let line = String(format: "loaded %d experts (%.1f MB) in %.2f s; resident set %.1f MB", wanted.count,
                       Double(shard!.expertBytes) / 1e6, Date().timeIntervalSince(start), Double(ProcessMemory.residentBytes) / 1e6)
            logger.info("\(line)")
        }
        let mine = assignment.experts.sorted()
        let bytes = mine.reduce(0) { $0 + (shard?.experts[$1]?.byteCount ?? 0) }
        try send(socket, .ready(Ready(experts: mine, expertBytes: UInt64(bytes),
                                      residentBytes: ProcessMemory.residentBytes, loadSeconds: 0)))
    }

    private func setConnected(_ connection: Int, _ isConnected: Bool) {
        let all = holdingLock.withLock {
            if isConnected { connected.insert(connection) } else { connected.remove(connection) }
            return connected.count == options.coordinators.count
        }
        health.update { $0.connected = all }
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
