import Foundation
import Hummingbird
import MeshEngine
import MeshTokenizers

/// `POST /v1/completions`: OpenAI's legacy completions, with `echo`, `logprobs` (top-N per token,
/// up to 20), streaming, and vLLM's extensions (`prompt_logprobs`, `return_token_ids`, …).
struct CompletionsEndpoint: Sendable {
    let model: ServedModel
    let service: GenerationService

    func respond(body: Data, peer: PeerCloseWatcher) async throws -> Response {
        let fields = try RequestFields(json: body)
        try model.checkName(try fields.string("model"))
        let shared = try SamplingFields(fields, maxTokensKeys: ["max_tokens"])
        let logprobs = try SamplingFields.logprobCount(fields, "logprobs")
        let echo = try fields.bool("echo") ?? false
        let promptTokens: [Int]
        let promptText: String
        if case .string(let text)? = fields.value("prompt") {
            promptTokens = try model.encode(text, addSpecialTokens: try fields.bool("add_special_tokens") ?? true)
            promptText = text
        } else if let ids = try? fields.tokenIds("prompt"), !ids.isEmpty {
            promptTokens = ids
            promptText = model.tokenizer?.decode(ids, skipSpecialTokens: shared.skipSpecialTokens) ?? ""
        } else if fields.value("prompt") == nil {
            throw APIError.badRequest("'prompt' is required: a string or a list of token ids", param: "prompt")
        } else {
            throw APIError.badRequest("'prompt' must be a string or a non-empty list of token ids "
                                      + "(one prompt per request)", param: "prompt")
        }
        try model.checkTextFeatures(stop: shared.stop)
        // Echoed logprobs need the prompt's, at the same depth.
        var promptLogprobs = shared.promptLogprobs
        if echo, let logprobs { promptLogprobs = max(promptLogprobs ?? 0, logprobs) }
        let generation = try model.generationRequest(prompt: promptTokens, shared, defaultMaxTokens: 16,
                                                     logprobs: logprobs, promptLogprobs: promptLogprobs,
                                                     service: service)
        let renderer = CompletionRenderer(
            model: model, promptTokens: promptTokens, echoText: echo ? promptText : nil, logprobs: logprobs,
            sendPromptLogprobs: shared.promptLogprobs != nil, returnTokenIds: shared.returnTokenIds)
        return try await ResponseDriver.respond(submitting: generation, fields: shared, model: model,
                                                service: service, peer: peer, renderer: renderer)
    }
}

/// OpenAI's `text_completion` objects (and their stream chunks).
struct CompletionRenderer: ResponseRenderer {
    let model: ServedModel
    let promptTokens: [Int]
    let echoText: String?
    let logprobs: Int?
    let sendPromptLogprobs: Bool
    let returnTokenIds: Bool
    let id = "cmpl-\(UUID().uuidString.lowercased())"
    let created = Int(Date().timeIntervalSince1970)
    /// Text streamed so far (for `text_offset`; the echoed prompt included) and the last token.
    private var streamedText = ""
    private var lastToken: Int?
    private var echoSent = false

    init(model: ServedModel, promptTokens: [Int], echoText: String?, logprobs: Int?, sendPromptLogprobs: Bool,
         returnTokenIds: Bool) {
        self.model = model
        self.promptTokens = promptTokens
        self.echoText = echoText
        self.logprobs = logprobs
        self.sendPromptLogprobs = sendPromptLogprobs
        self.returnTokenIds = returnTokenIds
    }

    private func envelope(_ choices: [[String: Any]]) -> [String: Any] {
        ["id": id, "object": "text_completion", "created": created, "model": model.name, "choices": choices]
    }

    /// OpenAI's completion logprobs: parallel lists, `null` for the first prompt token (when echoed).
    /// `previous` is the token before the first one; offsets count code points, as Python does.
    private func logprobsObject(tokens: [Int], entries: [TokenLogprobs?], previous: Int?,
                                textOffset: Int) -> [String: Any] {
        let befores = [previous] + tokens.dropLast().map { Optional($0) }
        let texts = zip(tokens, befores).map { model.tokenText($0, after: $1) }
        var offsets: [Int] = []
        var offset = textOffset
        for text in texts {
            offsets.append(offset)
            offset += text.unicodeScalars.count
        }
        return [
            "tokens": texts,
            "token_logprobs": entries.map { $0.map { JSON.logprob($0.logprob) } ?? NSNull() as Any },
            "top_logprobs": zip(entries, befores).map { entry, before -> Any in
                guard let entry else { return NSNull() }
                let top = entry.top.map { (model.tokenText($0.token, after: before), JSON.logprob($0.logprob)) }
                return Dictionary(top, uniquingKeysWith: { first, _ in first })
            },
            "text_offset": offsets,
        ]
    }

    mutating func chunks(for piece: ResponsePiece) -> [[String: Any]] {
        var result: [[String: Any]] = []
        if let echoText, !echoSent {
            echoSent = true
            streamedText += echoText
            result.append(envelope([["index": 0, "text": echoText, "logprobs": NSNull(),
                                     "finish_reason": NSNull()]]))
        }
        var choice: [String: Any] = ["index": 0, "text": "", "logprobs": NSNull(), "finish_reason": NSNull()]
        switch piece {
        case .promptLogprobs(let entries):
            guard sendPromptLogprobs else { return result }
            choice["prompt_logprobs"] = model.promptLogprobsObject(entries, prompt: promptTokens)
            if returnTokenIds { choice["prompt_token_ids"] = promptTokens }
        case .token(let token, let text, let entry):
            choice["text"] = text
            if let entry, logprobs != nil {
                choice["logprobs"] = logprobsObject(tokens: [token], entries: [entry],
                                                    previous: lastToken ?? promptTokens.last,
                                                    textOffset: streamedText.unicodeScalars.count)
            }
            if returnTokenIds { choice["token_ids"] = [token] }
            streamedText += text
            lastToken = token
        case .finished(let reason, let stop, let text):
            choice["text"] = text
            choice["finish_reason"] = reason
            choice["stop_reason"] = stop?.json ?? NSNull()
        }
        result.append(envelope([choice]))
        return result
    }

    func usageChunk(_ usage: [String: Any]) -> [String: Any] {
        var chunk = envelope([])
        chunk["usage"] = usage
        return chunk
    }

    func body(_ response: CollectedResponse, usage: [String: Any]) -> [String: Any] {
        var choice: [String: Any] = [
            "index": 0, "text": (echoText ?? "") + response.text, "finish_reason": response.finishReason,
            "stop_reason": response.stopReason?.json ?? NSNull(), "logprobs": NSNull(),
        ]
        if logprobs != nil {
            let generated = response.logprobs.map { Optional($0) }
            if echoText != nil {
                // The first prompt token has no prediction: null, as OpenAI sends.
                let prompt: [TokenLogprobs?] = [nil] + response.promptLogprobs.map { Optional($0) }
                choice["logprobs"] = logprobsObject(tokens: promptTokens + response.tokens, entries: prompt + generated,
                                                    previous: nil, textOffset: 0)
            } else {
                choice["logprobs"] = logprobsObject(tokens: response.tokens, entries: generated,
                                                    previous: promptTokens.last, textOffset: 0)
            }
        }
        if returnTokenIds {
            choice["token_ids"] = response.tokens
            choice["prompt_token_ids"] = promptTokens
        }
        if sendPromptLogprobs {
            choice["prompt_logprobs"] = model.promptLogprobsObject(response.promptLogprobs, prompt: promptTokens)
        }
        var object = envelope([choice])
        object["usage"] = usage
        return object
    }
}
