import Foundation
import MeshModels
import MeshTensors

/// Limits of the scheduler and the size of the KV cache pool.
public struct EngineConfiguration: Sendable {
    /// Tokens in one forward pass: every running decode token plus prefill chunks.
    public var maxBatchTokens: Int
    /// Sequences admitted at once (each holds KV cache blocks).
    public var maxRunning: Int
    /// Requests allowed to wait for admission; more are refused as busy.
    public var maxWaiting: Int
    /// KV cache blocks of `PagedKVCache.blockSize` positions in the pool.
    public var kvCacheBlocks: Int

    public init(maxBatchTokens: Int = 512, maxRunning: Int = 64, maxWaiting: Int = 256, kvCacheBlocks: Int) {
        self.maxBatchTokens = maxBatchTokens
        self.maxRunning = maxRunning
        self.maxWaiting = maxWaiting
        self.kvCacheBlocks = kvCacheBlocks
    }

    /// Blocks that fit in `bytes` of KV cache for this model.
    public static func blocks(forBytes bytes: Int, spec: ModelSpec) -> Int {
        max(1, bytes / PagedKVCache.bytesPerBlock(spec))
    }
}

/// What the engine is doing, for logs, `/health` and tests.
public struct EngineStats: Sendable, Equatable {
    public init() {}
    public var running = 0
    public var waiting = 0
    public var blocksTotal = 0
    /// Blocks held by sequences.
    public var blocksUsed = 0
    /// Cached prefix blocks no sequence holds (reusable, evicted when blocks run out).
    public var blocksCached = 0
    public var steps = 0
    public var promptTokens = 0
    public var generatedTokens = 0
    /// Prompt tokens looked up in the prefix cache, and those found there.
    public var prefixQueryTokens = 0
    public var prefixHitTokens = 0
    public var preemptions = 0

    public var prefixHitRate: Double { prefixQueryTokens == 0 ? 0 : Double(prefixHitTokens) / Double(prefixQueryTokens) }
}

/// Continuous batching (in the spirit of vLLM and SGLang) over one model and one KV cache pool.
///
/// Each `step()` takes the next token of every decoding sequence plus prefill chunks of the
/// others (shortest remaining prompt first), up to `maxBatchTokens`, and runs ONE forward pass
/// over all of them. Requests are admitted in arrival order when the blocks for their tokens can
/// be had; when the pool runs dry during decode the newest sequence is preempted (its blocks
/// freed, its tokens kept) and recomputed later. Full blocks are shared between sequences with
/// the same prefix. Not thread-safe: one thread (the engine thread) makes every call.
public final class InferenceEngine<Backend: ExpertBackend> {
    public let transformer: Transformer<Backend>
    public let configuration: EngineConfiguration
    public let cache: PagedKVCache
    private var blocks: BlockManager
    private var groups: [KVCacheGroup] { cache.groups }
    private var waiting: [Sequence] = []
    private var running: [Sequence] = []
    private var nextId = 1
    private var counters = EngineStats()
    /// The later pipeline stages' cache epoch the running sequences were computed under.
    private var stagesEpoch: Int?

    public var spec: ModelSpec { transformer.spec }

    public init(transformer: Transformer<Backend>, configuration: EngineConfiguration) throws {
        guard configuration.maxBatchTokens >= 1, configuration.maxRunning >= 1, configuration.maxWaiting >= 0 else {
            throw EngineError(.badRequest, "max batch tokens and max running must be at least 1, max waiting at least 0")
        }
        self.transformer = transformer
        self.configuration = configuration
        cache = try PagedKVCache(spec: transformer.spec, blockCount: configuration.kvCacheBlocks,
                                 layers: transformer.heldLayers)
        blocks = BlockManager(blockCount: configuration.kvCacheBlocks)
        stagesEpoch = transformer.laterStages?.cacheEpoch
    }

    public var stats: EngineStats {
        var stats = counters
        stats.running = running.count
        stats.waiting = waiting.count
        stats.blocksTotal = blocks.blockCount
        stats.blocksUsed = blocks.usedCount
        stats.blocksCached = blocks.cachedIdleCount
        return stats
    }

    public var hasWork: Bool { !running.isEmpty || !waiting.isEmpty || !inFlight.isEmpty }

