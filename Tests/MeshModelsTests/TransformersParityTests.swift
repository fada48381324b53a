import Foundation
import MeshEngine
import MeshModels
import MeshTensors
import XCTest

/// Logits and greedy tokens of every architecture against Hugging Face transformers.
final class TransformersParityTests: XCTestCase {
    func assertMatchesTransformers(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let expected = try Fixtures.expected(name)
        let engine = try LocalEngine(directory: Fixtures.directory(name))
        let result = try engine.generator.generate(GenerationRequest(
            prompt: expected.promptTokens, maxTokens: expected.greedyTokens.count, recordLogits: true))
        XCTAssertEqual(result.tokens, expected.greedyTokens, "\(name): greedy tokens differ from transformers", file: file, line: line)
        XCTAssertEqual([result.logitRows, engine.spec.vocabSize], expected.logitsShape, "\(name): logits shape", file: file, line: line)
        guard result.logits.count == expected.logits.count else { return }
        let maxDiff = zip(result.logits, expected.logits).map { abs($0 - $1) }.max() ?? .infinity
        print("\(name): max |logits - transformers| = \(maxDiff) over \(expected.logitsShape)")
        XCTAssertLessThan(maxDiff, 1e-4, "\(name): logits differ from transformers", file: file, line: line)
    }

    func testMixtralPerExpertTensors() throws { try assertMatchesTransformers("mixtral") }
    func testMixtralFusedExperts() throws { try assertMatchesTransformers("mixtral-fused") }
    func testMixtralBF16Checkpoint() throws { try assertMatchesTransformers("mixtral-bf16") }
    func testQwen3MoeShardedWithDenseLayer() throws { try assertMatchesTransformers("qwen3_moe") }
    func testQwen3MoeNormalisedTopK() throws { try assertMatchesTransformers("qwen3_moe-norm") }
    func testLlama4Text() throws { try assertMatchesTransformers("llama4_text") }
    func testLlama4ConditionalGenerationTextPart() throws { try assertMatchesTransformers("llama4") }
    func testLlama4BehemothTopology() throws { try assertMatchesTransformers("llama4_text-behemoth") }
    func testQwen2MoeSharedExpertGate() throws { try assertMatchesTransformers("qwen2_moe") }
    func testOlmoeNormAcrossHeadsAndClip() throws { try assertMatchesTransformers("olmoe") }
    func testGlm4MoeGroupedSigmoidRoutingAndPartialRope() throws { try assertMatchesTransformers("glm4_moe") }
    func testDbrxLayerNormFusedQKVStackedExperts() throws { try assertMatchesTransformers("dbrx") }
    func testDeepseekV3LatentAttentionAndYarn() throws { try assertMatchesTransformers("deepseek_v3") }
    func testDeepseekV3LiteBF16WithoutQueryLowRank() throws { try assertMatchesTransformers("deepseek_v3-lite-bf16") }
    func testGptOssSinksSlidingLayersBiasedExperts() throws { try assertMatchesTransformers("gpt_oss") }

    /// gpt-oss's experts as the hub ships them, MXFP4 blocks, against transformers' own
    /// dequantisation; the experts stay 4-bit in memory (17 bytes per 32 values, read in place).
    func testGptOssMXFP4ExpertsStayFourBit() throws {
        try assertMatchesTransformers("gpt_oss-mxfp4")
        let model = try LoadedModel(directory: Fixtures.directory("gpt_oss-mxfp4"))
        let experts = try model.loadExperts(model.allExpertKeys)
        for weights in experts.values {
            for weight in [weights.gate, weights.up, weights.down] {
                XCTAssertTrue(weight.isMXFP4)
                XCTAssertEqual(weight.byteCount, weight.outFeatures * weight.inFeatures * 17 / 32)
            }
        }
        // --weights-dtype int8 keeps them MXFP4 (already smaller than int8).
        let int8 = try model.loadExperts([ExpertKey(layer: 0, expert: 0)], format: .int8)
        XCTAssertTrue(int8.values.first?.gate.isMXFP4 ?? false)
    }
    func testLlamaDenseWithBiasesAndLinearRope() throws { try assertMatchesTransformers("llama") }
    func testMistralSlidingWindow() throws { try assertMatchesTransformers("mistral") }
    func testQwen2SlidingWindowLayersAndYarn() throws { try assertMatchesTransformers("qwen2") }
    func testQwen3DenseWithDynamicRope() throws { try assertMatchesTransformers("qwen3") }

