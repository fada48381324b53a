import Foundation
import Logging
import MeshEngine
import MeshModels
import MeshServer
import MeshTensors
import MeshTokenizers
import MeshWire

public struct CoordinatorOptions: Sendable {
    public var modelDirectory: URL
    public var listen: String
    public var api: APIOptions
    public var minimumWorkers: Int
    /// Workers that hold each expert (1: no redundancy).
    public var replicas = 1
    /// Shared experts and dense FFN layers run on the workers, as slices placed like experts.
    public var offloadDense = false
    /// Each step runs as two micro-batches, one computing while the other's routed work is in flight.
    public var overlapExchanges = MicroBatchOverlap.off
    /// Seconds to poll for workers' replies without sleeping (`Cluster.busyPoll`).
    public var busyPoll: Double = 0
    /// Pipeline stages: this coordinator is stage 0 of `stages` (1: no pipeline); later stages
    /// connect to `stageListen`; `stepsInFlight` steps run at once (default: one per stage), each
    /// cut into `microBatches` (default 1).
    public var stages = 1
    public var stageListen = "tcp://127.0.0.1:5556"
    public var stepsInFlight: Int?
    public var microBatches: Int?
    /// Seconds a later stage may take to answer a micro-batch before it counts as lost.
    public var stageComputeTimeout: Double = 60
    /// CURVE on the workers' port (nil: plain TCP).
    public var security: Cluster.Security?
    /// Seconds before a lost worker's experts move to the survivors (nil: never).
    public var reassignAfter: Double? = 10
    /// Seconds a request waits for an expert no live worker holds.
    public var unservedTimeout: Double = 30
    /// Seconds of silence after which a worker is lost.
    public var workerTimeout: Double = 3
    /// Where the tokens routed to each expert are kept across runs (nil: not kept).
    public var expertLoadFile: URL?
    public var wireDType: DType
    public var replyDType: DType
    public var startTimeout: Double
    public var serving: ServingOptions
    /// The dense projections' format (the experts' is each worker's choice).
    public var denseFormat: WeightFormat
    public init(modelDirectory: URL, listen: String, api: APIOptions, minimumWorkers: Int, wireDType: DType,
                replyDType: DType = .f32, startTimeout: Double, serving: ServingOptions, denseFormat: WeightFormat = .file) {
        self.replyDType = replyDType
        self.denseFormat = denseFormat
        self.modelDirectory = modelDirectory
        self.listen = listen
        self.api = api
        self.minimumWorkers = minimumWorkers
        self.wireDType = wireDType
        self.startTimeout = startTimeout
        self.serving = serving
    }
}

/// The coordinator process: the cluster (ZeroMQ), the engine thread and the HTTP API.
/// The engine thread (the caller of `run`) owns the socket and the model; HTTP threads hand it
/// requests through the engine runner and wait on their own event queues.
public final class CoordinatorService: Sendable {
    public let options: CoordinatorOptions
    private let logger: Logger
    private let clusterView = ClusterView()

