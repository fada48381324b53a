import Foundation
import MeshEngine
import MeshModels
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
    public init(modelDirectory: URL, listen: String, httpHost: String, httpPort: Int, minimumWorkers: Int, wireDType: DType, startTimeout: Double) {
        self.modelDirectory = modelDirectory
        self.listen = listen
        self.httpHost = httpHost
        self.httpPort = httpPort
        self.minimumWorkers = minimumWorkers
        self.wireDType = wireDType
        self.startTimeout = startTimeout
    }
}

/// The coordinator process: the cluster (ZeroMQ), the engine thread and the HTTP API.
/// The engine thread owns the socket and the model; HTTP threads hand it jobs through a queue.
public final class CoordinatorService: @unchecked Sendable {
    public let options: CoordinatorOptions
    private let log: @Sendable (String) -> Void
    private let jobs = JobQueue()
    private let healthLock = NSLock()
    private var unservedReason: String? = "starting"
    private var workerSummary: [[String: Any]] = []
    private var modelName: String

    public init(options: CoordinatorOptions, log: @escaping @Sendable (String) -> Void) {
        self.options = options
        self.log = log
        modelName = options.modelDirectory.lastPathComponent
    }

    /// Runs until `shouldStop` returns true. Throws on start-up problems (bad model, port in use…).
    public func run(shouldStop: () -> Bool) throws {
        let model = try LoadedModel(directory: options.modelDirectory)
        // Check every expert tensor's name and shape (headers only, no weight bytes are read) so a
        // broken checkpoint fails now, not when a worker is assigned.
        _ = try model.loadAllExpertsChecked()
        let tokenizer = FileManager.default.fileExists(atPath: options.modelDirectory.appendingPathComponent("tokenizer.json").path)
            ? try Tokenizer(directory: options.modelDirectory) : nil
        let cluster = try Cluster(model: model, listen: options.listen, wireDType: options.wireDType, log: log)
        log("listening for workers on \(cluster.endpoint) (wire dtype \(options.wireDType.displayName), model fingerprint \(cluster.fingerprint))")
        let api = CompletionsAPI(modelName: modelName, tokenizer: tokenizer, vocabSize: model.spec.vocabSize,
                                 eosTokenIds: model.spec.eosTokenIds, maxPositions: model.spec.maxPositions, jobs: jobs, health: { [self] in health() })
        let server = try HTTPServer(host: options.httpHost, port: options.httpPort) { api.handle($0) }
        server.start()
        log("HTTP API on http://\(options.httpHost):\(server.port) (GET /health, POST /v1/completions)")
        try cluster.start(minimumWorkers: options.minimumWorkers, timeout: options.startTimeout, progress: log,
                          waiting: { [self] in setHealth($0, workers: cluster.workerSummary) })
        let generator = Generator(Transformer(spec: model.spec, weights: model.dense, backend: RemoteExpertBackend(cluster: cluster)))
        setHealth(cluster.unservedReason, workers: cluster.workerSummary)
        while !shouldStop() {
            if let job = jobs.take(timeout: 0.05) {
                if let reason = cluster.unservedReason {
                    job.finish(.failure(ClusterError("cluster not ready: \(reason)")))
                } else {
                    job.finish(Result { try generator.generate(job.request) })
                }
            }
            try cluster.pump(timeoutMilliseconds: 0)
            setHealth(cluster.unservedReason, workers: cluster.workerSummary)
        }
        jobs.failAll(ClusterError("coordinator is shutting down"))
        cluster.sayGoodbye("coordinator shutting down")
        log("stopped")
    }

    private func setHealth(_ reason: String?, workers: [[String: Any]]? = nil) {
        healthLock.lock()
        unservedReason = reason
        if let workers { workerSummary = workers }
        healthLock.unlock()
    }

    /// Why the cluster cannot serve (nil: it can), and the worker table.
    func health() -> (reason: String?, workers: [[String: Any]]) {
        healthLock.lock(); defer { healthLock.unlock() }
        return (unservedReason, workerSummary)
    }
}

/// One generation handed from an HTTP thread to the engine thread.
final class Job: @unchecked Sendable {
    let request: GenerationRequest
    private let done = DispatchSemaphore(value: 0)
    private(set) var result: Result<GenerationResult, Error> = .failure(ClusterError("not run"))

    init(_ request: GenerationRequest) { self.request = request }

    func finish(_ result: Result<GenerationResult, Error>) {
        self.result = result
        done.signal()
    }

    func wait() -> Result<GenerationResult, Error> {
        done.wait()
        return result
    }
}

final class JobQueue: @unchecked Sendable {
    private var pending: [Job] = []
    private let lock = NSLock()
    private let available = DispatchSemaphore(value: 0)

    func submit(_ job: Job) {
        lock.lock(); pending.append(job); lock.unlock()
        available.signal()
    }

    func take(timeout: Double) -> Job? {
        guard available.wait(timeout: .now() + timeout) == .success else { return nil }
        lock.lock(); defer { lock.unlock() }
        return pending.isEmpty ? nil : pending.removeFirst()
    }

    func failAll(_ error: Error) {
        lock.lock(); let all = pending; pending = []; lock.unlock()
        all.forEach { $0.finish(.failure(error)) }
    }
}