    /// No fixture is left out of the named tests above.
    func testEveryFixtureHasItsParityTest() throws {
        let named = ["mixtral", "mixtral-fused", "mixtral-bf16", "qwen3_moe", "qwen3_moe-norm", "llama4_text", "llama4",
                     "llama4_text-behemoth", "qwen2_moe", "olmoe", "glm4_moe", "dbrx", "deepseek_v3", "deepseek_v3-lite-bf16",
                     "gpt_oss", "gpt_oss-mxfp4", "llama", "mistral", "qwen2", "qwen3"]
        XCTAssertEqual(Set(Fixtures.all), Set(named), "add a parity test for each new fixture")
    }

    /// The bf16 kernels (activations rounded to bf16, as transformers computes a bf16 model) against
    /// the f32-accumulated transformers reference: the cost of the rounding, measured and bounded.
    func testBF16KernelsStayCloseToTransformers() throws {
        let saved = MatmulKernels.current
        defer { MatmulKernels.use(saved) }
        let variants = MatmulKernels.supported.filter(\.roundsActivationsToBF16)
        if variants.isEmpty { throw XCTSkip("this CPU has no bf16 dot products") }
        let expected = try Fixtures.expected("mixtral-bf16")
        let engine = try LocalEngine(directory: Fixtures.directory("mixtral-bf16"))
        let scale = expected.logits.map { abs($0) }.max() ?? 1
        for variant in variants {
            MatmulKernels.use(variant)
            let result = try engine.generator.generate(GenerationRequest(
                prompt: expected.promptTokens, maxTokens: expected.greedyTokens.count, recordLogits: true))
            let agreeing = zip(result.tokens, expected.greedyTokens).prefix { $0 == $1 }.count
            let rows = min(result.logitRows, expected.promptTokens.count + agreeing)
            let vocab = engine.spec.vocabSize
            let maxDiff = zip(result.logits.prefix(rows * vocab), expected.logits.prefix(rows * vocab)).map { abs($0 - $1) }.max() ?? .infinity
            print("mixtral-bf16 with \(variant.name): max |logits - transformers (f32)| = \(maxDiff) (logits up to \(scale)), "
                  + "greedy tokens agree \(agreeing)/\(expected.greedyTokens.count)")
            // bf16 keeps 8 bits of mantissa: a few parts in a thousand of the logits' scale per position.
            XCTAssertLessThan(maxDiff, 0.02 * scale, "\(variant.name): bf16 rounding costs more than expected")
            XCTAssertGreaterThan(maxDiff, 0, "\(variant.name): activations were not rounded to bf16")
        }
    }

    /// int8 (Q8_0) experts, and int8 dense projections too, on every fixture, with the int8 kernel
    /// and (under AMX) with the weights widened for the tiles: the quality cost against
    /// transformers, measured and bounded (log-probabilities, and greedy tokens up to the first
    /// difference).
    func testInt8WeightsStayCloseToTransformers() throws {
        try XCTSkipUnless(LinearWeight.q8Supported, "this CPU has no int8 kernels")
        let saved = MatmulKernels.current
        defer { MatmulKernels.use(saved) }
        let variants = [saved] + (MatmulKernels.supported.contains(.amxBF16) ? [.amxBF16] : [])
        for variant in variants {
            MatmulKernels.use(variant)
            // MXFP4 experts stay 4-bit under --weights-dtype int8: nothing to measure there. The
            // miniature Behemoth (8 random layers, for the cluster's topology) compounds int8 error to
            // 5.9 with int8 experts: a measure of random weights, not of the kernels, so it is left out.
            for name in Fixtures.moe where !name.hasSuffix("-mxfp4") && name != "llama4_text-behemoth" {
                // Random tiny fixtures (hidden 64, flat next-token distributions) are harsh on quantisation:
                // with the int8 kernel, int8 experts move log-probabilities by ≤ 0.33 here and int8
                // everywhere by up to 5.1 (DeepSeek's bf16 MLA fixture; 3.5 for the others); widened to bf16
                // for the tiles (the weights lose 3 more bits) ≤ 0.40 and 5.0 before the DeepSeek fixtures
                // (not measured since: no AMX here), so a margin. Near-ties flip greedy tokens. The bench
                // model's figures are in the README.
                let tiles = variant == .amxBF16
                try assertInt8Close(name, WeightFormats(experts: .int8), bound: tiles ? 0.5 : 0.35, label: variant.name)
                try assertInt8Close(name, WeightFormats(experts: .int8, dense: .int8), bound: tiles ? 8 : 6, label: variant.name)
            }
        }
    }