    /// Queues a request; events go to `emit` on this thread. Throws `.badRequest` for a request
    /// that can never run and `.busy` when the waiting queue is full.
    public func add(_ request: GenerationRequest, isCancelled: @escaping () -> Bool = { false },
                    emit: @escaping (SequenceEvent) -> Void) throws {
        try validate(request)
        guard waiting.count < configuration.maxWaiting else {
            throw EngineError(.busy, "the server is busy: \(waiting.count) requests are already waiting; retry shortly")
        }
        waiting.append(Sequence(id: nextId, request: request, emit: emit, isCancelled: isCancelled))
        nextId += 1
    }

    /// The checks that do not depend on the engine's state, in one place.
    public func validate(_ request: GenerationRequest) throws {
        guard !request.prompt.isEmpty else { throw EngineError(.badRequest, "the prompt is empty: give at least one token") }
        guard request.maxTokens >= 1 else { throw EngineError(.badRequest, "max_tokens must be at least 1") }
        if let problem = request.sampling.validationError { throw EngineError(.badRequest, problem) }
        if let bad = request.prompt.first(where: { $0 < 0 || $0 >= spec.vocabSize }) {
            throw EngineError(.badRequest, "prompt token \(bad) is outside the vocabulary (0..<\(spec.vocabSize))")
        }
        // Compared by subtraction: a huge max_tokens must not overflow.
        if let limit = spec.maxPositions, request.maxTokens > limit - request.prompt.count {
            throw EngineError(.badRequest, "prompt (\(request.prompt.count) tokens) + max_tokens (\(request.maxTokens)) "
                              + "exceeds the model's context length of \(limit) tokens")
        }
        let (positions, overflow) = request.prompt.count.addingReportingOverflow(request.maxTokens)
        let needed = overflow ? Int.max : spec.cacheBlocksAtMost(positions: positions)
        guard needed <= configuration.kvCacheBlocks else {
            throw EngineError(.badRequest, "prompt (\(request.prompt.count) tokens) + max_tokens (\(request.maxTokens)) "
                              + "needs \(overflow ? "more" : "\(needed)") KV cache blocks of \(PagedKVCache.blockSize) "
                              + "positions, more than the whole pool holds (\(configuration.kvCacheBlocks)); lower "
                              + "max_tokens or start the server with a larger --kv-cache-memory")
        }
    }

    /// Fails every request (running and waiting) with `error`, freeing their blocks.
    public func failAll(_ error: EngineError) {
        for sequence in running + waiting {
            releaseBlocks(of: sequence)
            sequence.emit(.failed(error))
        }
        running = []
        waiting = []
    }

    // MARK: one step

    private typealias Scheduled = [(sequence: Sequence, rows: Range<Int>, logitPositions: [Int])]

    /// A step whose later pipeline stages have not answered yet.
    private struct StepInFlight {
        var scheduled: Scheduled
        var pending: Transformer<Backend>.PendingForward
    }

    private var inFlight: [StepInFlight] = []
    /// Steps kept in flight: one per pipeline stage (each stage runs another cohort of sequences).
    private var depth: Int { max(1, transformer.laterStages?.stepsInFlight ?? 1) }

    /// Schedules and runs one forward pass. Returns false when there was nothing to run.
    /// A failing forward pass fails the sequences of that step (others are untouched) and throws.
    /// With later pipeline stages, a step is begun over the sequences not in flight and, until
    /// `depth` steps are in flight, the next call begins another; then the oldest is finished.
    @discardableResult
    public func step() throws -> Bool {
        dropCancelled()
        forgetIfStagesLostTheirCache()
        admitWaiting()
        if inFlight.count < depth, try beginStep(), inFlight.count < depth { return true }
        guard !inFlight.isEmpty else { return false }
        try finishOldestStep()
        return true
    }

