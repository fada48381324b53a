import Foundation
import Hummingbird
import NIOCore
import MeshEngine
import MeshModels

/// Limits on what a client may send and how long it may dawdle.
public struct APILimits: Sendable {
    public var maxBodyBytes = 16 << 20
    /// An idle keep-alive connection, or a client that stops sending mid-request, is closed after this.
    public var idleTimeoutSeconds = 60.0
    public var maxHeaderBytes = 64 << 10
    public static let `default` = APILimits()
    public init() {}
}

/// The HTTP routes of the OpenAI-compatible API: `POST /v1/completions`, `POST /v1/chat/completions`,
/// `GET /v1/models`; and the process's own: `GET /health`, `GET /v1/cluster`, `GET /metrics`, and
/// the dashboard at `GET /`. Handlers never block: they hand requests to the engine thread and
/// await their events.
public struct OpenAIAPI: Sendable {
    let model: ServedModel
    let service: GenerationService
    let limits: APILimits
    /// Clients must send `Authorization: Bearer <key>` on /v1 routes when set.
    let apiKeys: [String]
    /// The cluster's part of `/v1/cluster` ("workers", "experts", …; `/health` shows its "workers").
    let clusterDetails: @Sendable () -> [String: Any]
    let metricsText: (@Sendable () -> String)?
    let openMetrics: Bool
    private let started = Date()

    public init(model: ServedModel, service: GenerationService, options: APIOptions,
                clusterDetails: @escaping @Sendable () -> [String: Any] = { [:] }) {
        self.model = model
        self.service = service
        limits = options.limits
        apiKeys = options.apiKeys
        metricsText = options.metricsText
        openMetrics = options.openMetrics
        self.clusterDetails = clusterDetails
    }

    public static var routeSummary: String {
        "GET / (dashboard), GET /health, GET /health/live, GET /metrics, GET /v1/cluster, GET /v1/models, "
            + "POST /v1/completions, POST /v1/chat/completions"
    }

