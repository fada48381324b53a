import Foundation
import MeshTensors

/// Sampling settings of one request. `temperature == 0` is greedy. The penalties follow vLLM:
/// `repetitionPenalty` divides positive (multiplies negative) logits of every token seen in the prompt
/// or the output; `frequencyPenalty` subtracts per occurrence in the output, `presencePenalty` once.
public struct SamplingParameters: Sendable, Equatable {
    public var temperature: Float
    public var topK: Int?
    public var topP: Float?
    /// Keeps tokens at least this fraction as likely as the most likely one.
    public var minP: Float?
    public var presencePenalty: Float
    public var frequencyPenalty: Float
    public var repetitionPenalty: Float
    public var seed: UInt64?

    public init(temperature: Float = 0, topK: Int? = nil, topP: Float? = nil, minP: Float? = nil,
                presencePenalty: Float = 0, frequencyPenalty: Float = 0, repetitionPenalty: Float = 1,
                seed: UInt64? = nil) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
        self.repetitionPenalty = repetitionPenalty
        self.seed = seed
    }

    var hasPenalties: Bool { presencePenalty != 0 || frequencyPenalty != 0 || repetitionPenalty != 1 }

    /// A precise message for out-of-range values, or nil.
    public var validationError: String? {
        if !(temperature >= 0) || !temperature.isFinite {
            return "temperature must be a finite number ≥ 0 (0 = greedy), got \(temperature)"
        }
        if let topK, topK < 1 { return "top_k must be ≥ 1, got \(topK)" }
        if let topP, !(topP > 0 && topP <= 1) { return "top_p must be in (0, 1], got \(topP)" }
        if let minP, !(minP >= 0 && minP <= 1) { return "min_p must be in [0, 1], got \(minP)" }
        for (name, value) in [("presence_penalty", presencePenalty), ("frequency_penalty", frequencyPenalty)]
        where !(value >= -2 && value <= 2) {
            return "\(name) must be in [-2, 2], got \(value)"
        }
        if !(repetitionPenalty > 0) || !repetitionPenalty.isFinite {
            return "repetition_penalty must be a finite number > 0 (1 = none), got \(repetitionPenalty)"
        }
        return nil
    }
}

/// xoshiro256** seeded through SplitMix64: reproducible across runs and platforms for a seed.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var s = seed
        func splitMix() -> UInt64 {
            s &+= 0x9E37_79B9_7F4A_7C15
            var z = s
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        state = (splitMix(), splitMix(), splitMix(), splitMix())
    }

    public mutating func next() -> UInt64 {
        let result = ((state.1 &* 5) << 7 | (state.1 &* 5) >> 57) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = state.3 << 45 | state.3 >> 19
        return result
    }
}

/// Picks the next token from a row of logits.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var random: SeededGenerator

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        random = SeededGenerator(seed: parameters.seed ?? UInt64.random(in: 0...UInt64.max))
    }

    /// The next token from `logits` [count]; `history` is the prompt followed by the tokens
    /// generated so far (its first `promptCount` are the prompt), read only for penalties.
    public mutating func sample(_ logits: UnsafePointer<Float>, count: Int,
                                history: ArraySlice<Int> = [], promptCount: Int = 0) -> Int {
        guard parameters.hasPenalties else { return sampleUnpenalized(logits, count: count) }
        var penalized = Array(UnsafeBufferPointer(start: logits, count: count))
        applyPenalties(to: &penalized, history: history, promptCount: promptCount)
        return penalized.withUnsafeBufferPointer { sampleUnpenalized($0.baseAddress!, count: count) }
    }

    private func applyPenalties(to logits: inout [Float], history: ArraySlice<Int>, promptCount: Int) {
        let split = history.startIndex + min(promptCount, history.count)
        var outputCounts: [Int: Int] = [:]
        for token in history[split...] { outputCounts[token, default: 0] += 1 }
        if parameters.repetitionPenalty != 1 {
            for token in Set(history) where logits.indices.contains(token) {
                let logit = logits[token]
                logits[token] = logit > 0 ? logit / parameters.repetitionPenalty : logit * parameters.repetitionPenalty
            }
        }
        for (token, occurrences) in outputCounts where logits.indices.contains(token) {
            logits[token] -= parameters.frequencyPenalty * Float(occurrences) + parameters.presencePenalty
        }
    }

    private mutating func sampleUnpenalized(_ logits: UnsafePointer<Float>, count: Int) -> Int {
        if parameters.temperature == 0 { return argmax(logits, count: count) }
        // Candidates sorted by logit (descending), cut by top-k, softmax at the temperature, cut by
        // min-p (relative to the most likely), then by top-p.
        var order = Array(0..<count)
        order.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        if let k = parameters.topK, k < count { order.removeSubrange(k...) }
        let maximum = logits[order[0]]
        var probabilities = order.map { expf((logits[$0] - maximum) / parameters.temperature) }
        let total = probabilities.reduce(0, +)
        probabilities = probabilities.map { $0 / total }
        if let minP = parameters.minP, minP > 0 {
            let threshold = minP * probabilities[0]
            let keep = max(1, probabilities.firstIndex { $0 < threshold } ?? probabilities.count)
            order.removeSubrange(keep...)
            probabilities.removeSubrange(keep...)
        }
        if let p = parameters.topP, p < 1 {
            let total = probabilities.reduce(0, +)
            var cumulative: Float = 0
            var keep = probabilities.count
            for (i, probability) in probabilities.enumerated() {
                cumulative += probability / total
                if cumulative >= p { keep = i + 1; break }
            }
            order.removeSubrange(keep...)
            probabilities.removeSubrange(keep...)
        }
        let draw = Float(Double(random.next() >> 11) / Double(1 << 53)) * probabilities.reduce(0, +)
        var cumulative: Float = 0
        for (i, probability) in probabilities.enumerated() {
            cumulative += probability
            if draw < cumulative { return order[i] }
        }
        return order[order.count - 1]
    }
}

/// Index of the largest value; the first on ties (as torch.argmax).
public func argmax(_ values: UnsafePointer<Float>, count: Int) -> Int {
    var best = 0
    for i in 1..<max(count, 1) where values[i] > values[best] { best = i }
    return best
}
