import Foundation
import Logging
import MeshEngine
import MeshModels

/// How the API is offered: where, to whom, under what name and template.
public struct APIOptions: Sendable {
    public var host: String
    public var port: Int
    /// The model id clients use; default: the model directory's name.
    public var servedModelName: String?
    /// Overrides the model's own chat template.
    public var chatTemplateFile: URL?
    /// Keys any of which clients may send (none: no key needed).
    public var apiKeys: [String] = []
    public var limits = APILimits()
    /// Seconds running requests get to finish after SIGTERM.
    public var drainTimeout = 30.0
    /// Every metric in Prometheus's text format, for `GET /metrics` (nil: no such route).
    public var metricsText: (@Sendable () -> String)?
    /// `/metrics` without an API key even when keys are set (for a scraper that cannot send one).
    public var openMetrics = false

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// The URL as clients write it (IPv6 hosts in brackets).
    public func url(port: Int) -> String {
        host.contains(":") ? "http://[\(host)]:\(port)" : "http://\(host):\(port)"
    }
}

/// `expertmesh serve`: the whole model in this process (every expert local) behind the same
/// HTTP API and engine as the coordinator. For one big machine, and the baseline a cluster is
/// compared against.
public final class ServeService: Sendable {
    let modelDirectory: URL
    let weights: WeightFormats
    let api: APIOptions
    let serving: ServingOptions
    let logger: Logger

    public init(modelDirectory: URL, weights: WeightFormats = WeightFormats(), api: APIOptions, serving: ServingOptions,
                logger: Logger) {
        self.modelDirectory = modelDirectory
        self.weights = weights
        self.api = api
        self.serving = serving
        self.logger = logger
    }

    /// Loads the model and serves until SIGTERM/SIGINT. Throws on start-up problems.
    public func run() throws {
        logger.info("loading \(modelDirectory.path) (\(weights)) …")
        let local = try LocalEngine(directory: modelDirectory, formats: weights)
        let (configuration, description) = serving.configuration(for: local.spec)
        let engine = try InferenceEngine(transformer: local.generator.transformer, configuration: configuration)
        logger.info("\(description)")
        let runner = EngineRunner(engine: engine, logger: logger)
        let model = try ServedModel(directory: modelDirectory, spec: local.spec, name: api.servedModelName,
                                    chatTemplateFile: api.chatTemplateFile)
        let routes = OpenAIAPI(model: model, service: runner, options: api)
        let frontEnd = HTTPFrontEnd(api: routes, host: api.host, port: api.port, drainTimeout: api.drainTimeout, logger: logger)
        let port = try frontEnd.start()
        let message = "HTTP API on \(api.url(port: port)) (\(OpenAIAPI.routeSummary)); model '\(model.name)'"
            + (model.chatTemplate == nil ? ", no chat template" : "")
        logger.notice("\(message)")
        try runner.run(until: frontEnd)
        logger.notice("stopped")
    }
}