    func router() -> Router<APIRequestContext> {
        let router = Router(context: APIRequestContext.self)
        router.add(middleware: OpenAIErrorMiddleware())
        router.get("/health") { _, _ in health() }
        // Liveness: the server answers, whatever the workers do (a lost worker must not get the
        // coordinator restarted by an orchestrator; /health says whether requests can be served).
        router.get("/health/live") { _, _ in JSON.response(["status": "live"]) }
        // The page holds no data: it reads /v1/cluster, with the key the viewer types in if keys are set.
        router.get("/") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-cache"],
                     body: .init(byteBuffer: ByteBuffer(string: DashboardPage.html)))
        }
        let keyCheck = APIKeyMiddleware<APIRequestContext>(keys: apiKeys.map { Array($0.utf8) })
        if let metricsText {
            let metrics = router.group("/metrics")
            if !apiKeys.isEmpty, !openMetrics { metrics.add(middleware: keyCheck) }
            metrics.get { _, _ in
                Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                         body: .init(byteBuffer: ByteBuffer(string: metricsText())))
            }
        }
        let v1 = router.group("/v1")
        if !apiKeys.isEmpty { v1.add(middleware: keyCheck) }
        v1.get("/cluster") { _, _ in cluster() }
        v1.get("/models") { _, _ in
            JSON.response(["object": "list", "data": [model.modelObject]])
        }
        v1.get("/models/{id}") { _, context in
            guard context.parameters.get("id") == model.name else {
                throw APIError.notFound("the model '\(context.parameters.get("id") ?? "")' does not exist; this server "
                                        + "serves '\(model.name)'", code: "model_not_found")
            }
            return JSON.response(model.modelObject)
        }
        v1.post("/completions") { request, context in
            var request = request
            let body = try await collect(&request)
            return try await CompletionsEndpoint(model: model, service: service)
                .respond(body: body, peer: try await context.peerWatcher())
        }
        v1.post("/chat/completions") { request, context in
            var request = request
            let body = try await collect(&request)
            return try await ChatCompletionsEndpoint(model: model, service: service)
                .respond(body: body, peer: try await context.peerWatcher())
        }
        return router
    }

    private func collect(_ request: inout Request) async throws -> Data {
        do {
            return Data(try await request.collectBody(upTo: limits.maxBodyBytes).readableBytesView)
        } catch is NIOTooManyBytesError {
            throw APIError(status: 413, "the request body is larger than this server's limit of "
                           + "\(limits.maxBodyBytes) bytes (--max-request-bytes)", type: "invalid_request_error",
                           code: "request_too_large")
        }
    }

    /// The engine's counters, in `/health` and `/v1/cluster`.
    private func engineObject() -> (object: [String: Any], unservedReason: String?) {
        let (stats, reason) = service.status
        let rates = service.tokensPerSecond
        let object: [String: Any] = [
            "running": stats.running, "waiting": stats.waiting, "steps": stats.steps,
            "kv_blocks_total": stats.blocksTotal, "kv_blocks_used": stats.blocksUsed,
            "kv_blocks_cached": stats.blocksCached, "kv_block_size": PagedKVCache.blockSize,
            "kv_cache_usage": Double(stats.blocksUsed) / Double(max(1, stats.blocksTotal)),
            "prefix_cache_queried_tokens": stats.prefixQueryTokens, "prefix_cache_hit_tokens": stats.prefixHitTokens,
            "prefix_cache_hit_rate": stats.prefixHitRate, "preemptions": stats.preemptions,
            "prompt_tokens": stats.promptTokens, "generated_tokens": stats.generatedTokens,
            "prompt_tokens_per_second": rates.prompt, "generated_tokens_per_second": rates.generated,
        ]
        return (object, reason)
    }

    private func health() -> Response {
        let (engine, reason) = engineObject()
        var body: [String: Any] = ["model": model.name, "engine": engine]
        if let workers = clusterDetails()["workers"] { body["workers"] = workers }
        body["status"] = reason == nil ? "ok" : "unavailable"
        if let reason { body["reason"] = reason }
        return JSON.response(body, status: reason == nil ? .ok : .serviceUnavailable)
    }

    /// `GET /v1/cluster`: the process, its engine and (on a coordinator) its workers and experts;
    /// the schema is in the README ("Watching the cluster"). Always 200: `status` says whether it serves.
    private func cluster() -> Response {
        let (engine, reason) = engineObject()
        var body = clusterDetails()
        body["object"] = "cluster"
        body["model"] = model.name
        body["uptime_seconds"] = Date().timeIntervalSince(started)
        body["engine"] = engine
        body["status"] = reason == nil ? "ok" : "unavailable"
        if let reason { body["reason"] = reason }
        if body["workers"] == nil { body["workers"] = [Any]() }
        return JSON.response(body)
    }
}

/// Every error leaves in OpenAI's shape, Hummingbird's own included (404 no route, 413 too large).
struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context,
                next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound && error.body == nil {
            throw APIError.notFound("no route \(request.method) \(request.uri.path); routes: "
                                    + OpenAIAPI.routeSummary, code: "unknown_url")
        } catch {
            throw APIError(wrapping: error)
        }
    }
}

/// `Authorization: Bearer <key>` on every /v1 route.
struct APIKeyMiddleware<Context: RequestContext>: RouterMiddleware {
    let keys: [[UInt8]]

    func handle(_ request: Request, context: Context,
                next: (Request, Context) async throws -> Response) async throws -> Response {
        let sent = request.headers[.authorization].flatMap { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : nil }
        // Every key is compared in full, so the time taken says nothing about which one matched.
        guard let sent, keys.map({ Self.constantTimeEqual(Array(sent.utf8), $0) }).contains(true) else {
            let message = sent == nil ? "missing API key: send 'Authorization: Bearer <key>'" : "incorrect API key"
            throw APIError(status: 401, message, type: "authentication_error", code: "invalid_api_key")
        }
        return try await next(request, context)
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(a.count == b.count ? 0 : 1)
        for index in 0..<min(a.count, b.count) { difference |= a[index] ^ b[index] }
        return difference == 0
    }
}