    /// Schedules the sequences not in flight and begins their forward pass; false if none could go.
    private func beginStep() throws -> Bool {
        var batch = ForwardBatch()
        var scheduled: Scheduled = []
        var budget = configuration.maxBatchTokens

        // Decode tokens first, oldest sequence first, so running sequences never stall.
        var index = 0
        while index < running.count, budget > 0 {
            let sequence = running[index]
            index += 1
            guard !sequence.inFlight, sequence.pending == 1 else { continue }
            guard makeRoom(for: sequence) else { continue }
            schedule(sequence, count: 1, into: &batch, &scheduled)
            budget -= 1
        }
        // Prefill chunks: shortest remaining prompt first, so a short prompt's first token does
        // not wait behind a long one (which still advances every step it gets budget). Groups of
        // short reach get their blocks chunk by chunk: a chunk shrinks to the blocks to be had.
        let prefilling = running.filter { !$0.inFlight && $0.pending > 1 }.sorted { ($0.pending, $0.id) < ($1.pending, $1.id) }
        for sequence in prefilling where budget > 0 {
            let count = grow(sequence, to: sequence.computed + min(sequence.pending, budget)) - sequence.computed
            guard count > 0 else { continue }
            schedule(sequence, count: count, into: &batch, &scheduled)
            budget -= count
        }
        if batch.isEmpty, inFlight.isEmpty, running.count > 1 {
            // Every running sequence is reading its prompt and none can get a block (the admission
            // headroom makes this rare; never seen in the tests): the newest makes way, since one
            // sequence alone always fits (`validate` saw to that) and the engine must not stall.
            preempt(running[running.count - 1])
            return try beginStep()
        }
        guard !batch.isEmpty else { return false }

        let now = ContinuousClock.now
        for entry in scheduled where entry.sequence.firstScheduled == nil {
            entry.sequence.firstScheduled = now
            entry.sequence.timings.queueSeconds = (now - entry.sequence.arrival).seconds
        }
        do {
            inFlight.append(StepInFlight(scheduled: scheduled, pending: try transformer.begin(batch, cache: cache)))
        } catch {
            throw fail(scheduled, error)
        }
        scheduled.forEach { $0.sequence.inFlight = true }
        return true
    }

    /// Waits for the oldest step in flight and advances its sequences (those still running).
    private func finishOldestStep() throws {
        let step = inFlight.removeFirst()
        step.scheduled.forEach { $0.sequence.inFlight = false }
        let logits: Matrix
        do {
            logits = try transformer.finish(step.pending)
        } catch {
            throw fail(step.scheduled, error)
        }
        counters.steps += 1
        var logitRow = 0
        for entry in step.scheduled {
            let rows = entry.logitPositions.count
            if running.contains(where: { $0 === entry.sequence }) {
                advance(entry.sequence, by: entry.rows.count, logits: logits, firstRow: logitRow,
                        positions: entry.logitPositions)
            }
            logitRow += rows
        }
    }

    /// Fails the step's sequences that are still running with `error`; returns it as an `EngineError`.
    private func fail(_ scheduled: Scheduled, _ error: Error) -> EngineError {
        let failure = error as? EngineError ?? EngineError(.unavailable, "\(error)")
        for entry in scheduled where running.contains(where: { $0 === entry.sequence }) {
            finish(entry.sequence, failure: failure)
        }
        return failure
    }

    private func schedule(_ sequence: Sequence, count: Int, into batch: inout ForwardBatch, _ scheduled: inout Scheduled) {
        let start = sequence.computed
        let rows = batch.append(sequence.tokens[start ..< start + count], start: start,
                                blockTables: sequence.tables.map(\.blocks), promptLength: sequence.promptCount)
        let positions = sequence.logitPositions(start ..< start + count)
        batch.logitRows += positions.map { rows.lowerBound + $0 - start }
        scheduled.append((sequence, rows, positions))
    }

