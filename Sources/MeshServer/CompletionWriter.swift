import Foundation
import MeshEngine
import MeshTokenizers

/// Turns a completion's result or its event stream into OpenAI's JSON and server-sent events.
struct CompletionWriter: Sendable {
    let modelName: String
    let tokenizer: Tokenizer?
    let promptTokens: [Int]
    let parsed: CompletionRequest
    let id = "cmpl-\(UUID().uuidString.lowercased())"
    let created = Int(Date().timeIntervalSince1970)

    private func tokenText(_ id: Int) -> String { tokenizer?.decode([id]) ?? "\(id)" }

    private func usage(completionTokens: Int) -> [String: Any] {
        ["prompt_tokens": promptTokens.count, "completion_tokens": completionTokens,
         "total_tokens": promptTokens.count + completionTokens]
    }

    private func logprobs(_ tokens: [Int], _ entries: [TokenLogprobs], textOffset: Int = 0) -> [String: Any] {
        [
            "tokens": tokens.map(tokenText),
            "token_logprobs": entries.map { Double($0.logprob) },
            "top_logprobs": entries.map { entry in
                Dictionary(entry.top.map { (tokenText($0.token), Double($0.logprob)) }, uniquingKeysWith: { a, _ in a })
            },
            // Extension: the ids behind top_logprobs, since token texts can collide.
            "top_logprobs_ids": entries.map { $0.top.map { ["token_id": $0.token, "logprob": Double($0.logprob)] } },
        ]
    }

    /// vLLM's shape: null for the first prompt token, then {token_id: {logprob, rank, decoded_token}}.
    private func promptLogprobs(_ entries: [TokenLogprobs]) -> [Any] {
        [NSNull()] + entries.map { entry -> [String: Any] in
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

    /// The non-streaming response body.
    func body(_ result: GenerationResult) -> [String: Any] {
        var choice: [String: Any] = [
            "index": 0, "text": tokenizer?.decode(result.tokens) ?? "", "finish_reason": result.finishReason,
            "logprobs": parsed.logprobs != nil ? logprobs(result.tokens, result.logprobs) : NSNull(),
        ]
        if parsed.returnTokenIds {
            choice["token_ids"] = result.tokens
            choice["prompt_token_ids"] = promptTokens
        }
        if parsed.promptLogprobs != nil { choice["prompt_logprobs"] = promptLogprobs(result.promptLogprobs) }
        return ["id": id, "object": "text_completion", "created": created, "model": modelName, "choices": [choice],
                "usage": usage(completionTokens: result.tokens.count)]
    }

    private func chunk(_ choice: [String: Any], usage: [String: Any]? = nil) -> Data {
        var object: [String: Any] = ["id": id, "object": "text_completion", "created": created, "model": modelName,
                                     "choices": usage == nil ? [choice] : []]
        if let usage { object["usage"] = usage }
        let json = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Data("data: ".utf8) + json + Data("\n\n".utf8)
    }

    /// Server-sent events: a chunk per token (text delta, held back while a character is
    /// incomplete), a last chunk with the finish reason, usage if asked, then [DONE]. An error
    /// after the stream started is sent as an error event. A client that goes away cancels.
    func stream(from queue: EventQueue, write: (Data) -> Bool, peerClosed: () -> Bool) {
        var decoder = tokenizer.map { StreamingDecoder(tokenizer: $0) }
        var generated = 0
        while true {
            guard let event = queue.pop(checkingEvery: 0.1, whether: peerClosed) else { continue }
            var choice: [String: Any] = ["index": 0, "text": "", "logprobs": NSNull(), "finish_reason": NSNull()]
            switch event {
            case .promptLogprobs(let entries):
                choice["prompt_logprobs"] = promptLogprobs(entries)
                if parsed.returnTokenIds { choice["prompt_token_ids"] = promptTokens }
            case .logits:
                continue
            case .token(let token, let entry):
                generated += 1
                choice["text"] = decoder?.push(token) ?? ""
                if let entry { choice["logprobs"] = logprobs([token], [entry]) }
                if parsed.returnTokenIds { choice["token_ids"] = [token] }
            case .finished(let reason, _):
                choice["text"] = decoder?.finish() ?? ""
                choice["finish_reason"] = reason.rawValue
                var ok = write(chunk(choice))
                if parsed.includeUsage { ok = ok && write(chunk([:], usage: usage(completionTokens: generated))) }
                _ = ok && write(Data("data: [DONE]\n\n".utf8))
                return
            case .failed(let error):
                let body = ["error": ["message": error.description, "type": "server_error", "param": NSNull(), "code": NSNull()]]
                let json = (try? JSONSerialization.data(withJSONObject: body)) ?? Data("{}".utf8)
                _ = write(Data("data: ".utf8) + json + Data("\n\n".utf8))
                return
            }
            if !write(chunk(choice)) { queue.cancel() }
        }
    }
}
