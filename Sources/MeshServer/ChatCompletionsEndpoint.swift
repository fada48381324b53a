import Foundation
import Hummingbird
import MeshChat
import MeshEngine

/// `POST /v1/chat/completions`: the conversation rendered with the model's own chat template
/// (as transformers' `apply_chat_template` renders it), then generated like a completion.
/// Extensions as vLLM has them: `chat_template_kwargs` (extra template variables, e.g.
/// `enable_thinking`), `add_generation_prompt`.
struct ChatCompletionsEndpoint: Sendable {
    let model: ServedModel
    let service: GenerationService

    func respond(body: Data, peer: PeerCloseWatcher) async throws -> Response {
        let fields = try RequestFields(json: body)
        try model.checkName(try fields.string("model"))
        let shared = try SamplingFields(fields, maxTokensKeys: ["max_completion_tokens", "max_tokens"])
        let wantsLogprobs = try fields.bool("logprobs") ?? false
        let topLogprobs = try SamplingFields.logprobCount(fields, "top_logprobs")
        if topLogprobs != nil, !wantsLogprobs {
            throw APIError.badRequest("'top_logprobs' needs 'logprobs': true", param: "top_logprobs")
        }
        try model.checkTextFeatures(stop: shared.stop)
        let promptText = try ChatPrompt.render(fields, model: model)
        let promptTokens = try model.encode(promptText, addSpecialTokens: false)
        let generation = try model.generationRequest(prompt: promptTokens, shared, defaultMaxTokens: nil,
                                                     logprobs: wantsLogprobs ? (topLogprobs ?? 0) : nil,
                                                     promptLogprobs: shared.promptLogprobs, service: service)
        let renderer = ChatRenderer(model: model, promptTokens: promptTokens, logprobs: wantsLogprobs,
                                    sendPromptLogprobs: shared.promptLogprobs != nil,
                                    returnTokenIds: shared.returnTokenIds)
        return try await ResponseDriver.respond(submitting: generation, fields: shared, model: model,
                                                service: service, peer: peer, renderer: renderer)
    }
}

/// OpenAI's `chat.completion` objects and `chat.completion.chunk` stream chunks.
struct ChatRenderer: ResponseRenderer {
    let model: ServedModel
    let promptTokens: [Int]
    let logprobs: Bool
    let sendPromptLogprobs: Bool
    let returnTokenIds: Bool
    let id = "chatcmpl-\(UUID().uuidString.lowercased())"
    let created = Int(Date().timeIntervalSince1970)
    private var roleSent = false
    private var lastToken: Int?

    init(model: ServedModel, promptTokens: [Int], logprobs: Bool, sendPromptLogprobs: Bool, returnTokenIds: Bool) {
        self.model = model
        self.promptTokens = promptTokens
        self.logprobs = logprobs
        self.sendPromptLogprobs = sendPromptLogprobs
        self.returnTokenIds = returnTokenIds
    }

    private func envelope(_ object: String, _ choices: [[String: Any]]) -> [String: Any] {
        ["id": id, "object": object, "created": created, "model": model.name, "choices": choices]
    }

    /// One position of chat logprobs: the token, its logprob, its UTF-8 bytes, and the top N alike;
    /// texts as they read after `previous`.
    private func logprobEntry(_ entry: TokenLogprobs, after previous: Int?) -> [String: Any] {
        func item(_ token: Int, _ logprob: Float) -> [String: Any] {
            let text = model.tokenText(token, after: previous)
            return ["token": text, "logprob": JSON.logprob(logprob), "bytes": Array(text.utf8).map(Int.init)]
        }
        var object = item(entry.token, entry.logprob)
        object["top_logprobs"] = entry.top.map { item($0.token, $0.logprob) }
        return object
    }

    /// Every generated position's entry, each read after the token before it.
    private func logprobEntries(_ response: CollectedResponse) -> [[String: Any]] {
        let befores = [promptTokens.last] + response.tokens.map { Optional($0) }
        return zip(response.logprobs, befores).map { logprobEntry($0, after: $1) }
    }

    mutating func chunks(for piece: ResponsePiece) -> [[String: Any]] {
        var result: [[String: Any]] = []
        if !roleSent {
            roleSent = true
            result.append(envelope("chat.completion.chunk", [["index": 0, "delta": ["role": "assistant", "content": ""],
                                                              "logprobs": NSNull(), "finish_reason": NSNull()]]))
        }
        var choice: [String: Any] = ["index": 0, "delta": [String: Any](), "logprobs": NSNull(),
                                     "finish_reason": NSNull()]
        switch piece {
        case .promptLogprobs(let entries):
            guard sendPromptLogprobs else { return result }
            var chunk = envelope("chat.completion.chunk", [])
            chunk["prompt_logprobs"] = model.promptLogprobsObject(entries, prompt: promptTokens)
            result.append(chunk)
            return result
        case .token(let token, let text, let entry):
            guard !text.isEmpty || (logprobs && entry != nil) || returnTokenIds else { return result }
            choice["delta"] = ["content": text]
            if let entry, logprobs {
                choice["logprobs"] = ["content": [logprobEntry(entry, after: lastToken ?? promptTokens.last)]]
            }
            lastToken = token
            if returnTokenIds { choice["token_ids"] = [token] }
        case .finished(let reason, let stop, let text):
            if !text.isEmpty { choice["delta"] = ["content": text] }
            choice["finish_reason"] = reason
            choice["stop_reason"] = stop?.json ?? NSNull()
        }
        result.append(envelope("chat.completion.chunk", [choice]))
        return result
    }

    func usageChunk(_ usage: [String: Any]) -> [String: Any] {
        var chunk = envelope("chat.completion.chunk", [])
        chunk["usage"] = usage
        return chunk
    }

    func body(_ response: CollectedResponse, usage: [String: Any]) -> [String: Any] {
        var choice: [String: Any] = [
            "index": 0, "message": ["role": "assistant", "content": response.text],
            "finish_reason": response.finishReason, "stop_reason": response.stopReason?.json ?? NSNull(),
            "logprobs": logprobs ? ["content": logprobEntries(response)] : NSNull(),
        ]
        if returnTokenIds { choice["token_ids"] = response.tokens }
        var object = envelope("chat.completion", [choice])
        if returnTokenIds { object["prompt_token_ids"] = promptTokens }
        if sendPromptLogprobs {
            object["prompt_logprobs"] = model.promptLogprobsObject(response.promptLogprobs, prompt: promptTokens)
        }
        object["usage"] = usage
        return object
    }
}