    /// Weights read in place from the file (`--weights-dtype mapped --dense-dtype mapped`) and the
    /// default copies in huge-page memory are the same numbers: on the exact path every fixture gives
    /// the same tokens and bit-identical logits.
    func testWeightsReadInPlaceEqualTheirCopies() throws {
        let mapped = WeightFormats(experts: .mapped, dense: .mapped)
        for name in Fixtures.all {
            let expected = try Fixtures.expected(name)
            let request = GenerationRequest(prompt: expected.promptTokens, maxTokens: 6, recordLogits: true)
            let copied = try LocalEngine(directory: Fixtures.directory(name)).generator.generate(request)
            let inPlace = try LocalEngine(directory: Fixtures.directory(name), formats: mapped).generator.generate(request)
            XCTAssertEqual(inPlace.tokens, copied.tokens, "\(name): tokens")
            XCTAssertEqual(inPlace.logits, copied.logits, "\(name): logits")
        }
    }

    func assertInt8Close(_ name: String, _ formats: WeightFormats, bound: Double, label: String) throws {
        let expected = try Fixtures.expected(name)
        let engine = try LocalEngine(directory: Fixtures.directory(name), formats: formats)
        let result = try engine.generator.generate(GenerationRequest(
            prompt: expected.promptTokens, maxTokens: expected.greedyTokens.count, recordLogits: true))
        let agreeing = zip(result.tokens, expected.greedyTokens).prefix { $0 == $1 }.count
        let rows = min(result.logitRows, expected.promptTokens.count + agreeing)
        let vocab = engine.spec.vocabSize
        var maxDiff = 0.0
        for row in 0..<rows {
            let ours = logprobs(result.logits[(row * vocab)..<((row + 1) * vocab)])
            let theirs = logprobs(expected.logits[(row * vocab)..<((row + 1) * vocab)])
            maxDiff = max(maxDiff, zip(ours, theirs).map { abs($0 - $1) }.max() ?? 0)
        }
        print("\(name) with \(formats), \(label): max |logprob - transformers| = \(maxDiff) over \(rows) positions; "
              + "greedy tokens agree \(agreeing)/\(expected.greedyTokens.count)")
        XCTAssertLessThan(maxDiff, bound, "\(name) \(formats) \(label): int8 costs more than expected")
        XCTAssertGreaterThan(maxDiff, 0, "\(name) \(formats) \(label): the weights were not quantised")
        if formats.dense == .file {
            XCTAssertGreaterThan(agreeing, 0, "\(name) \(formats) \(label): the first greedy token differs")
        }
    }

    func logprobs(_ logits: ArraySlice<Float>) -> [Double] {
        let top = Double(logits.max() ?? 0)
        let total = top + log(logits.reduce(0.0) { $0 + exp(Double($1) - top) })
        return logits.map { Double($0) - total }
    }

    func testBF16WeightsStayBF16InMemory() throws {
        let model = try LoadedModel(directory: Fixtures.directory("mixtral-bf16"))
        XCTAssertEqual(model.dense.lmHead.dtype, .bf16)
        XCTAssertEqual(model.dense.layers[0].attention.projections.map(\.dtype), [.bf16, .bf16, .bf16, .bf16])
        let experts = try model.loadExperts([ExpertKey(layer: 0, expert: 0)])
        XCTAssertEqual(experts.values.first?.gate.dtype, .bf16)
    }
}
