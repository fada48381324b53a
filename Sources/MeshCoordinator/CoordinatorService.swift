import Foundation
import MeshEngine
import MeshModels
import MeshServer
import MeshTensors
import MeshTokenizers
import MeshWire

public struct CoordinatorOptions: Sendable {
    public var modelDirectory: URL
    public var listen: String
    public var httpHost: String
    public var httpPort: Int
    public var minimumWorkers: Int
    public var wireDType: DType
    public var startTimeout: Double
    public var serving: ServingOptions
    public init(modelDirectory: URL, listen: String, httpHost: String, httpPort: Int, minimumWorkers: Int, wireDType: DType,
                startTimeout: Double, serving: ServingOptions) {
        self.modelDirectory = modelDirectory
        self.listen = listen
        self.httpHost = httpHost
        self.httpPort = httpPort
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
    private let log: @Sendable (String) -> Void
    private let workerTable = WorkerTable()

    public init(options: CoordinatorOptions, log: @escaping @Sendable (String) -> Void) {
        self.options = options
        self.log = log
    }

    /// Runs until `shouldStop` returns true. Throws on start-up problems (bad model, port in use…).
    public func run(shouldStop: () -> Bool) throws {
        let model = try LoadedModel(directory: options.modelDirectory)
        // Check every expert tensor's name and shape (headers only, no weight bytes are read) so a
        // broken checkpoint fails now, not when a worker is assigned.
        _ = try model.loadAllExpertsChecked()
        let cluster = try Cluster(model: model, listen: options.listen, wireDType: options.wireDType, log: log)
        log("listening for workers on \(cluster.endpoint) (wire dtype \(options.wireDType.displayName), model fingerprint \(cluster.fingerprint))")
        let (configuration, description) = options.serving.configuration(for: model.spec)
        let transformer = Transformer(spec: model.spec, weights: model.dense, backend: RemoteExpertBackend(cluster: cluster))
        let runner = EngineRunner(engine: try InferenceEngine(transformer: transformer, configuration: configuration), log: log)
        log(description)
        let api = CompletionsAPI(modelName: options.modelDirectory.lastPathComponent,
                                 tokenizer: try Tokenizer.inDirectory(options.modelDirectory),
                                 eosTokenIds: model.spec.eosTokenIds, service: runner,
                                 healthDetails: { [workerTable] in ["workers": workerTable.value] })
        let server = try HTTPServer(host: options.httpHost, port: options.httpPort) { api.handle($0) }
        server.start()
        log("HTTP API on http://\(options.httpHost):\(server.port) (GET /health, POST /v1/completions)")
        try cluster.start(minimumWorkers: options.minimumWorkers, timeout: options.startTimeout, progress: log,
                          waiting: { [workerTable] reason in
                              workerTable.value = cluster.workerSummary
                              runner.setUnservedReason(reason)
                          })
        try runner.run(shouldStop: shouldStop, unservedReason: { cluster.unservedReason }, betweenSteps: { [workerTable] in
            try cluster.pump(timeoutMilliseconds: 0)
            workerTable.value = cluster.workerSummary
        })
        cluster.sayGoodbye("coordinator shutting down")
        log("stopped")
    }
}

/// The worker table as last seen by the engine thread, for `/health` on HTTP threads.
final class WorkerTable: @unchecked Sendable {
    private let lock = NSLock()
    private var table: [[String: Any]] = []

    var value: [[String: Any]] {
        get { lock.lock(); defer { lock.unlock() }; return table }
        set { lock.lock(); table = newValue; lock.unlock() }
    }
}
