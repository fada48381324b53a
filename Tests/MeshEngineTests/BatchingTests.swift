import Foundation
import MeshEngine
import MeshModels
import MeshTensors
import XCTest

/// Continuous batching must never change a result: every request gives the same tokens and
/// logprobs alone, among 63 others, after a prefix-cache hit and after preemption.
final class BatchingTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../Fixtures/models").standardizedFileURL

    /// Every transformers fixture, dense ones included.
    static let architectures = ((try? FileManager.default.contentsOfDirectory(atPath: fixtures.path)) ?? []).sorted()
        .filter { FileManager.default.fileExists(atPath: fixture($0).appendingPathComponent("expected.json").path) }

    static func fixture(_ name: String) -> URL { fixtures.appendingPathComponent(name) }

    /// 64 requests of mixed prompt and output lengths: a third share a 40-token prefix, some sample with
    /// a seed, some ask for prompt logprobs, one stops on a stop token.
    static func mixedRequests(vocab: Int, count: Int = 64) -> [GenerationRequest] {
        var random = SeededGenerator(seed: 42)
        func tokens(_ n: Int) -> [Int] { (0..<n).map { _ in Int(random.next() % UInt64(vocab)) } }
        let shared = tokens(40)
        return (0..<count).map { index in
            let length = 1 + Int(random.next() % 90)
            let prompt = index % 3 == 0 ? shared + tokens(length % 20 + 1) : tokens(length)
            let maxTokens = 1 + Int(random.next() % 24)
            let sampling = index % 5 == 1 ? SamplingParameters(temperature: 0.9, topK: 40, topP: 0.95, seed: UInt64(index)) : .init()
            return GenerationRequest(prompt: prompt, maxTokens: maxTokens, sampling: sampling,
                                     stopTokens: index % 7 == 3 ? [Int(random.next() % UInt64(vocab))] : [],
                                     logprobs: 3, promptLogprobs: index % 8 == 5 ? 2 : nil)
        }
    }

    /// Runs every request through one engine; returns the results in request order and the stats.
    /// Requests from `lateFrom` on arrive after 40 steps, when the earlier prompts are read and cached.
    static func runTogether(_ requests: [GenerationRequest], engine: InferenceEngine<LocalExpertBackend>,
                            lateFrom: Int? = nil, cancelAfterTokens: [Int: Int] = [:]) throws -> ([GenerationResult?], EngineStats) {
        var results = [GenerationResult?](repeating: nil, count: requests.count)
        var partial = [GenerationResult](repeating: GenerationResult(), count: requests.count)
        var failures: [String] = []
        func add(_ index: Int) throws {
            let request = requests[index]
            try engine.add(request, isCancelled: { cancelAfterTokens[index].map { partial[index].tokens.count >= $0 } ?? false }) { event in
                do {
                    if try partial[index].absorb(event) { results[index] = partial[index] }
                } catch {
                    failures.append("request \(index): \(error)")
                }
            }
        }
        let late = lateFrom ?? requests.count
        for index in 0..<late { try add(index) }
        var steps = 0
        while try engine.step() || steps < 40 {
            steps += 1
            if steps == 40 { for index in late..<requests.count { try add(index) } }
            if steps > 100_000 { XCTFail("the engine never finished"); break }
        }
        XCTAssertEqual(failures, [])
        return (results, engine.stats)
    }

    func engine(_ local: LocalEngine, batchTokens: Int, blocks: Int, running: Int = 64) throws -> InferenceEngine<LocalExpertBackend> {
        try InferenceEngine(transformer: local.generator.transformer, configuration: EngineConfiguration(
            maxBatchTokens: batchTokens, maxRunning: running, maxWaiting: 1000, kvCacheBlocks: blocks))
    }

    static func assertSame(_ batched: GenerationResult?, _ alone: GenerationResult, _ label: String,
                    file: StaticString = #filePath, line: UInt = #line) {
        guard let batched else { return XCTFail("\(label): never finished", file: file, line: line) }
        XCTAssertEqual(batched.tokens, alone.tokens, "\(label): tokens differ", file: file, line: line)
        XCTAssertEqual(batched.finishReason, alone.finishReason, "\(label)", file: file, line: line)
        let pairs = zip(batched.logprobs, alone.logprobs).map { abs($0.logprob - $1.logprob) }
            + zip(batched.promptLogprobs, alone.promptLogprobs).map { abs($0.logprob - $1.logprob) }
        XCTAssertEqual(batched.logprobs.count, alone.logprobs.count, "\(label)", file: file, line: line)
        XCTAssertEqual(batched.promptLogprobs.count, alone.promptLogprobs.count, "\(label)", file: file, line: line)
        XCTAssertLessThanOrEqual(pairs.max() ?? 0, 1e-4, "\(label): logprobs differ", file: file, line: line)
    }

    func testMixedBatchEqualsEachRequestAloneOnEveryArchitecture() throws {
        for name in Self.architectures { try assertMixedBatchEqualsAlone(name) }
    }

    /// The bf16 kernels (bf16 dot products, panels packed at load, AMX tiles) keep every request's
    /// result in a batch too.
    func testBF16KernelsKeepEveryRequestsResultInABatch() throws {
        let saved = MatmulKernels.current
        defer { MatmulKernels.use(saved) }
        let variants = MatmulKernels.supported.filter(\.roundsActivationsToBF16)
        if variants.isEmpty { throw XCTSkip("this CPU has no bf16 dot products") }
        for variant in variants {
            MatmulKernels.use(variant)
            try assertMixedBatchEqualsAlone("mixtral-bf16", label: variant.name)
            try assertPreemptedRequestsRecomputeTheSame("mixtral-bf16", label: variant.name)
            // Weights read in place (`mapped`): no packing at load, so other kernels for prompt and
            // generated rows; a request's result still does not depend on its batch.
            let mapped = WeightFormats(experts: .mapped, dense: .mapped)
            try assertMixedBatchEqualsAlone("mixtral-bf16", label: "mapped \(variant.name)", formats: mapped)
        }
    }

    /// int8 (Q8_0) experts and dense projections: activations are quantised per token, so a row's
    /// result must still not depend on its neighbours; under AMX prompt rows take the tiles and
    /// generated rows the int8 kernel, through preemption too.
    func testInt8WeightsKeepEveryRequestsResultInABatch() throws {
        try XCTSkipUnless(LinearWeight.q8Supported, "this CPU has no int8 kernels")
        let saved = MatmulKernels.current
        defer { MatmulKernels.use(saved) }
        let int8 = WeightFormats(experts: .int8, dense: .int8)
        for variant in [saved] + (MatmulKernels.supported.contains(.amxBF16) ? [.amxBF16] : []) {
            MatmulKernels.use(variant)
            for name in ["mixtral", "llama4"] {
                try assertMixedBatchEqualsAlone(name, label: "int8 \(variant.name)", formats: int8)
            }
            try assertPreemptedRequestsRecomputeTheSame("mixtral-bf16", label: "int8 \(variant.name)", formats: int8)
        }
    }

    /// Every step cut in two micro-batches that take turns (`microBatchOverlap`, the cluster's
    /// `--overlap-exchanges`), sequences cut between them included: each request's result is the
    /// same as alone in one piece.
    /// Under `auto` some steps run whole and some in two, as the tuner times them: the same results.
    func testTwoMicroBatchesInTurnEqualEachRequestAloneOnEveryArchitecture() throws {
        for name in Self.architectures { try assertMixedBatchEqualsAlone(name, label: "two micro-batches", overlap: .on) }
        for name in ["mixtral", "deepseek_v3"] {
            try assertMixedBatchEqualsAlone(name, label: "two micro-batches where faster", overlap: .auto)
        }
    }

    func assertMixedBatchEqualsAlone(_ name: String, label: String = "", formats: WeightFormats = WeightFormats(),
                                     overlap: MicroBatchOverlap = .off) throws {
        let local = try LocalEngine(directory: Self.fixture(name), formats: formats)
        let requests = Self.mixedRequests(vocab: local.spec.vocabSize)
        let alone = try requests.map { try local.generator.generate($0) }
        local.generator.transformer.backend.microBatchOverlap = overlap
        // Ample pool, small token budget: chunked prefill, shared prefixes, one pass per step.
        let (together, stats) = try Self.runTogether(requests, engine: engine(local, batchTokens: 48, blocks: 1024), lateFrom: 32)
        for index in requests.indices { Self.assertSame(together[index], alone[index], "\(name) \(label) request \(index)") }
        if local.spec.rope.dependsOnSequenceLength {
            // Dynamic RoPE: a prompt's keys depend on its length, so no prefix is shared.
            XCTAssertEqual(stats.prefixHitTokens, 0, "\(name): a prefix was shared under dynamic RoPE")
        } else {
            XCTAssertGreaterThan(stats.prefixHitTokens, 0, "\(name): the shared prefix was never reused")
        }
        XCTAssertEqual(stats.running, 0)
        XCTAssertEqual(stats.blocksUsed, 0, "\(name): blocks leaked")
        let overlapped = local.generator.transformer.backend.overlappedDispatches
        if overlap != .off && !local.spec.moeLayerIndices.isEmpty {
            XCTAssertGreaterThan(overlapped, 0, "\(name): no micro-batch was sent while the other was in flight")
        } else {
            XCTAssertEqual(overlapped, 0, "\(name)")
        }
        print("\(name) \(label): 64 requests in \(stats.steps) steps, prefix hit rate \(stats.prefixHitRate)")
    }

    func testPreemptedRequestsAreRecomputedWithTheSameResult() throws {
        for name in ["mixtral", "llama4", "gpt_oss", "llama4_text"] { try assertPreemptedRequestsRecomputeTheSame(name) }
    }

    /// Under a sliding window on every layer (the Mistral fixture: 4 positions) a sequence holds only
    /// the blocks its window reaches. Five requests that would need 65 blocks with whole-context
    /// caches share a pool of 20 without a single preemption; the blocks they let go are reused by
    /// the others at once (so reading one would change a result), and each equals the request alone.
    func testSlidingWindowSequencesHoldOnlyTheirWindow() throws {
        let local = try LocalEngine(directory: Self.fixture("mistral"))
        XCTAssertEqual(local.spec.cacheGroups, [KVCacheGroup(layers: [0, 1, 2], reach: CacheReach(window: 4))])
        try assertLongRequestsNeedNoPreemption(local, "mistral", seed: 11, blocks: 20)
    }

    /// Five requests of 20–48 prompt tokens and 150 generated run together in a pool of `blocks`
    /// without a preemption, each equal to itself alone, leaking no block.
    func assertLongRequestsNeedNoPreemption(_ local: LocalEngine, _ name: String, seed: UInt64, blocks: Int,
                                            file: StaticString = #filePath, line: UInt = #line) throws {
        var random = SeededGenerator(seed: seed)
        let requests = (0..<5).map { index in
            GenerationRequest(prompt: (0..<(20 + 7 * index)).map { _ in Int(random.next() % UInt64(local.spec.vocabSize)) },
                              maxTokens: 150, logprobs: 2)
        }
        let alone = try requests.map { try local.generator.generate($0) }
        let (together, stats) = try Self.runTogether(requests, engine: engine(local, batchTokens: 64, blocks: blocks))
        XCTAssertEqual(stats.preemptions, 0, "\(name): sequences kept blocks their window no longer reaches",
                       file: file, line: line)
        for index in requests.indices {
            Self.assertSame(together[index], alone[index], "\(name) request \(index)", file: file, line: line)
        }
        XCTAssertEqual(stats.blocksUsed, 0, "\(name): blocks leaked", file: file, line: line)
    }

    /// gpt-oss mixes sliding layers (window 4 in the fixture) with full ones: each kind gets its own
    /// block table (KV cache groups, one pool). The sliding layers' tables hold a window's worth of
    /// blocks while the full layer's keeps every position. Five requests needing 180 blocks with
    /// whole-context tables for every layer fit a pool of 90 without a preemption (each needs at
    /// most 12 + 2 + 2), and each equals the request alone.
    func testMixedSlidingAndFullLayersKeepAWindowInTheSlidingTables() throws {
        let local = try LocalEngine(directory: Self.fixture("gpt_oss"))
        let sliding = CacheReach(window: 4)
        XCTAssertEqual(local.spec.cacheGroups, [KVCacheGroup(layers: [0], reach: sliding),
                                                KVCacheGroup(layers: [2], reach: sliding),
                                                KVCacheGroup(layers: [1], reach: CacheReach())])
        XCTAssertEqual(local.spec.cacheBlocksAtMost(positions: 48 + 150), 13 + 2 + 2)
        XCTAssertEqual(local.spec.cacheGroupSummary, "3 KV cache groups of 1 layer: 2 × window 4, 1 × whole context")
        try assertLongRequestsNeedNoPreemption(local, "gpt_oss", seed: 12, blocks: 90)
    }

    /// Layers of short reach get their blocks chunk by chunk while a prompt is read, so prompts
    /// read together compete for blocks mid-prompt. Random mixes of long prompts in pools from
    /// just one request's worth upwards, under windows of 20 and 40 (the Mistral fixture's weights
    /// with wider windows) and token budgets from 16 to 256: every request completes and equals
    /// itself alone, and no block leaks.
    func testLongPromptsCompetingForBlocksOfSlidingLayersAllComplete() throws {
        let local = try LocalEngine(directory: Self.fixture("mistral"))
        var random = SeededGenerator(seed: 13)
        for window in [20, 40] {
            var spec = local.spec
            for layer in spec.layers.indices { spec.layers[layer].attention.slidingWindow = window }
            let transformer = Transformer(spec: spec, weights: local.model.dense, backend: local.generator.transformer.backend)
            let alone = Generator(transformer)
            for trial in 0..<12 {
                let requests = (0..<(2 + trial % 6)).map { _ in
                    GenerationRequest(prompt: (0..<(30 + Int(random.next() % 150))).map { _ in Int(random.next() % 300) },
                                      maxTokens: 1 + Int(random.next() % 20), logprobs: 2)
                }
                let least = requests.map { spec.cacheBlocksAtMost(positions: $0.prompt.count + $0.maxTokens) }.max() ?? 1
                let engine = try InferenceEngine(transformer: transformer, configuration: EngineConfiguration(
                    maxBatchTokens: [16, 32, 64, 128, 256][trial % 5], maxRunning: 64, maxWaiting: 100,
                    kvCacheBlocks: least + Int(random.next() % 10)))
                let (together, stats) = try Self.runTogether(requests, engine: engine)
                for (index, request) in requests.enumerated() {
                    Self.assertSame(together[index], try alone.generate(request), "window \(window) trial \(trial) request \(index)")
                }
                XCTAssertEqual(stats.blocksUsed, 0, "window \(window) trial \(trial): blocks leaked")
            }
        }
    }

    /// A preempted request's generated tokens are recomputed in a prompt-sized chunk, yet keep
    /// their role (and so, under AMX, their kernels): the results must not change.
    func assertPreemptedRequestsRecomputeTheSame(_ name: String, label: String = "", formats: WeightFormats = WeightFormats()) throws {
        let local = try LocalEngine(directory: Self.fixture(name), formats: formats)
        // Short prompts, long outputs: admitted together, they outgrow the pool while decoding.
        var random = SeededGenerator(seed: 7)
        let requests = (0..<16).map { index in
            GenerationRequest(prompt: (0..<(5 + index)).map { _ in Int(random.next() % UInt64(local.spec.vocabSize)) },
                              maxTokens: 60 + 2 * index, sampling: index % 4 == 1 ? .init(temperature: 0.8, seed: 3) : .init(),
                              logprobs: 2)
        }
        let alone = try requests.map { try local.generator.generate($0) }
        // The largest request needs (20 + 90) / 16 → 7 blocks; together they need over 100.
        let (together, stats) = try Self.runTogether(requests, engine: engine(local, batchTokens: 64, blocks: 24))
        XCTAssertGreaterThan(stats.preemptions, 0, "\(name): the pool never ran dry")
        for index in requests.indices { Self.assertSame(together[index], alone[index], "\(name) \(label) request \(index)") }
        XCTAssertEqual(stats.blocksUsed, 0, "\(name): blocks leaked")
        print("\(name) \(label): \(stats.preemptions) preemptions, all 16 requests correct")
    }

    /// Under AMX, cached blocks computed from generated tokens (decode kernels) are not reused for
    /// the same tokens as a prompt (tile kernels): a follow-up whose prompt holds the first
    /// answer reuses only the blocks of the first prompt, and equals itself alone.
    func testBlocksOfGeneratedTokensAreNotReusedAsPrompt() throws {
        let saved = MatmulKernels.current
        defer { MatmulKernels.use(saved) }
        try XCTSkipUnless(MatmulKernels.use(.amxBF16), "this CPU (or kernel) has no AMX")
        let local = try LocalEngine(directory: Self.fixture("mixtral-bf16"))
        let first = GenerationRequest(prompt: (0..<20).map { ($0 * 31 + 7) % local.spec.vocabSize }, maxTokens: 30)
        let engine = try engine(local, batchTokens: 512, blocks: 64)
        let (answer, _) = try Self.runTogether([first], engine: engine)
        let followUp = GenerationRequest(prompt: first.prompt + (try XCTUnwrap(answer[0]?.tokens.prefix(28))), maxTokens: 8, logprobs: 2)
        let (together, stats) = try Self.runTogether([followUp], engine: engine)
        Self.assertSame(together[0], try local.generator.generate(followUp), "follow-up")
        // Block 0 (positions 0–15) is all prompt in both; blocks 1 and 2 held generated tokens the first time.
        XCTAssertEqual(stats.prefixHitTokens, 16)
    }

    func testSecondRequestWithTheSamePrefixSkipsItsPrefill() throws {
        let local = try LocalEngine(directory: Self.fixture("qwen3_moe"))
        let prompt = (0..<70).map { ($0 * 37 + 11) % local.spec.vocabSize }
        let request = GenerationRequest(prompt: prompt, maxTokens: 8, logprobs: 2)
        let alone = try local.generator.generate(request)
        let engine = try engine(local, batchTokens: 512, blocks: 64)
        let (first, _) = try Self.runTogether([request], engine: engine)
        let (second, stats) = try Self.runTogether([request], engine: engine)
        Self.assertSame(first[0], alone, "first")
        Self.assertSame(second[0], alone, "after a prefix-cache hit")
        // (70 - 1) / 16 = 4 full blocks can be reused; the last prompt token is always computed.
        XCTAssertEqual(second[0]?.timings.cachedPromptTokens, 64)
        XCTAssertEqual(stats.prefixHitTokens, 64)
        XCTAssertGreaterThan(stats.blocksCached, 0, "finished sequences' full blocks stay cached")
        XCTAssertEqual(stats.blocksUsed, 0)
    }

    func testShortPromptGetsItsFirstTokenWhileALongOneIsStillPrefilling() throws {
        let local = try LocalEngine(directory: Self.fixture("mixtral"))
        let engine = try engine(local, batchTokens: 32, blocks: 64)
        var firstTokenStep: [String: Int] = [:]
        var step = 0
        for (label, length) in [("long", 200), ("short", 5)] {
            try engine.add(GenerationRequest(prompt: Array(repeating: 7, count: length), maxTokens: 2)) { event in
                if case .token = event, firstTokenStep[label] == nil { firstTokenStep[label] = step }
            }
        }
        while try engine.step() { step += 1 }
        let short = try XCTUnwrap(firstTokenStep["short"]), long = try XCTUnwrap(firstTokenStep["long"])
        XCTAssertEqual(short, 0, "the short prompt must be read in the first step")
        XCTAssertGreaterThanOrEqual(long, 200 / 32, "the long prompt takes several chunks")
    }

    func testCancelledSequenceStopsAndFreesItsBlocks() throws {
        let local = try LocalEngine(directory: Self.fixture("mixtral"))
        let requests = (0..<4).map { GenerationRequest(prompt: Array(repeating: $0 + 1, count: 30), maxTokens: 40) }
        let (results, stats) = try Self.runTogether(requests, engine: engine(local, batchTokens: 64, blocks: 64),
                                                    cancelAfterTokens: [1: 3, 2: 0])
        XCTAssertEqual(results[1]?.finishReason, "cancelled")
        XCTAssertLessThanOrEqual(results[1]?.tokens.count ?? 99, 4)
        XCTAssertEqual(results[2]?.tokens.count, 0)
        XCTAssertEqual(results[0]?.tokens.count, 40)
        XCTAssertEqual(results[0]?.tokens, try local.generator.generate(requests[0]).tokens)
        XCTAssertEqual(stats.blocksUsed, 0)
        XCTAssertEqual(stats.running + stats.waiting, 0)
    }

    func testFullQueueIsBusyAndImpossibleRequestsAreRefusedAtOnce() throws {
        let local = try LocalEngine(directory: Self.fixture("mixtral"))
        let engine = try InferenceEngine(transformer: local.generator.transformer, configuration: EngineConfiguration(
            maxBatchTokens: 64, maxRunning: 4, maxWaiting: 2, kvCacheBlocks: 8))
        let request = GenerationRequest(prompt: [1, 2, 3], maxTokens: 4)
        try engine.add(request) { _ in }
        try engine.add(request) { _ in }
        XCTAssertThrowsError(try engine.add(request) { _ in }) { error in
            XCTAssertEqual((error as? EngineError)?.kind, .busy, "\(error)")
        }
        // 8 blocks hold 128 positions.
        XCTAssertThrowsError(try engine.validate(GenerationRequest(prompt: Array(repeating: 1, count: 100), maxTokens: 40))) { error in
            XCTAssertEqual((error as? EngineError)?.kind, .badRequest)
            XCTAssertTrue("\(error)".contains("--kv-cache-memory"), "\(error)")
        }
        XCTAssertThrowsError(try engine.validate(GenerationRequest(prompt: [1], maxTokens: 300))) { error in
            XCTAssertTrue("\(error)".contains("context length of 256"), "\(error)")
        }
        XCTAssertThrowsError(try engine.validate(GenerationRequest(prompt: [local.spec.vocabSize], maxTokens: 1))) { error in
            XCTAssertTrue("\(error)".contains("outside the vocabulary"), "\(error)")
        }
        while try engine.step() {}
        XCTAssertEqual(engine.stats.blocksUsed, 0)
    }
}
