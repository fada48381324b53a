import Foundation
import MeshModels

/// One request inside the engine: its tokens so far, how many of them are in the KV cache,
/// the cache blocks it holds, its sampler and its consumer.
final class Sequence {
    let id: Int
    let request: GenerationRequest
    /// Prompt, then every generated token. The last generated token is not yet in the cache.
    private(set) var tokens: [Int]
    /// Positions 0 ..< computed have their keys and values in `blocks`.
    var computed = 0
    /// The block table: position p lives in block `blocks[p / blockSize]`.
    var blocks: [Int] = []
    /// The first `releasedBlocks` entries of `blocks` went back to the pool (out of a sliding
    /// window) and hold `releasedBlock`.
    var releasedBlocks = 0
    static let releasedBlock = -1
    var sampler: Sampler
    let emit: (SequenceEvent) -> Void
    let isCancelled: () -> Bool
    /// Prompt logprobs gathered chunk by chunk (sent once the whole prompt is read).
    var promptLogprobs: [TokenLogprobs] = []
    /// Positions whose logits rows were recorded already (recomputation does not repeat them).
    var recordedLogitRows = 0
    var timings = SequenceTimings()
    let arrival = ContinuousClock.now
    var firstScheduled: ContinuousClock.Instant?
    var firstToken: ContinuousClock.Instant?

    init(id: Int, request: GenerationRequest, emit: @escaping (SequenceEvent) -> Void, isCancelled: @escaping () -> Bool) {
        self.id = id
        self.request = request
        tokens = request.prompt
        sampler = Sampler(request.sampling)
        self.emit = emit
        self.isCancelled = isCancelled
    }

    var promptCount: Int { request.prompt.count }
    var generatedCount: Int { tokens.count - promptCount }
    /// Tokens still to run through the model before the next token can be sampled.
    var pending: Int { tokens.count - computed }
    /// Blocks the whole request can ever need (the last generated token is never cached).
    var blocksAtMost: Int { (promptCount + request.maxTokens + PagedKVCache.blockSize - 1) / PagedKVCache.blockSize }
    /// Whether every prompt row's logits are still wanted (then the prefix cache cannot skip rows).
    var needsEveryPromptRow: Bool {
        (request.promptLogprobs != nil || request.recordLogits) && recordedLogitRows == 0 && promptLogprobs.isEmpty
    }

    func append(_ token: Int) { tokens.append(token) }

    /// Positions in `range` whose logits this sequence needs: prompt logprobs, recorded rows, and
    /// the last position once every token is in (its logits give the next token).
    func logitPositions(_ range: Range<Int>) -> [Int] {
        range.filter { position in
            (request.promptLogprobs != nil && position + 1 < promptCount && position >= promptLogprobs.count)
                || (request.recordLogits && position >= recordedLogitRows)
                || position == tokens.count - 1
        }
    }
}
