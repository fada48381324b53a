import Foundation
import MeshModels

/// The fields `/v1/completions` and `/v1/chat/completions` share, validated. Defaults are
/// OpenAI's (temperature 1, top_p 1); vLLM's extensions (`top_k`, `min_p`, `repetition_penalty`,
/// `ignore_eos`, `stop_token_ids`, `skip_special_tokens`, `return_token_ids`, `prompt_logprobs`)
/// are read as vLLM reads them.
struct SamplingFields {
    /// nil: as many as the context leaves.
    var maxTokens: Int?
    var sampling: SamplingParameters
    var stop: [String]
    var stopTokenIds: [Int]
    var ignoreEos: Bool
    var skipSpecialTokens: Bool
    var stream: Bool
    var includeUsage: Bool
    var returnTokenIds: Bool
    var promptLogprobs: Int?

    /// `maxTokensKeys` in order of preference (chat prefers `max_completion_tokens`).
    init(_ fields: RequestFields, maxTokensKeys: [String]) throws {
        maxTokens = nil
        for key in maxTokensKeys.reversed() {
            guard let value = try fields.int(key) else { continue }
            guard value >= 1 else { throw APIError.badRequest("'\(key)' must be at least 1, got \(value)", param: key) }
            maxTokens = value
        }
        if let n = try fields.int("n"), n != 1 {
            throw APIError.badRequest("'n' must be 1: one completion per request (send several requests instead)",
                                      param: "n")
        }
        func float(_ key: String) throws -> Float? { try fields.number(key).map(Float.init) }
        let topK = try fields.int("top_k")
        sampling = SamplingParameters(
            temperature: try float("temperature") ?? 1, topK: topK.flatMap { $0 <= 0 ? nil : $0 },
            topP: try float("top_p"), minP: try float("min_p"),
            presencePenalty: try float("presence_penalty") ?? 0, frequencyPenalty: try float("frequency_penalty") ?? 0,
            repetitionPenalty: try float("repetition_penalty") ?? 1,
            seed: try fields.int("seed").map { UInt64(bitPattern: Int64($0)) })
        if let problem = sampling.validationError {
            // Each message starts with the field's name.
            throw APIError.badRequest(problem, param: problem.split(separator: " ").first.map(String.init))
        }
        stop = try fields.strings("stop") ?? []
        if stop.contains("") { throw APIError.badRequest("'stop' strings must not be empty", param: "stop") }
        stopTokenIds = try fields.tokenIds("stop_token_ids") ?? []
        ignoreEos = try fields.bool("ignore_eos") ?? false
        skipSpecialTokens = try fields.bool("skip_special_tokens") ?? true
        stream = try fields.bool("stream") ?? false
        includeUsage = try fields.object("stream_options")?.bool("include_usage") ?? false
        returnTokenIds = try fields.bool("return_token_ids") ?? false
        promptLogprobs = try Self.logprobCount(fields, "prompt_logprobs")
        _ = try fields.string("user")
        try Self.refuseUnsupported(fields)
    }

    /// Known fields that would change the answer and are not implemented: a clear 400 rather than
    /// an answer that silently ignores them. Their neutral values are accepted.
    private static func refuseUnsupported(_ fields: RequestFields) throws {
        func refuse(_ key: String) -> APIError {
            .badRequest("'\(key)' is not supported by this server yet; leave it out", param: key)
        }
        if let bias = try fields.object("logit_bias"), !bias.dict.isEmpty { throw refuse("logit_bias") }
        if let count = try fields.int("min_tokens"), count > 0 { throw refuse("min_tokens") }
        if let count = try fields.int("best_of"), count > 1 { throw refuse("best_of") }
        if let suffix = try fields.string("suffix"), !suffix.isEmpty { throw refuse("suffix") }
        if try fields.bool("include_stop_str_in_output") == true { throw refuse("include_stop_str_in_output") }
        if let format = try fields.object("response_format"), try format.string("type") ?? "text" != "text" {
            throw refuse("response_format")
        }
    }

    /// A top-logprobs count field: 0 to 20.
    static func logprobCount(_ fields: RequestFields, _ key: String) throws -> Int? {
        guard let value = try fields.int(key) else { return nil }
        guard (0...20).contains(value) else {
            throw APIError.badRequest("'\(key)' must be between 0 and 20, got \(value)", param: key)
        }
        return value
    }
}
