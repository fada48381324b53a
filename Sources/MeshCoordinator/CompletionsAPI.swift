import Foundation
import MeshEngine
import MeshModels
import MeshTokenizers

/// The HTTP routes: `GET /health` and `POST /v1/completions` (OpenAI style, non-streaming).
struct CompletionsAPI: @unchecked Sendable {
    let modelName: String
    let tokenizer: Tokenizer?
    let vocabSize: Int
    let eosTokenIds: [Int]
    let maxPositions: Int?
    let jobs: JobQueue
    let health: @Sendable () -> (reason: String?, workers: [[String: Any]])

    func handle(_ request: HTTPServer.Request) -> HTTPServer.Response {
        switch (request.method, request.path.split(separator: "?").first.map(String.init) ?? request.path) {
        case ("GET", "/health"):
            let (reason, workers) = health()
            if let reason { return .json(503, ["status": "unavailable", "reason": reason, "workers": workers]) }
            return .json(200, ["status": "ok", "workers": workers])
        case ("POST", "/v1/completions"):
            return completions(request.body)
        case (_, "/health"), (_, "/v1/completions"):
            return .error(405, "method \(request.method) not allowed on \(request.path)")
        default:
            return .error(404, "no route \(request.method) \(request.path); routes: GET /health, POST /v1/completions")
        }
    }

    private func completions(_ body: Data) -> HTTPServer.Response {
        let parsed: CompletionRequest
        do { parsed = try CompletionRequest(json: body) } catch { return .error(400, "\(error)") }
        let promptTokens: [Int]
        switch parsed.prompt {
        case .tokens(let ids):
            if let bad = ids.first(where: { $0 >= vocabSize }) { return .error(400, "prompt token \(bad) is outside the vocabulary (0..<\(vocabSize))") }
            promptTokens = ids
        case .text(let text):
            guard let tokenizer else { return .error(400, "this model has no tokenizer.json: send 'prompt' as a list of token ids") }
            promptTokens = tokenizer.encode(text)
            guard !promptTokens.isEmpty else { return .error(400, "'prompt' is empty") }
        }
        if let limit = maxPositions, promptTokens.count + parsed.maxTokens > limit {
            return .error(400, "prompt (\(promptTokens.count) tokens) + max_tokens (\(parsed.maxTokens)) exceeds the model's context length of \(limit) tokens")
        }
        if let reason = health().reason { return .error(503, "cluster not ready: \(reason)", type: "unavailable") }
        let job = Job(GenerationRequest(prompt: promptTokens, maxTokens: parsed.maxTokens, sampling: parsed.sampling,
                                        stopTokens: parsed.ignoreEos ? [] : Set(eosTokenIds),
                                        logprobs: parsed.logprobs, promptLogprobs: parsed.promptLogprobs))
        jobs.submit(job)
        switch job.wait() {
        case .failure(let error):
            return .error(503, "\(error)", type: "cluster_error")
        case .success(let result):
            return .json(200, responseBody(result, promptTokens: promptTokens, parsed: parsed))
        }
    }

    private func tokenText(_ id: Int) -> String { tokenizer?.decode([id]) ?? "\(id)" }

    private func responseBody(_ result: GenerationResult, promptTokens: [Int], parsed: CompletionRequest) -> [String: Any] {
        var choice: [String: Any] = [
            "index": 0, "text": tokenizer?.decode(result.tokens) ?? "", "finish_reason": result.finishReason,
            "logprobs": NSNull(),
        ]
        if parsed.logprobs != nil {
            choice["logprobs"] = [
                "tokens": result.tokens.map(tokenText),
                "token_logprobs": result.logprobs.map { Double($0.logprob) },
                "top_logprobs": result.logprobs.map { entry in
                    Dictionary(entry.top.map { (tokenText($0.token), Double($0.logprob)) }, uniquingKeysWith: { a, _ in a })
                },
                // Extension: the ids behind top_logprobs, since token texts can collide.
                "top_logprobs_ids": result.logprobs.map { $0.top.map { ["token_id": $0.token, "logprob": Double($0.logprob)] } },
            ]
        }
        if parsed.returnTokenIds {
            choice["token_ids"] = result.tokens
            choice["prompt_token_ids"] = promptTokens
        }
        if parsed.promptLogprobs != nil {
            // vLLM's shape: null for the first prompt token, then {token_id: {logprob, rank, decoded_token}}.
            choice["prompt_logprobs"] = [NSNull()] + result.promptLogprobs.map { entry -> [String: Any] in
                var map: [String: Any] = [:]
                for (rank, top) in entry.top.enumerated() {
                    map[String(top.token)] = ["logprob": Double(top.logprob), "rank": rank + 1, "decoded_token": tokenText(top.token)]
                }
                if map[String(entry.token)] == nil {
                    map[String(entry.token)] = ["logprob": Double(entry.logprob), "rank": entry.rank, "decoded_token": tokenText(entry.token)]
                }
                return map
            }
        }
        return [
            "id": "cmpl-\(UUID().uuidString.lowercased())", "object": "text_completion",
            "created": Int(Date().timeIntervalSince1970), "model": modelName, "choices": [choice],
            "usage": ["prompt_tokens": promptTokens.count, "completion_tokens": result.tokens.count,
                      "total_tokens": promptTokens.count + result.tokens.count],
        ]
    }
}
