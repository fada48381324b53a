import Foundation
import MeshEngine
import MeshModels
import MeshTensors
import XCTest

/// Pipeline stages in one process: the layers split over stages (each with its own KV cache
/// holding only its layers), every step cut into micro-batches. No result may change.
final class PipelineStagesTests: XCTestCase {
    /// The later stages as transformers of this process, each with its own cache: what
    /// `expertmesh stage` processes do, without the network.
    final class InProcessStages: LaterStages {
        let microBatches: Int
        let stepsInFlight: Int
        var cacheEpoch = 0
        private let stages: [(transformer: Transformer<LocalExpertBackend>, cache: PagedKVCache)]
        private var results: [Int: Matrix] = [:]
        private var nextTicket = 0
        private(set) var dispatched = 0
        /// The most micro-batches sent on and not yet collected at once.
        private(set) var mostInFlight = 0

        init(_ local: LocalEngine, layers: [Range<Int>], microBatches: Int, stepsInFlight: Int, blocks: Int) throws {
            self.microBatches = microBatches
            self.stepsInFlight = stepsInFlight
            let base = local.generator.transformer
            stages = try layers.map { share in
                (Transformer(spec: base.spec, weights: base.weights, backend: base.backend, heldLayers: share),
                 try PagedKVCache(spec: base.spec, blockCount: blocks, layers: share))
            }
        }

        func dispatch(_ x: Matrix, batch: ForwardBatch) throws -> Int {
            for stage in stages { try stage.transformer.runLayers(x, batch: batch, cache: stage.cache) }
            nextTicket += 1
            dispatched += 1
            results[nextTicket] = x
            mostInFlight = max(mostInFlight, results.count)
            return nextTicket
        }

        func collect(_ ticket: Int) throws -> Matrix {
            try XCTUnwrap(results.removeValue(forKey: ticket))
        }
    }

    /// Stage 0's engine over `stages` stages of `local`'s model.
    func pipelinedEngine(_ local: LocalEngine, stages count: Int, microBatches: Int, stepsInFlight: Int = 1,
                         blocks: Int = 1024, batchTokens: Int = 48) throws -> (InferenceEngine<LocalExpertBackend>, InProcessStages) {
        let shares = try local.spec.stageLayers(count)
        let later = try InProcessStages(local, layers: Array(shares.dropFirst()), microBatches: microBatches,
                                        stepsInFlight: stepsInFlight, blocks: blocks)
        let base = local.generator.transformer
        let first = Transformer(spec: base.spec, weights: base.weights, backend: base.backend, heldLayers: shares[0],
                                laterStages: later)
        let engine = try InferenceEngine(transformer: first, configuration: EngineConfiguration(
            maxBatchTokens: batchTokens, maxRunning: 64, maxWaiting: 1000, kvCacheBlocks: blocks))
        return (engine, later)
    }

    /// Mixed requests (chunked prefill, shared prefixes, sampling, prompt logprobs) through up to
    /// 3 stages, 3 steps in flight and 3 micro-batches per step, on every fixture: each equals
    /// itself alone in one process, tokens and logprobs.
    func testStagesAndMicroBatchesChangeNoResultOnEveryArchitecture() throws {
        for name in BatchingTests.architectures {
            let local = try LocalEngine(directory: BatchingTests.fixture(name))
            let stages = min(3, local.spec.layerCount)
            guard stages >= 2 else { continue }
            let requests = BatchingTests.mixedRequests(vocab: local.spec.vocabSize, count: 24)
            let alone = try requests.map { try local.generator.generate($0) }
            let (engine, later) = try pipelinedEngine(local, stages: stages, microBatches: 3, stepsInFlight: 3)
            let (together, stats) = try BatchingTests.runTogether(requests, engine: engine, lateFrom: 16)
            for index in requests.indices {
                BatchingTests.assertSame(together[index], alone[index], "\(name) \(stages) stages request \(index)")
            }
            XCTAssertGreaterThan(later.dispatched, stats.steps, "\(name): steps were not cut into micro-batches")
            XCTAssertEqual(stats.blocksUsed, 0, "\(name): blocks leaked")
        }
    }

    /// One stage per layer, as many steps in flight, and more micro-batches than tokens in a step.
    func testOneStagePerLayerAndTinySteps() throws {
        let local = try LocalEngine(directory: BatchingTests.fixture("llama4_text-behemoth"))
        let requests = BatchingTests.mixedRequests(vocab: local.spec.vocabSize, count: 8)
        let alone = try requests.map { try local.generator.generate($0) }
        let (engine, _) = try pipelinedEngine(local, stages: local.spec.layerCount, microBatches: 16,
                                          stepsInFlight: local.spec.layerCount, batchTokens: 5)
        let (together, _) = try BatchingTests.runTogether(requests, engine: engine)
        for index in requests.indices { BatchingTests.assertSame(together[index], alone[index], "request \(index)") }
    }

