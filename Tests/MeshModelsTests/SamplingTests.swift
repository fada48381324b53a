import Foundation
import MeshEngine
import MeshModels
import XCTest

final class SamplingTests: XCTestCase {
    func testLogprobsRankAndTopN() {
        let logits: [Float] = [1, 3, 2, 0]
        let entry = TokenLogprobs(logits: logits, count: 4, chosen: 0, n: 2)
        XCTAssertEqual(entry.rank, 3)
        XCTAssertEqual(entry.top.map(\.token), [1, 2])
        let total = logits.map { exp(Double($0)) }.reduce(0, +)
        XCTAssertEqual(Double(entry.logprob), log(exp(1) / total), accuracy: 1e-6)
    }

    func testGreedyIsArgmaxAndSeededSamplingRepeats() {
        let logits: [Float] = [0.1, 2.0, 1.9, -1]
        var greedy = Sampler(SamplingParameters(temperature: 0))
        XCTAssertEqual(greedy.sample(logits, count: 4), 1)
        func draws(seed: UInt64) -> [Int] {
            var sampler = Sampler(SamplingParameters(temperature: 1, seed: seed))
            return (0..<50).map { _ in sampler.sample(logits, count: 4) }
        }
        XCTAssertEqual(draws(seed: 7), draws(seed: 7))
        XCTAssertNotEqual(draws(seed: 7), draws(seed: 8))
        XCTAssertEqual(Set(draws(seed: 7)).count > 1, true, "temperature 1 must sample more than one token")
    }

    func testTopKAndTopPRestrictTheCandidates() {
        let logits: [Float] = [5, 4.9, 0, -3]
        var topK = Sampler(SamplingParameters(temperature: 1, topK: 2, seed: 1))
        XCTAssertTrue((0..<200).map { _ in topK.sample(logits, count: 4) }.allSatisfy { $0 < 2 })
        var topP = Sampler(SamplingParameters(temperature: 1, topP: 0.5, seed: 1))
        XCTAssertTrue((0..<200).map { _ in topP.sample(logits, count: 4) }.allSatisfy { $0 == 0 })
    }

    func testInvalidParametersAreExplained() {
        XCTAssertEqual(SamplingParameters(temperature: -1).validationError, "temperature must be a finite number ≥ 0 (0 = greedy), got -1.0")
        XCTAssertEqual(SamplingParameters(temperature: 1, topK: 0).validationError, "top_k must be ≥ 1, got 0")
        XCTAssertEqual(SamplingParameters(temperature: 1, topP: 1.5).validationError, "top_p must be in (0, 1], got 1.5")
    }

    func testMinPKeepsTokensNearTheMostLikely() {
        // p1 / p0 = e^-1 ≈ 0.37: below min_p 0.5, so only token 0 survives.
        let logits: [Float] = [2, 1, 0, -5]
        var minP = Sampler(SamplingParameters(temperature: 1, minP: 0.5, seed: 3))
        XCTAssertTrue((0..<200).map { _ in minP.sample(logits, count: 4) }.allSatisfy { $0 == 0 })
        var loose = Sampler(SamplingParameters(temperature: 1, minP: 0.3, seed: 3))
        XCTAssertEqual(Set((0..<400).map { _ in loose.sample(logits, count: 4) }), [0, 1])
    }

    /// vLLM's rules: repetition over prompt and output (divide positive logits, multiply negative
    /// ones); frequency per output occurrence and presence once, output only.
    func testPenaltiesFollowVLLM() {
        func greedy(_ logits: [Float], _ parameters: SamplingParameters, history: [Int], promptCount: Int) -> Int {
            var sampler = Sampler(parameters)
            return sampler.sample(logits, count: logits.count, history: history[...], promptCount: promptCount)
        }
        XCTAssertEqual(greedy([2, 1.9, 0], .init(repetitionPenalty: 2), history: [0], promptCount: 1), 1)
        XCTAssertEqual(greedy([-1, -1.5], .init(repetitionPenalty: 2), history: [0], promptCount: 1), 1)
        XCTAssertEqual(greedy([2, 1.5], .init(frequencyPenalty: 0.3), history: [0, 0], promptCount: 0), 1)
        XCTAssertEqual(greedy([2, 1.5], .init(frequencyPenalty: 0.3), history: [0, 0], promptCount: 2), 0,
                       "prompt tokens carry no frequency penalty")
        XCTAssertEqual(greedy([2, 1.5], .init(presencePenalty: 0.6), history: [0, 0], promptCount: 0), 1)
        XCTAssertEqual(greedy([2, 1.5], .init(presencePenalty: 0.4), history: [0, 0], promptCount: 0), 0)
        XCTAssertEqual(SamplingParameters(presencePenalty: 3).validationError, "presence_penalty must be in [-2, 2], got 3.0")
    }
}