    /// After a step: the sequence's new positions are cached; full blocks join the prefix cache;
    /// logits become prompt logprobs, recorded rows and, at the end, the next token.
    private func advance(_ sequence: Sequence, by count: Int, logits: Matrix, firstRow: Int, positions: [Int]) {
        let size = PagedKVCache.blockSize
        let before = sequence.computed
        sequence.computed += count
        // Each full block joins the prefix cache under its parent, in every group.
        for block in (before / size) ..< (sequence.computed / size) {
            let promptTokens = BlockManager.promptTokens(blockStart: block * size, promptLength: sequence.promptCount)
            for (group, table) in sequence.tables.enumerated() {
                let parent = block > 0 ? (table.blocks[block - 1], table.generations[block - 1]) : (-1, 0)
                blocks.register(table.blocks[block], group: group, parent: parent,
                                tokens: sequence.tokens[block * size ..< (block + 1) * size], promptTokens: promptTokens)
            }
        }
        releaseOutOfReach(sequence)
        let vocab = spec.vocabSize
        var recorded: [Float] = []
        for (offset, position) in positions.enumerated() {
            let row = logits.row(firstRow + offset)
            if let n = sequence.request.promptLogprobs, position + 1 < sequence.promptCount,
               position == sequence.promptLogprobs.count {
                sequence.promptLogprobs.append(TokenLogprobs(logits: row, count: vocab, chosen: sequence.tokens[position + 1], n: n))
            }
            if sequence.request.recordLogits, position >= sequence.recordedLogitRows {
                recorded += UnsafeBufferPointer(start: row, count: vocab)
                sequence.recordedLogitRows = position + 1
            }
        }
        guard sequence.computed == sequence.tokens.count else {
            if !recorded.isEmpty { sequence.emit(.logits(recorded, rows: recorded.count / vocab)) }
            return
        }
        if sequence.request.promptLogprobs != nil, sequence.generatedCount == 0 {
            sequence.emit(.promptLogprobs(sequence.promptLogprobs))
        }
        if sequence.generatedCount == 0 { counters.promptTokens += sequence.promptCount }
        // The last cached position's logits give the next token.
        let last = logits.row(firstRow + positions.count - 1)
        let token = sequence.sampler.sample(last, count: vocab, history: sequence.tokens[...],
                                            promptCount: sequence.promptCount)
        let entry = sequence.request.logprobs.map { TokenLogprobs(logits: last, count: vocab, chosen: token, n: $0) }
        sequence.append(token)
        counters.generatedTokens += 1
        let now = ContinuousClock.now
        if sequence.firstToken == nil {
            sequence.firstToken = now
            sequence.timings.prefillSeconds = (now - (sequence.firstScheduled ?? now)).seconds
        }
        let reason: FinishReason? = sequence.request.stopTokens.contains(token) ? .stop
            : sequence.generatedCount >= sequence.request.maxTokens ? .length : nil
        if !recorded.isEmpty { sequence.emit(.logits(recorded, rows: recorded.count / vocab)) }
        sequence.emit(.token(token, logprobs: entry))
        if let reason { finish(sequence, reason: reason) }
    }

    // MARK: admission, blocks, preemption

    private func admitWaiting() {
        while let sequence = waiting.first, running.count < configuration.maxRunning {
            guard admit(sequence) else { return }
            waiting.removeFirst()
            running.append(sequence)
        }
    }

    /// Gives the sequence blocks for its tokens, reusing cached prefix blocks (those every group
    /// has); false if the pool cannot hold it now (keeping a block of headroom per group for each
    /// running sequence's decode). Groups of short reach get only the blocks their reach holds at
    /// once; `grow` gives them the rest chunk by chunk.
    private func admit(_ sequence: Sequence) -> Bool {
        let size = PagedKVCache.blockSize
        let tokens = sequence.tokens[...]
        // Under dynamic RoPE a prompt's keys depend on its length: nothing is shared then.
        let reusable = sequence.needsEveryPromptRow || spec.rope.dependsOnSequenceLength ? 0 : (tokens.count - 1) / size
        let matched = groups.indices.map {
            blocks.match(tokens, group: $0, promptLength: sequence.promptCount, maximumBlocks: reusable)
        }
        let hit = matched.map(\.count).min() ?? 0
        sequence.tables = matched.map { shared in
            blocks.release(Array(shared[hit...]))
            var table = BlockTable()
            for block in shared[..<hit] { table.append(block, generation: blocks.generation(of: block)) }
            return table
        }
        sequence.computed = hit * size
        releaseOutOfReach(sequence)
        let all = (tokens.count + size - 1) / size
        let wanted = zip(groups, sequence.tables).map { group, table in
            min(all, group.reach.blocksHeldAtMost.map { table.released + $0 } ?? all)
        }
        let needed = zip(wanted, sequence.tables).reduce(0) { $0 + max(0, $1.0 - $1.1.blocks.count) }
        guard needed + running.count * groups.count <= blocks.availableCount else {
            releaseBlocks(of: sequence)
            sequence.computed = 0
            return false
        }
        for (group, count) in wanted.enumerated() {
            while sequence.tables[group].blocks.count < count { allocateBlock(&sequence.tables[group]) }
        }
        if sequence.generatedCount == 0 {
            counters.prefixQueryTokens += tokens.count
            counters.prefixHitTokens += sequence.computed
            sequence.timings.cachedPromptTokens = sequence.computed
        }
        return true
    }