    public init(options: CoordinatorOptions, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    /// The slicing `--offload-dense` uses, said in the log; nil (and why) when there is nothing to offload.
    private func offloadedDense(_ spec: ModelSpec) -> DenseSlices? {
        guard let slices = DenseSlices(spec: spec), !slices.keys(spec).isEmpty else {
            logger.notice("""
                --offload-dense: \(spec.modelType) has no shared experts or dense FFN layers beside its experts \
                (or no experts at all): nothing to offload
                """)
            return nil
        }
        let layers = spec.layers.filter { slices.slices(of: $0) != nil }.count
        logger.info("""
            --offload-dense: shared experts and dense FFN layers of \(layers) layers run on the workers, \
            as \(slices.keys(spec).count) slices of up to \(slices.width) intermediate values
            """)
        return slices
    }

    /// Runs until SIGTERM/SIGINT. Throws on start-up problems (bad model, port in use, too few workers…).
    /// `listening` receives the bound ZeroMQ endpoint (port 0 resolved) before workers are awaited.
    public func run(listening: (String) throws -> Void = { _ in }) throws {
        let model = try LoadedModel(directory: options.modelDirectory, denseFormat: options.denseFormat,
                                    feedForwardOffloaded: options.offloadDense,
                                    stage: options.stages > 1 ? (0, options.stages) : nil)
        // Check every expert tensor's name and shape (headers only, no weight bytes are read) so a
        // broken checkpoint fails now, not when a worker is assigned.
        try model.checkAllExperts()
        let offloaded = options.offloadDense ? offloadedDense(model.spec) : nil
        let cluster = try Cluster(model: model, listen: options.listen, wireDType: options.wireDType,
                                  replyDType: options.replyDType, security: options.security,
                                  offloadedDense: offloaded, layers: model.heldLayers, logger: logger)
        cluster.reassignAfter = options.reassignAfter
        cluster.unservedTimeout = options.unservedTimeout
        cluster.workerTimeout = options.workerTimeout
        cluster.busyPoll = options.busyPoll
        if let file = options.expertLoadFile {
            if let earlier = try ExpertLoadFile.read(file, fingerprint: cluster.fingerprint) {
                cluster.earlierLoad = earlier
                logger.info("expert load from \(file.path): \(earlier.values.joined().reduce(0, +)) routed tokens; experts are placed by it")
            } else {
                logger.info("no expert load at \(file.path) yet: experts are placed by bytes, and the load measured is kept there")
            }
        }
        let listeningLine = "listening for workers on \(cluster.endpoint)"
            + (options.security.map { " with CURVE (\($0.authorizedKeys.count) authorized worker keys)" } ?? "")
            + " (activations sent in \(options.wireDType.displayName), "
            + "partial sums returned in \(options.replyDType.displayName), "
            + "model fingerprint \(cluster.fingerprint))"
        logger.info("\(listeningLine)")
        try listening(cluster.endpoint)
        let (configuration, description) = options.serving.configuration(for: model.spec)
        let relay = try stageRelay(model, kvCacheBlocks: configuration.kvCacheBlocks)
        relay?.whileWaiting = { try? cluster.pump(timeoutMilliseconds: 0) }
        defer { relay?.stop() }
        let backend = RemoteExpertBackend(cluster: cluster)
        backend.microBatchOverlap = options.overlapExchanges
        if let line = options.overlapExchanges.summary { logger.info("\(line)") }
        let transformer = Transformer(spec: model.spec, weights: model.dense, backend: backend,
                                      offloadedDense: offloaded, heldLayers: model.heldLayers, laterStages: relay)
        let engine = try InferenceEngine(transformer: transformer, configuration: configuration)
        let runner = EngineRunner(engine: engine, logger: logger)
        cluster.onChange = { [clusterView] cluster in
            clusterView.update(from: cluster)
            // Before experts are placed, `start`'s own wait says why (it counts the workers it needs).
            if !cluster.placement.workers.isEmpty { runner.refresh(unservedReason: cluster.unservedReason) }
        }
        logger.info("\(description)")
        let served = try ServedModel(directory: options.modelDirectory, spec: model.spec,
                                     name: options.api.servedModelName, chatTemplateFile: options.api.chatTemplateFile)
        let overlap = options.overlapExchanges
        let api = OpenAIAPI(model: served, service: runner, options: options.api, clusterDetails: { [clusterView] in
            var details = clusterView.value
            details["pipeline"] = relay?.statusObject
            details["overlap_exchanges"] = overlap.rawValue
            return details
        })
        let frontEnd = HTTPFrontEnd(api: api, host: options.api.host, port: options.api.port,
                                    drainTimeout: options.api.drainTimeout, logger: logger)
        let port = try frontEnd.start()
        let serving = "HTTP API on \(options.api.url(port: port)) (\(OpenAIAPI.routeSummary)); model '\(served.name)'"
            + (served.chatTemplate == nil ? ", no chat template" : "")
        logger.notice("\(serving)")
        // Whatever ends the run, workers hear that the coordinator is going.
        defer { cluster.sayGoodbye("coordinator shutting down") }
        let waiting: (String) throws -> Void = { [clusterView] reason in
            clusterView.update(from: cluster)
            runner.setUnservedReason(reason)
            if frontEnd.drainRequested { throw StoppedWhileStarting() }
        }
        do {
            if model.spec.moeLayerIndices.isEmpty {
                logger.notice("\(model.spec.modelType) is a dense model (no experts): serving it alone, no workers needed")
            } else if !cluster.hasExperts {
                logger.notice("stage 0 runs no MoE layer (layers \(model.heldLayers)): it needs no workers of its own")
            } else {
                try cluster.start(minimumWorkers: options.minimumWorkers, replicas: options.replicas,
                                  timeout: options.startTimeout, progress: { logger.info("\($0)") }, waiting: waiting)
            }
            try relay?.waitUntilReady(timeout: options.startTimeout, progress: { logger.notice("\($0)") }, waiting: waiting)
        } catch is StoppedWhileStarting {
            frontEnd.drained()
            logger.notice("stopped before the cluster was complete")
            return
        }
        var loadSavedAt = Date()
        try runner.run(until: frontEnd, unservedReason: { relay?.unavailableReason ?? cluster.unservedReason },
                       failureReason: { relay?.unavailableReason ?? cluster.failureReason() }, betweenSteps: { [clusterView] in
            try cluster.pump(timeoutMilliseconds: 0)
            clusterView.update(from: cluster)
            if Date().timeIntervalSince(loadSavedAt) >= Self.loadSaveInterval {
                loadSavedAt = Date()
                keepLoad(of: cluster)
            }
        })
        keepLoad(of: cluster)
        logger.notice("stopped")
    }
}

extension CoordinatorService {
    /// Stage 0's relay to the later stages (nil without a pipeline), said in the log.
    private func stageRelay(_ model: LoadedModel, kvCacheBlocks: Int) throws -> StageRelay? {
        guard options.stages > 1 else { return nil }
        let relay = try StageRelay(model: model, stages: options.stages, listen: options.stageListen,
                                   kvCacheBlocks: kvCacheBlocks, stepsInFlight: options.stepsInFlight,
                                   microBatches: options.microBatches,
                                   security: options.security, logger: logger)
        relay.computeTimeout = options.stageComputeTimeout
        let shares = relay.stageLayers.enumerated().map { "stage \($0): layers \($1.span)" }
        let line = "pipeline of \(options.stages) stages (\(shares.joined(separator: ", "))); stage 0 is this "
            + "coordinator; later stages join at \(relay.endpoint)"
            + (options.security == nil ? "" : " with CURVE")
        logger.info("\(line)")
        return relay
    }

