import Foundation
import MeshEngine
import MeshModels

/// A validated `POST /v1/completions` body (OpenAI fields plus vLLM's `return_token_ids`,
/// `prompt_logprobs` and `top_k`).
public struct CompletionRequest: Sendable {
    public enum Prompt: Sendable { case text(String), tokens([Int]) }
    public var prompt: Prompt
    public var maxTokens: Int
    public var sampling: SamplingParameters
    public var logprobs: Int?
    public var promptLogprobs: Int?
    public var returnTokenIds: Bool
    public var ignoreEos: Bool
    /// Server-sent events, one per token, then `data: [DONE]`.
    public var stream: Bool
    /// `stream_options.include_usage`: a last chunk with token counts.
    public var includeUsage: Bool

    /// Parses and validates; the error message names the field and what is allowed.
    public init(json body: Data) throws {
        guard let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else {
            throw EngineError(.badRequest, "the request body must be a JSON object, e.g. {\"prompt\": \"Hello\", \"max_tokens\": 16}")
        }
        func int(_ key: String) throws -> Int? {
            guard let value = object[key], !(value is NSNull) else { return nil }
            guard let number = value as? NSNumber, Double(number.intValue) == number.doubleValue else {
                throw EngineError(.badRequest, "'\(key)' must be an integer")
            }
            return number.intValue
        }
        func double(_ key: String) throws -> Double? {
            guard let value = object[key], !(value is NSNull) else { return nil }
            guard let number = value as? NSNumber else { throw EngineError(.badRequest, "'\(key)' must be a number") }
            return number.doubleValue
        }
        switch object["prompt"] {
        case let text as String:
            prompt = .text(text)
        case let list as [Any]:
            guard !list.isEmpty, let ids = list as? [NSNumber], ids.allSatisfy({ $0.doubleValue == Double($0.intValue) && $0.intValue >= 0 }) else {
                throw EngineError(.badRequest, "'prompt' must be a string or a non-empty list of token ids (one prompt per request)")
            }
            prompt = .tokens(ids.map(\.intValue))
        default:
            throw EngineError(.badRequest, "'prompt' is required: a string or a list of token ids")
        }
        if let n = try int("n"), n != 1 { throw EngineError(.badRequest, "'n' must be 1: one completion per request") }
        maxTokens = try int("max_tokens") ?? 16
        guard maxTokens >= 1 else { throw EngineError(.badRequest, "'max_tokens' must be at least 1") }
        let seed = try int("seed")
        sampling = SamplingParameters(temperature: Float(try double("temperature") ?? 1), topK: try int("top_k").flatMap { $0 <= 0 ? nil : $0 },
                                      topP: (try double("top_p")).map(Float.init), seed: seed.map { UInt64(bitPattern: Int64($0)) })
        if let problem = sampling.validationError { throw EngineError(.badRequest, problem) }
        logprobs = try int("logprobs")
        promptLogprobs = try int("prompt_logprobs")
        for (name, value) in [("logprobs", logprobs), ("prompt_logprobs", promptLogprobs)] {
            if let value, !(0...20).contains(value) { throw EngineError(.badRequest, "'\(name)' must be between 0 and 20") }
        }
        returnTokenIds = object["return_token_ids"] as? Bool ?? false
        ignoreEos = object["ignore_eos"] as? Bool ?? false
        stream = object["stream"] as? Bool ?? false
        includeUsage = (object["stream_options"] as? [String: Any])?["include_usage"] as? Bool ?? false
    }
}