    /// Makes sure the next position of a decoding sequence has a slot in every group, preempting
    /// the newest running sequences not in flight if the pool is dry. False if the sequence itself
    /// was preempted.
    private func makeRoom(for sequence: Sequence) -> Bool {
        while grow(sequence, to: sequence.computed + 1) == sequence.computed {
            guard let victim = running.last(where: { !$0.inFlight }) else { return false }
            preempt(victim)
            if victim === sequence { return false }
        }
        return true
    }

    /// Gives the sequence's tables blocks for positions up to `end` (exclusive) as far as the pool
    /// allows, one block index at a time across all groups (so no group takes what another needs
    /// for the same positions); returns the end reached.
    private func grow(_ sequence: Sequence, to end: Int) -> Int {
        let size = PagedKVCache.blockSize
        var covered = sequence.tables.map(\.blocks.count).min() ?? 0    // block indices every table has
        while covered * size < end {
            let lacking = sequence.tables.indices.filter { sequence.tables[$0].blocks.count <= covered }
            guard lacking.count <= blocks.availableCount else { break }
            for group in lacking { allocateBlock(&sequence.tables[group]) }
            covered += 1
        }
        return min(end, covered * size)
    }

    /// Appends a block from the pool to `table`; false when none is free or evictable.
    @discardableResult
    private func allocateBlock(_ table: inout BlockTable) -> Bool {
        guard let block = blocks.allocate() else { return false }
        table.append(block, generation: blocks.generation(of: block))
        return true
    }

    /// Frees the sequence's blocks and puts it first in line; it keeps its tokens and is
    /// recomputed (mostly from the prefix cache) when admitted again.
    private func preempt(_ sequence: Sequence) {
        running.removeAll { $0 === sequence }
        releaseBlocks(of: sequence)
        sequence.computed = 0
        sequence.timings.preemptions += 1
        counters.preemptions += 1
        waiting.insert(sequence, at: 0)
    }

    /// Gives back every block the sequence still holds.
    private func releaseBlocks(of sequence: Sequence) {
        for table in sequence.tables { blocks.release(table.held) }
        sequence.tables = []
    }

    /// In groups whose layers look back only so far (a sliding window, a chunk), the blocks no
    /// later query of the sequence can see go back to the pool: a long sequence holds a window's
    /// worth of them, not its whole length.
    private func releaseOutOfReach(_ sequence: Sequence) {
        for (group, members) in groups.enumerated() where !members.reach.isWholeContext {
            // The next query is at position `computed`; later ones see no further back.
            let firstVisible = members.reach.firstVisible(from: sequence.computed)
            let table = sequence.tables[group]
            let outOfReach = min(firstVisible / PagedKVCache.blockSize, table.blocks.count)
            guard outOfReach > table.released else { continue }
            blocks.release(Array(table.blocks[table.released ..< outOfReach]))
            sequence.tables[group].released = outOfReach
        }
    }

    /// A later pipeline stage that restarted holds none of the keys and values computed before:
    /// running sequences cannot go on (they fail, to be sent again) and no cached prefix is reused.
    private func forgetIfStagesLostTheirCache() {
        guard let epoch = transformer.laterStages?.cacheEpoch, epoch != stagesEpoch else { return }
        stagesEpoch = epoch
        let failure = EngineError(.unavailable, "a pipeline stage restarted and lost this request's KV cache; send it again")
        for sequence in running { finish(sequence, failure: failure) }
        blocks.forgetPrefixes()
    }

    private func dropCancelled() {
        for sequence in running + waiting where !sequence.inFlight && sequence.isCancelled() {
            finish(sequence, reason: .cancelled)
        }
    }

    private func finish(_ sequence: Sequence, reason: FinishReason? = nil, failure: EngineError? = nil) {
        running.removeAll { $0 === sequence }
        waiting.removeAll { $0 === sequence }
        releaseBlocks(of: sequence)
        if let failure {
            sequence.emit(.failed(failure))
            return
        }
        if let first = sequence.firstToken { sequence.timings.decodeSeconds = (ContinuousClock.now - first).seconds }
        sequence.emit(.finished(reason ?? .length, sequence.timings))
    }
}
