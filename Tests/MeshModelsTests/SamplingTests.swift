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
}
