import MeshModels

/// One request run to completion through the batching engine (a batch of one): the
/// `generate --model` command, tests and benchmarks. Same code path as serving.
public final class Generator<Backend: ExpertBackend> {
    public let transformer: Transformer<Backend>

    public init(_ transformer: Transformer<Backend>) { self.transformer = transformer }

    public func generate(_ request: GenerationRequest, onToken: (Int) -> Void = { _ in }) throws -> GenerationResult {
        // Blocks for this request alone (the engine's `validate` refuses what overflows).
        let (positions, overflow) = request.prompt.count.addingReportingOverflow(request.maxTokens)
        let blockCount = overflow ? 1 : max(1, transformer.spec.cacheBlocksAtMost(positions: positions))
        let engine = try InferenceEngine(transformer: transformer, configuration: EngineConfiguration(
            maxBatchTokens: 512, maxRunning: 1, maxWaiting: 1, kvCacheBlocks: blockCount))
        var result = GenerationResult()
        var outcome: Result<Bool, Error> = .success(false)
        try withoutActuallyEscaping(onToken) { onToken in
            try engine.add(request) { event in
                if case .token(let token, _) = event { onToken(token) }
                outcome = Result { try result.absorb(event) }
            }
            while case .success(false) = outcome {
                guard try engine.step() else {
                    throw EngineError(.internalError, "the engine stopped before the request finished")
                }
            }
        }
        _ = try outcome.get()
        return result
    }
}
