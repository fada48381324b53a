import Foundation
import Logging
import MeshModels
import MeshTensors
import MeshTransport
import MeshWire

public struct StageOptions: Sendable {
    public var modelDirectory: URL
    /// Stage 0's stage port (`coordinator --stage-listen`).
    public var join: String
    /// K and N of `--stage K/N`.
    public var stage: Int
    public var stageCount: Int
    public var name: String
    /// Where this stage's own workers connect.
    public var listen: String
    public var minimumWorkers = 1
    public var replicas = 1
    public var offloadDense = false
    /// Each micro-batch runs as two, one computing while the other's routed work is in flight.
    public var overlapExchanges = MicroBatchOverlap.off
    /// Seconds to poll for workers' replies without sleeping (`Cluster.busyPoll`).
    public var busyPoll: Double = 0
    public var wireDType: DType = .bf16
    public var replyDType: DType = .f32
    public var denseFormat: WeightFormat = .file
    public var startTimeout: Double = 600
    public var heartbeatInterval: Double = 1
    /// CURVE on this stage's workers' port.
    public var security: Cluster.Security?
    /// CURVE to stage 0: stage 0's public key (this stage's key pair is `security`'s).
    public var coordinatorKey: String?

    public init(modelDirectory: URL, join: String, stage: Int, stageCount: Int, name: String, listen: String) {
        self.modelDirectory = modelDirectory
        self.join = join
        self.stage = stage
        self.stageCount = stageCount
        self.name = name
        self.listen = listen
    }
}

/// A later pipeline stage (`expertmesh stage --stage K/N`): holds the attention weights and KV
/// cache of its share of the layers, places their experts on its own workers, connects to stage 0
/// (like a worker: DEALER, hello, assignment) and runs every micro-batch of hidden states it is sent
/// through its layers. Reconnects with backoff when stage 0 goes away.
public final class StageService {
    public let options: StageOptions
    private let logger: Logger
    private var cache: PagedKVCache?

