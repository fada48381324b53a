import Foundation
import MeshEngine
import MeshModels
import MeshTokenizers

/// `expertmesh serve`: the whole model in this process (every expert local) behind the same
/// HTTP API and engine as the coordinator. For one big machine, and the baseline a cluster is
/// compared against.
public final class ServeService: Sendable {
    let modelDirectory: URL
    let httpHost: String
    let httpPort: Int
    let serving: ServingOptions
    let log: @Sendable (String) -> Void

    public init(modelDirectory: URL, httpHost: String, httpPort: Int, serving: ServingOptions,
                log: @escaping @Sendable (String) -> Void) {
        self.modelDirectory = modelDirectory
        self.httpHost = httpHost
        self.httpPort = httpPort
        self.serving = serving
        self.log = log
    }

    /// Loads the model, serves until `shouldStop` returns true. Throws on start-up problems.
    public func run(shouldStop: () -> Bool) throws {
        log("loading \(modelDirectory.path) …")
        let local = try LocalEngine(directory: modelDirectory)
        let (configuration, description) = serving.configuration(for: local.spec)
        let engine = try InferenceEngine(transformer: local.generator.transformer, configuration: configuration)
        log(description)
        let runner = EngineRunner(engine: engine, log: log)
        let api = CompletionsAPI(modelName: modelDirectory.lastPathComponent, tokenizer: try Tokenizer.inDirectory(modelDirectory),
                                 eosTokenIds: local.spec.eosTokenIds, service: runner)
        let server = try HTTPServer(host: httpHost, port: httpPort) { api.handle($0) }
        server.start()
        log("HTTP API on http://\(httpHost):\(server.port) (GET /health, POST /v1/completions)")
        try runner.run(shouldStop: shouldStop)
        log("stopped")
    }
}

extension Tokenizer {
    /// The directory's tokenizer.json, or nil if it has none.
    public static func inDirectory(_ directory: URL) throws -> Tokenizer? {
        FileManager.default.fileExists(atPath: directory.appendingPathComponent("tokenizer.json").path)
            ? try Tokenizer(directory: directory) : nil
    }
}
