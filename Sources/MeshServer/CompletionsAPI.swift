import Foundation
import MeshEngine
import MeshModels
import MeshTokenizers

/// The HTTP routes: `GET /health` and `POST /v1/completions` (OpenAI style, with streaming).
/// Handlers run on the HTTP server's connection threads and wait on the request's own event
/// queue; the engine thread never waits for them.
public struct CompletionsAPI: Sendable {
    let modelName: String
    let tokenizer: Tokenizer?
    let eosTokenIds: [Int]
    let service: GenerationService
    /// Extra fields for `/health` (the coordinator's worker table).
    let healthDetails: @Sendable () -> [String: Any]

    public init(modelName: String, tokenizer: Tokenizer?, eosTokenIds: [Int], service: GenerationService,
                healthDetails: @escaping @Sendable () -> [String: Any] = { [:] }) {
        self.modelName = modelName
        self.tokenizer = tokenizer
        self.eosTokenIds = eosTokenIds
        self.service = service
        self.healthDetails = healthDetails
    }

    public func handle(_ request: HTTPServer.Request) -> HTTPServer.Response {
        switch (request.method, request.path.split(separator: "?").first.map(String.init) ?? request.path) {
        case ("GET", "/health"):
            return health()
        case ("POST", "/v1/completions"):
            return completions(request)
        case (_, "/health"), (_, "/v1/completions"):
            return .error(405, "method \(request.method) not allowed on \(request.path)")
        default:
            return .error(404, "no route \(request.method) \(request.path); routes: GET /health, POST /v1/completions")
        }
    }

    private func health() -> HTTPServer.Response {
        let (stats, reason) = service.status
        var body = healthDetails()
        body["engine"] = [
            "running": stats.running, "waiting": stats.waiting, "steps": stats.steps,
            "kv_blocks_total": stats.blocksTotal, "kv_blocks_used": stats.blocksUsed, "kv_blocks_cached": stats.blocksCached,
            "kv_block_size": PagedKVCache.blockSize,
            "kv_cache_usage": Double(stats.blocksUsed) / Double(max(1, stats.blocksTotal)),
            "prefix_cache_queried_tokens": stats.prefixQueryTokens, "prefix_cache_hit_tokens": stats.prefixHitTokens,
            "prefix_cache_hit_rate": stats.prefixHitRate, "preemptions": stats.preemptions,
            "prompt_tokens": stats.promptTokens, "generated_tokens": stats.generatedTokens,
        ] as [String: Any]
        body["status"] = reason == nil ? "ok" : "unavailable"
        if let reason { body["reason"] = reason }
        return .json(reason == nil ? 200 : 503, body)
    }

    static func response(for error: EngineError) -> HTTPServer.Response {
        switch error.kind {
        case .badRequest: return .error(400, error.description)
        case .busy: return .error(429, error.description, type: "rate_limit_error", headers: [("Retry-After", "1")])
        case .unavailable: return .error(503, error.description, type: "unavailable")
        case .internalError: return .error(500, error.description, type: "internal_error")
        }
    }

    private func completions(_ http: HTTPServer.Request) -> HTTPServer.Response {
        let parsed: CompletionRequest
        let promptTokens: [Int]
        do {
            parsed = try CompletionRequest(json: http.body)
            switch parsed.prompt {
            case .tokens(let ids):
                promptTokens = ids
            case .text(let text):
                guard let tokenizer else {
                    throw EngineError(.badRequest, "this model has no tokenizer.json: send 'prompt' as a list of token ids")
                }
                promptTokens = tokenizer.encode(text)
            }
        } catch {
            return Self.response(for: error as? EngineError ?? EngineError(.badRequest, "\(error)"))
        }
        let request = GenerationRequest(prompt: promptTokens, maxTokens: parsed.maxTokens, sampling: parsed.sampling,
                                        stopTokens: parsed.ignoreEos ? [] : Set(eosTokenIds),
                                        logprobs: parsed.logprobs, promptLogprobs: parsed.promptLogprobs)
        let queue = EventQueue()
        do {
            try service.submit(request, isCancelled: { queue.isCancelled }, events: { queue.push($0) })
        } catch {
            return Self.response(for: error as? EngineError ?? EngineError(.internalError, "\(error)"))
        }
        let writer = CompletionWriter(modelName: modelName, tokenizer: tokenizer, promptTokens: promptTokens, parsed: parsed)
        if parsed.stream {
            return HTTPServer.Response(status: 200, contentType: "text/event-stream", body: .stream { write in
                writer.stream(from: queue, write: write, peerClosed: http.peerClosed)
            })
        }
        var result = GenerationResult()
        while true {
            guard let event = queue.pop(checkingEvery: 0.1, whether: http.peerClosed) else { continue }
            do {
                if try result.absorb(event) { break }
            } catch {
                return Self.response(for: error as? EngineError ?? EngineError(.internalError, "\(error)"))
            }
        }
        return .json(200, writer.body(result))
    }
}

/// One request's events, handed from the engine thread to its HTTP thread; also carries the
/// cancellation the HTTP thread raises when its client goes away.
final class EventQueue: @unchecked Sendable {
    private let lock = NSLock()
    private let available = DispatchSemaphore(value: 0)
    private var events: [SequenceEvent] = []
    private var cancelled = false

    func push(_ event: SequenceEvent) {
        lock.lock()
        events.append(event)
        lock.unlock()
        available.signal()
    }

    private var lastCheck = ContinuousClock.now

    /// The next event, or nil after `interval` seconds without one. At least every `interval`
    /// it asks `clientGone` (events may come faster than that) and cancels if the client left.
    func pop(checkingEvery interval: Double, whether clientGone: () -> Bool) -> SequenceEvent? {
        if (ContinuousClock.now - lastCheck).seconds >= interval {
            lastCheck = ContinuousClock.now
            if clientGone() { cancel() }
        }
        guard available.wait(timeout: .now() + interval) == .success else {
            if clientGone() { cancel() }
            return nil
        }
        lock.lock()
        defer { lock.unlock() }
        return events.removeFirst()
    }

    func cancel() {
        lock.lock()
        cancelled = true
        lock.unlock()
    }

    var isCancelled: Bool {
        lock.lock()
        defer { lock.unlock() }
        return cancelled
    }
}
