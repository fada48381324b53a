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
/// `GET /v1/models`, `GET /health`. Handlers never block: they hand requests to the engine thread
/// and await their events.
public struct OpenAIAPI: Sendable {
    let model: ServedModel
    let service: GenerationService
    let limits: APILimits
    /// Clients must send `Authorization: Bearer <key>` on /v1 routes when set.
    let apiKeys: [String]
    /// Extra fields for `/health` (the coordinator's worker table).
    let healthDetails: @Sendable () -> [String: Any]

    public init(model: ServedModel, service: GenerationService, limits: APILimits = .default, apiKeys: [String] = [],
                healthDetails: @escaping @Sendable () -> [String: Any] = { [:] }) {
        self.model = model
        self.service = service
        self.limits = limits
        self.apiKeys = apiKeys
        self.healthDetails = healthDetails
    }

    public static var routeSummary: String {
        "GET /health, GET /health/live, GET /v1/models, POST /v1/completions, POST /v1/chat/completions"
    }

    func router() -> Router<APIRequestContext> {
        let router = Router(context: APIRequestContext.self)
        router.add(middleware: OpenAIErrorMiddleware())
        router.get("/health") { _, _ in health() }
        // Liveness: the server answers, whatever the workers do (a lost worker must not get the
        // coordinator restarted by an orchestrator; /health says whether requests can be served).
        router.get("/health/live") { _, _ in JSON.response(["status": "live"]) }
        let v1 = router.group("/v1")
        if !apiKeys.isEmpty { v1.add(middleware: APIKeyMiddleware(keys: apiKeys.map { Array($0.utf8) })) }
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

    private func health() -> Response {
        let (stats, reason) = service.status
        var body = healthDetails()
        body["model"] = model.name
        body["engine"] = [
            "running": stats.running, "waiting": stats.waiting, "steps": stats.steps,
            "kv_blocks_total": stats.blocksTotal, "kv_blocks_used": stats.blocksUsed,
            "kv_blocks_cached": stats.blocksCached, "kv_block_size": PagedKVCache.blockSize,
            "kv_cache_usage": Double(stats.blocksUsed) / Double(max(1, stats.blocksTotal)),
            "prefix_cache_queried_tokens": stats.prefixQueryTokens, "prefix_cache_hit_tokens": stats.prefixHitTokens,
            "prefix_cache_hit_rate": stats.prefixHitRate, "preemptions": stats.preemptions,
            "prompt_tokens": stats.promptTokens, "generated_tokens": stats.generatedTokens,
        ] as [String: Any]
        body["status"] = reason == nil ? "ok" : "unavailable"
        if let reason { body["reason"] = reason }
        return JSON.response(body, status: reason == nil ? .ok : .serviceUnavailable)
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