    /// How often the measured expert load is written to `--expert-load` besides at the stop (a crash
    /// loses at most this much of it).
    static let loadSaveInterval: Double = 300

    /// Writes the load measured so far to `--expert-load`; a failure is logged, serving goes on.
    func keepLoad(of cluster: Cluster) {
        guard let file = options.expertLoadFile else { return }
        do {
            try ExpertLoadFile.write(cluster.loadToKeep, fingerprint: cluster.fingerprint, to: file)
        } catch {
            logger.error("could not write the expert load to \(file.path): \(error); check the directory exists and is writable")
        }
    }
}

private struct StoppedWhileStarting: Error {}

/// The cluster as last seen by the engine thread, for `/health` and `/v1/cluster` on HTTP threads.
/// Rebuilt at once when a worker's state changed, else at most every `interval` seconds (it walks
/// every worker and expert).
final class ClusterView: @unchecked Sendable {
    private let lock = NSLock()
    private var object: [String: Any] = [:]
    private var builtAt = 0.0
    private var builtAtChange = -1
    static let interval = 0.25

    var value: [String: Any] {
        lock.lock()
        defer { lock.unlock() }
        return object
    }

    /// On the engine thread.
    func update(from cluster: Cluster) {
        let now = Date().timeIntervalSince1970
        guard now - builtAt >= Self.interval || cluster.changes != builtAtChange else { return }
        builtAt = now
        builtAtChange = cluster.changes
        let built = cluster.statusObject(now: now)
        lock.lock()
        object = built
        lock.unlock()
    }
}
