import MeshModels
import MeshTensors

/// Top log-probabilities at one position.
public struct TokenLogprobs: Sendable, Equatable {
    public var token: Int
    public var logprob: Float
    /// 1 + the number of tokens more likely than `token` (vLLM's rank).
    public var rank: Int
    public var top: [(token: Int, logprob: Float)]

    public static func == (a: TokenLogprobs, b: TokenLogprobs) -> Bool {
        a.token == b.token && a.logprob == b.logprob && a.rank == b.rank
            && a.top.map(\.token) == b.top.map(\.token) && a.top.map(\.logprob) == b.top.map(\.logprob)
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

/// What one sequence asks of the engine.
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

public enum FinishReason: String, Sendable {
    /// A stop token was generated.
    case stop
    /// max tokens reached.
    case length
    /// The consumer cancelled (e.g. the client went away).
    case cancelled
}

/// Where a sequence's time went, and what the prefix cache saved it.
public struct SequenceTimings: Sendable {
    /// Arrival to first scheduled step.
    public var queueSeconds: Double = 0
    /// First scheduled step to first token.
    public var prefillSeconds: Double = 0
    /// First token to the last.
    public var decodeSeconds: Double = 0
    /// Prompt tokens whose keys and values came from the prefix cache.
    public var cachedPromptTokens = 0
    /// Times the sequence was preempted (its cache freed) and recomputed.
    public var preemptions = 0
}

/// What the engine tells a sequence's consumer, in order, on the engine thread.
public enum SequenceEvent: Sendable {
    /// Logprobs of prompt positions 1 ..< n, once the prompt has been read.
    case promptLogprobs([TokenLogprobs])
    /// Raw logits rows [rows, vocab] (requests with `recordLogits` only).
    case logits([Float], rows: Int)
    case token(Int, logprobs: TokenLogprobs?)
    case finished(FinishReason, SequenceTimings)
    case failed(EngineError)
}

/// A whole generation, collected from a sequence's events.
public struct GenerationResult: Sendable {
    public var tokens: [Int] = []
    /// "stop" (a stop token), "length" (max tokens) or "cancelled".
    public var finishReason = "length"
    /// [rows, vocab] when recorded, row-major.
    public var logits: [Float] = []
    public var logitRows = 0
    public var logprobs: [TokenLogprobs] = []
    /// One entry per prompt position after the first (the first token has no prediction).
    public var promptLogprobs: [TokenLogprobs] = []
    public var timings = SequenceTimings()
    public var prefillSeconds: Double { timings.prefillSeconds }
    public var decodeSeconds: Double { timings.decodeSeconds }

    public init() {}

    /// Folds one event in; returns true once the sequence is over. A failure throws.
    public mutating func absorb(_ event: SequenceEvent) throws -> Bool {
        switch event {
        case .promptLogprobs(let entries): promptLogprobs = entries
        case .logits(let values, let rows): logits += values; logitRows += rows
        case .token(let token, let entry):
            tokens.append(token)
            if let entry { logprobs.append(entry) }
        case .finished(let reason, let timings):
            finishReason = reason.rawValue
            self.timings = timings
            return true
        case .failed(let error): throw error
        }
        return false
    }
}