    public init(options: StageOptions, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    /// Runs until `shouldStop`. Throws on start-up problems and on refusals a reconnect cannot cure.
    /// `listening` receives the bound workers' endpoint before workers are awaited.
    public func run(listening: (String) throws -> Void = { _ in }, shouldStop: @escaping () -> Bool) throws {
        let started = Date()
        let model = try LoadedModel(directory: options.modelDirectory, denseFormat: options.denseFormat,
                                    feedForwardOffloaded: options.offloadDense,
                                    stage: (options.stage, options.stageCount))
        let layers = model.heldLayers
        try model.checkAllExperts()
        let offloaded = options.offloadDense ? DenseSlices(spec: model.spec) : nil
        let cluster = try Cluster(model: model, listen: options.listen, wireDType: options.wireDType,
                                  replyDType: options.replyDType, security: options.security, offloadedDense: offloaded,
                                  layers: layers, logger: logger)
        cluster.busyPoll = options.busyPoll
        defer { cluster.sayGoodbye("pipeline stage \(options.stage) shutting down") }
        let line = "pipeline stage \(options.stage)/\(options.stageCount): layers \(layers.span); "
            + "listening for workers on \(cluster.endpoint)"
        logger.info("\(line)")
        try listening(cluster.endpoint)
        let backend = RemoteExpertBackend(cluster: cluster)
        backend.microBatchOverlap = options.overlapExchanges
        if let line = options.overlapExchanges.summary { logger.info("\(line)") }
        let transformer = Transformer(spec: model.spec, weights: model.dense, backend: backend,
                                      offloadedDense: offloaded, heldLayers: layers)
        let fingerprint = ModelFingerprint.of(model)
        if cluster.hasExperts {
            do {
                try cluster.start(minimumWorkers: options.minimumWorkers, replicas: options.replicas,
                                  timeout: options.startTimeout, progress: { logger.info("\($0)") },
                                  waiting: { _ in if shouldStop() { throw StageStopped() } })
            } catch is StageStopped {
                logger.notice("stopped before its workers were ready")
                return
            }
        }
        let startSeconds = Date().timeIntervalSince(started)
        let context = ZMQContext()
        var backoff = Backoff(initial: 0.1, maximum: 5)
        while !shouldStop() {
            let socket = try ZMQSocket(context: context, kind: .dealer)
            defer { socket.close() }
            try socket.setRoutingId(Array("stage-\(options.stage)-\(UUID().uuidString.prefix(8))".utf8))
            try socket.setMaxMessageSize(WireCodec.maxMessageBytes)
            try socket.setSendTimeout(milliseconds: Int32(options.heartbeatInterval * 1000))
            if let key = options.coordinatorKey, let security = options.security {
                try socket.makeCurveClient(security.certificate, serverKey: key)
            }
            try socket.connect(options.join)
            logger.info("joining stage 0 at \(options.join) as stage \(options.stage)/\(options.stageCount) '\(options.name)'")
            var session = Session(socket: socket, cluster: cluster, transformer: transformer,
                                  liveness: Liveness(interval: options.heartbeatInterval, maxLives: 3, now: now()))
            do {
                try send(socket, .stageHello(StageHello(modelFingerprint: fingerprint, stage: UInt32(options.stage),
                                                        stageCount: UInt32(options.stageCount), name: options.name)))
                try serve(&session, layers: layers, startSeconds: startSeconds, backoff: &backoff, shouldStop: shouldStop)
            } catch let error as TransportError where error.isTimeout {
                logger.warning("stage 0 at \(options.join) does not take messages")
            }
            guard !shouldStop() else {
                try? send(socket, .goodbye(reason: "pipeline stage \(options.stage) shutting down"))
                break
            }
            let delay = backoff.next()
            logger.warning("stage 0 at \(options.join) unreachable or gone; reconnecting in \(String(format: "%.1f", delay)) s")
            let until = Date().addingTimeInterval(delay)
            while Date() < until, !shouldStop() { try cluster.pump(timeoutMilliseconds: 100) }
        }
        logger.notice("stopped")
    }

    private struct Session {
        let socket: ZMQSocket
        let cluster: Cluster
        let transformer: Transformer<RemoteExpertBackend>
        var liveness: Liveness
        var kvCacheBlocks = 0
    }

    /// One connection to stage 0: until it is lost (returns) or refuses this stage for good (throws).
    private func serve(_ session: inout Session, layers: Range<Int>, startSeconds: Double, backoff: inout Backoff,
                       shouldStop: () -> Bool) throws {
        while !shouldStop() {
            if let parts = try session.socket.receive(timeoutMilliseconds: 20) {
                session.liveness.heard(at: now())
                backoff.reset()
                let message: WireMessage
                do {
                    message = try WireCodec.decode(parts)
                } catch {
                    logger.warning("refused a malformed message from stage 0: \(error)")
                    try send(session.socket, .error(WireFailure(code: .malformed, message: "\(error)")))
                    continue
                }
                switch message.body {
                case .stageAssignment(let assignment):
                    try accept(assignment, &session, layers: layers, startSeconds: startSeconds)
                case .stageForward(let header):
                    try run(header, message.tensors, &session)
                    // Silence is counted from when this stage listens again, not across its compute.
                    session.liveness.heard(at: now())
                case .error(let failure):
                    logger.error("stage 0 refused this stage: \(failure.message)")
                    if [.versionMismatch, .modelMismatch, .malformed, .nameInUse].contains(failure.code) {
                        throw StageRefused(description: failure.message)
                    }
                    if failure.code == .notReady { return }   // stage 0 restarted: say hello again
                case .goodbye(let reason):
                    logger.notice("stage 0 said goodbye: \(reason)")
                    return
                default:
                    break
                }
            }
            try session.cluster.pump(timeoutMilliseconds: 0)
            session.liveness.tick(at: now())
            if !session.liveness.isAlive { return }
            if session.liveness.shouldSendHeartbeat(at: now()) {
                try send(session.socket, .heartbeat(sentUnixMilliseconds: UInt64(Date().timeIntervalSince1970 * 1000)))
            }
        }
    }

    /// Stage 0's assignment: the layers must be the ones this stage holds; the KV cache gets the
    /// pool's block count (a new, empty cache: stage 0 forgets what an earlier session computed).
    private func accept(_ assignment: StageAssignment, _ session: inout Session, layers: Range<Int>,
                        startSeconds: Double) throws {
        guard assignment.protocolVersion == wireProtocolVersion, assignment.layers == layers else {
            let text = "stage 0 assigns layers \(assignment.layers) (protocol \(assignment.protocolVersion)); this stage "
                + "holds \(layers) (protocol \(wireProtocolVersion)): run the same expertmesh version on every stage"
            try? send(session.socket, .error(WireFailure(code: .versionMismatch, message: text)))
            throw StageRefused(description: text)
        }
        guard assignment.kvCacheBlocks >= 1 else { throw StageRefused(description: "stage 0 assigned an empty KV cache") }
        if cache?.blockCount != assignment.kvCacheBlocks {
            cache = try PagedKVCache(spec: session.transformer.spec, blockCount: assignment.kvCacheBlocks, layers: layers)
        }
        session.kvCacheBlocks = assignment.kvCacheBlocks
        let line = "stage 0 assigned layers \(layers.span) and a KV cache of "
            + "\(assignment.kvCacheBlocks) blocks; serving"
        logger.notice("\(line)")
        try send(session.socket, .stageReady(StageReady(workers: UInt32(session.cluster.placement.workers.count),
                                                        startSeconds: startSeconds)))
    }

    /// One micro-batch through this stage's layers; a request it cannot run is answered with an error.
    private func run(_ header: StageForwardHeader, _ tensors: [WireTensor], _ session: inout Session) throws {
        let started = Date()
        do {
            guard let cache, session.kvCacheBlocks > 0 else {
                throw WireError(.notReady, "stage \(options.stage) has no assignment yet")
            }
            let (batch, x) = try header.validated(tensors, spec: session.transformer.spec, kvCacheBlocks: session.kvCacheBlocks)
            try session.transformer.runLayers(x, batch: batch, cache: cache)
            try session.socket.send(WireCodec.encode(WireMessage(
                .stageReply(StageReplyHeader(requestId: header.requestId, computeSeconds: Date().timeIntervalSince(started))),
                tensors: [WireTensor(name: "hidden", matrix: x, dtype: .f32)])))
        } catch let error as WireError {
            logger.warning("refused stage request \(header.requestId): \(error)")
            try send(session.socket, .error(WireFailure(requestId: header.requestId, code: error.code, message: error.description)))
        } catch let error as TransportError {
            throw error
        } catch {
            logger.error("stage request \(header.requestId) failed: \(error)")
            try send(session.socket, .error(WireFailure(requestId: header.requestId, code: .internal,
                                                        message: "stage \(options.stage): \(error)")))
        }
        session.liveness.sent(at: now())
    }

    private func send(_ socket: ZMQSocket, _ body: WireBody) throws {
        try socket.send(WireCodec.encode(WireMessage(body)))
    }

    private func now() -> Double { Date().timeIntervalSince1970 }
}

private struct StageStopped: Error {}

/// Stage 0 and this stage cannot work together (protocol, model or stage count differ).
public struct StageRefused: Error, CustomStringConvertible {
    public let description: String
}