    /// Steps in flight with a pool too small for all: sequences in flight are never preempted (the
    /// stages are writing their blocks), others are and are recomputed; cancelled ones stop; every
    /// result equals itself alone and no block leaks.
    func testStepsInFlightSurvivePreemptionAndCancellation() throws {
        let local = try LocalEngine(directory: BatchingTests.fixture("mixtral"))
        // Short prompts, long outputs: admitted together, they outgrow the pool while decoding.
        var random = SeededGenerator(seed: 7)
        let requests = (0..<16).map { index in
            GenerationRequest(prompt: (0..<(5 + index)).map { _ in Int(random.next() % UInt64(local.spec.vocabSize)) },
                              maxTokens: 60 + 2 * index, logprobs: 2)
        }
        let alone = try requests.map { try local.generator.generate($0) }
        let (engine, later) = try pipelinedEngine(local, stages: 2, microBatches: 1, stepsInFlight: 2, blocks: 24,
                                                  batchTokens: 64)
        let cancelled = [3: 20, 8: 1]
        let (together, stats) = try BatchingTests.runTogether(requests, engine: engine, cancelAfterTokens: cancelled)
        for index in requests.indices where cancelled[index] == nil {
            BatchingTests.assertSame(together[index], alone[index], "request \(index)")
        }
        for index in cancelled.keys { XCTAssertEqual(together[index]?.finishReason, "cancelled", "request \(index)") }
        XCTAssertGreaterThan(stats.preemptions, 0, "the pool was large enough: nothing was tested")
        XCTAssertEqual(later.mostInFlight, 2, "a second step was never begun while one was in the later stages")
        XCTAssertEqual(stats.blocksUsed, 0, "blocks leaked")
        XCTAssertFalse(engine.hasWork)
    }

    /// A later stage that lost its cache (its epoch moved): running requests fail with a clear
    /// error, cached prefixes are forgotten, and the same prompt afterwards is computed afresh.
    func testAStageThatLostItsCacheFailsRunningRequestsAndForgetsPrefixes() throws {
        let local = try LocalEngine(directory: BatchingTests.fixture("mixtral"))
        let (engine, later) = try pipelinedEngine(local, stages: 2, microBatches: 2)
        let prompt = Array(1...40)
        let request = GenerationRequest(prompt: prompt, maxTokens: 30, logprobs: 1)
        let alone = try local.generator.generate(request)
        var failure: EngineError?
        var done = GenerationResult()
        try engine.add(request) { event in
            if case .failed(let error) = event { failure = error }
            _ = try? done.absorb(event)
        }
        for _ in 0..<5 { try engine.step() }
        later.cacheEpoch += 1
        while try engine.step() {}
        XCTAssertEqual(failure?.kind, .unavailable)
        XCTAssertTrue(failure?.description.contains("pipeline stage restarted") == true, "\(String(describing: failure))")
        XCTAssertEqual(engine.stats.blocksCached, 0, "cached prefixes were kept")

        var result = GenerationResult()
        var finished = false
        try engine.add(request) { event in finished = (try? result.absorb(event)) ?? false }
        while try engine.step() {}
        XCTAssertTrue(finished)
        XCTAssertEqual(engine.stats.prefixHitTokens, 0, "a prefix computed before the restart was reused")
        BatchingTests.assertSame(result, alone, "after the restart")
    }

    func testSplitCutsRowsEvenlyAndKeepsEachSequencesPositions() {
        var batch = ForwardBatch()
        batch.append([7], start: 30, blockTables: [[4, 5]], promptLength: 3)
        batch.append(ArraySlice(0..<10), start: 0, blockTables: [[1]], promptLength: 10)
        batch.logitRows = [0, 10]
        let parts = batch.split(into: 3)
        XCTAssertEqual(parts.map(\.rows), [0..<3, 3..<7, 7..<11])
        XCTAssertEqual(parts[0].batch.segments.map(\.start), [30, 0])
        XCTAssertEqual(parts[0].batch.tokens, [7, 0, 1])
        XCTAssertEqual(parts[1].batch.segments.map(\.start), [2])
        XCTAssertEqual(parts[2].batch.tokens, [6, 7, 8, 9])
        XCTAssertEqual(parts[2].batch.segments.first?.blockTables, [[1]])
        XCTAssertTrue(parts.allSatisfy { $0.batch.logitRows.isEmpty })
        XCTAssertEqual(batch.split(into: 40).count, 11, "never an empty micro-batch")
    }
}
