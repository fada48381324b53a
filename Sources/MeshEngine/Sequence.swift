import Foundation
import MeshModels

/// One request inside the engine: its tokens so far, how many of them are in the KV cache,
/// the cache blocks it holds (a table per KV cache group), its sampler and its consumer.
final class Sequence {
    let id: Int
    let request: GenerationRequest
    /// Prompt, then every generated token. The last generated token is not yet in the cache.
    private(set) var tokens: [Int]
    /// Positions 0 ..< computed have their keys and values in `tables` (as far as each group's
    /// layers still look back).
    var computed = 0
    /// One block table per KV cache group: position p lives in block `tables[g].blocks[p / blockSize]`.
    var tables: [BlockTable] = []
    var sampler: Sampler
    let emit: (SequenceEvent) -> Void
    let isCancelled: () -> Bool
    /// Prompt logprobs gathered chunk by chunk (sent once the whole prompt is read).
    var promptLogprobs: [TokenLogprobs] = []
    /// Positions whose logits rows were recorded already (recomputation does not repeat them).
    var recordedLogitRows = 0
    var timings = SequenceTimings()
    /// In a step whose later pipeline stages have not answered yet: not scheduled, preempted or
    /// dropped until it is back.
    var inFlight = false
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

/// A sequence's blocks in one KV cache group. The first `released` went back to the pool (out of
/// the group's reach; attention never reads them again) but stay listed with the generation they
/// had, so the blocks after them still join the prefix cache under their parent.
struct BlockTable {
    var blocks: [Int] = []
    var generations: [Int] = []
    var released = 0

    /// The blocks this table still holds a reference to.
    var held: [Int] { Array(blocks[released...]) }

    mutating func append(_ block: Int, generation: Int) {
        blocks.append(block)
        generations.append(generation)
    }
}
