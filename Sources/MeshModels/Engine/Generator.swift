import MeshTensors

/// Top log-probabilities at one position.
public struct TokenLogprobs: Sendable, Equatable {
    public var token: Int
    public var logprob: Float
    /// 1 + the number of tokens more likely than `token` (vLLM's rank).
    public var rank: Int
    public var top: [(token: Int, logprob: Float)]

    public static func == (a: TokenLogprobs, b: TokenLogprobs) -> Bool {
        a.token == b.token && a.logprob == b.logprob && a.rank == b.rank && a.top.map(\.token) == b.top.map(\.token) && a.top.map(\.logprob) == b.top.map(\.logprob)
    }

    /// log_softmax of `logits` [vocab]; the chosen token's logprob and the `n` best.
    public init(logits: UnsafePointer<Float>, count: Int, chosen: Int, n: Int) {
        let logs = UnsafeMutablePointer<Float>.allocate(capacity: count)
        defer { logs.deallocate() }
        logSoftmax(logits, count: count, into: logs)
        token = chosen
        logprob = logs[chosen]
        var better = 0
        for i in 0..<count where logs[i] > logs[chosen] { better += 1 }
        rank = better + 1
        top = topK(logs, count: count, k: min(n, count)).map { ($0, logs[$0]) }
    }
}

public struct GenerationRequest: Sendable {
    public var prompt: [Int]
    public var maxTokens: Int
    public var sampling: SamplingParameters
    public var stopTokens: Set<Int>
    /// Keep every logits row (prompt positions, then each step but the last).
    public var recordLogits: Bool
    /// Top-N logprobs per generated token (nil: none).
    public var logprobs: Int?
    /// Top-N logprobs for each prompt position after the first (nil: none).
    public var promptLogprobs: Int?

    public init(prompt: [Int], maxTokens: Int, sampling: SamplingParameters = .init(), stopTokens: Set<Int> = [],
                recordLogits: Bool = false, logprobs: Int? = nil, promptLogprobs: Int? = nil) {
        self.prompt = prompt
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.stopTokens = stopTokens
        self.recordLogits = recordLogits
        self.logprobs = logprobs
        self.promptLogprobs = promptLogprobs
    }
}

public struct GenerationResult: Sendable {
    public var tokens: [Int] = []
    /// "stop" (a stop token) or "length" (max tokens).
    public var finishReason = "length"
    /// [rows, vocab] when recorded, row-major.
    public var logits: [Float] = []
    public var logitRows = 0
    public var logprobs: [TokenLogprobs] = []
    /// One entry per prompt position after the first (the first token has no prediction).
    public var promptLogprobs: [TokenLogprobs] = []
    public var prefillSeconds: Double = 0
    public var decodeSeconds: Double = 0
}

/// Prefill once (the whole prompt as batched products), then decode one token at a time.
public final class Generator<Backend: ExpertBackend> {
    public let transformer: Transformer<Backend>

    public init(_ transformer: Transformer<Backend>) { self.transformer = transformer }

    public func generate(_ request: GenerationRequest, onToken: (Int) -> Void = { _ in }) throws -> GenerationResult {
        guard !request.prompt.isEmpty else { throw ModelError("the prompt is empty: give at least one token") }
        if let problem = request.sampling.validationError { throw ModelError(problem) }
        let spec = transformer.spec
        if let limit = spec.maxPositions, request.prompt.count + request.maxTokens > limit {
            throw ModelError("prompt (\(request.prompt.count) tokens) + max tokens (\(request.maxTokens)) exceeds the model's context length of \(limit) tokens")
        }
        let vocab = spec.vocabSize
        var result = GenerationResult()
        var sampler = Sampler(request.sampling)
        let cache = KVCache(spec: spec)
        let needAllPromptRows = request.recordLogits || request.promptLogprobs != nil
        let clock = ContinuousClock()

        var start = clock.now
        var logits = try transformer.forward(request.prompt, cache: cache, allLogits: needAllPromptRows)
        result.prefillSeconds = (clock.now - start).seconds
        if request.recordLogits { result.logits += logits.toArray(); result.logitRows += logits.rows }
        if let n = request.promptLogprobs {
            for position in 1..<request.prompt.count {
                result.promptLogprobs.append(TokenLogprobs(logits: logits.row(position - 1), count: vocab, chosen: request.prompt[position], n: n))
            }
        }
        start = clock.now
        var last = logits.row(logits.rows - 1)
        while result.tokens.count < request.maxTokens {
            let token = sampler.sample(last, count: vocab)
            if let n = request.logprobs { result.logprobs.append(TokenLogprobs(logits: last, count: vocab, chosen: token, n: n)) }
            result.tokens.append(token)
            onToken(token)
            if request.stopTokens.contains(token) { result.finishReason = "stop"; break }
            if result.tokens.count == request.maxTokens { break }
            logits = try transformer.forward([token], cache: cache, allLogits: false)
            if request.recordLogits { result.logits += logits.toArray(); result.logitRows += 1 }
            last = logits.row(0)
        }
        result.decodeSeconds = (clock.now - start).seconds
        return result
    }
}

extension Duration {
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
