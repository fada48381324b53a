import MeshTensors

/// The decoder forward pass, the same for every supported architecture:
/// x = embed(tokens); per layer: x += attn(norm(x)); x += ffn(norm(x)); logits = lm_head(norm(x)).
/// One pass runs every token of a step, whichever sequences they belong to: the dense parts on
/// [T, H] at once, attention per sequence against its own cache blocks, and one expert exchange
/// per MoE layer for all T tokens (two, of half the rows each, when the step runs as two
/// micro-batches that take turns). The feed-forward of a MoE layer routes here and sends routed
/// work to an `ExpertBackend`; the shared expert (if any) runs while that work is in flight.
public final class Transformer<Backend: ExpertBackend> {
    public let spec: ModelSpec
    public let weights: DenseWeights
    public let backend: Backend
    /// Set when shared experts and dense FFN layers run on the backend too, as slices routed
    /// like experts (`coordinator --offload-dense`); nil: they run here.
    public let offloadedDense: DenseSlices?
    /// The layers this process runs (all of them but in a pipeline of coordinators).
    public let heldLayers: Range<Int>
    /// The pipeline stages that run the layers after `heldLayers` (nil: there are none).
    public let laterStages: (any LaterStages)?
    /// Under `MicroBatchOverlap.auto`: which steps run faster in two micro-batches.
    public let overlapTuner = OverlapTuner()
    /// Whether the layers held here send work to the backend (else two micro-batches hide nothing).
    private lazy var exchangesWork = offloadedDense != nil || heldLayers.contains { spec.layers[$0].moe != nil }

    public init(spec: ModelSpec, weights: DenseWeights, backend: Backend, offloadedDense: DenseSlices? = nil,
                heldLayers: Range<Int>? = nil, laterStages: (any LaterStages)? = nil) {
        self.spec = spec
        self.weights = weights
        self.backend = backend
        self.offloadedDense = offloadedDense
        self.heldLayers = heldLayers ?? 0..<spec.layerCount
        self.laterStages = laterStages
    }

    /// Runs the batch's tokens at their positions, writing their keys and values to `cache`.
    /// Returns logits [batch.logitRows.count, vocab], one row per requested row, in that order.
    public func forward(_ batch: ForwardBatch, cache: PagedKVCache) throws -> Matrix {
        try finish(try begin(batch, cache: cache))
    }

    /// A step begun: its hidden states after this process's layers, or the later stages' tickets.
    public struct PendingForward {
        let batch: ForwardBatch
        let hidden: Matrix?
        let tickets: [(rows: Range<Int>, ticket: Int)]
    }

    /// Runs this process's layers over the batch and, with later stages, sends it on without
    /// waiting for them (the engine begins another step meanwhile); `finish` gives the logits.
    public func begin(_ batch: ForwardBatch, cache: PagedKVCache) throws -> PendingForward {
        guard let stages = laterStages else {
            let x = try embed(batch)
            try runLayers(x, batch: batch, cache: cache)
            return PendingForward(batch: batch, hidden: x, tickets: [])
        }
        // Micro-batches (`microBatches` > 1) let this process run one while later stages run the
        // earlier ones. Rows are computed alone, so the cut changes no result; a sequence cut in
        // two is safe, as every stage runs the micro-batches in order.
        var tickets: [(rows: Range<Int>, ticket: Int)] = []
        for (rows, part) in batch.split(into: stages.microBatches) {
            let x = try embed(part)
            try runLayers(x, batch: part, cache: cache)
            tickets.append((rows, try stages.dispatch(x, batch: part)))
        }
        return PendingForward(batch: batch, hidden: nil, tickets: tickets)
    }

    /// The logits of a step begun: waits for the later stages, if any, then runs the head.
    public func finish(_ pending: PendingForward) throws -> Matrix {
        if let x = pending.hidden { return head(x, batch: pending.batch) }
        guard let stages = laterStages else { throw ModelError("internal: a step sent to later stages that are gone") }
        let x = Matrix(rows: pending.batch.tokens.count, columns: spec.hiddenSize)   // [T, H] after the last layer
        for (rows, ticket) in pending.tickets {
            let part = try stages.collect(ticket)                              // [rows, H]
            for row in rows { x.row(row).update(from: part.row(row - rows.lowerBound), count: x.columns) }
        }
        return head(x, batch: pending.batch)
    }

    /// x [T, H]: the batch's token embeddings.
    private func embed(_ batch: ForwardBatch) throws -> Matrix {
        let (t, h) = (batch.tokens.count, spec.hiddenSize)
        let x = Matrix(rows: t, columns: h)                   // residual stream [T, H]
        for (row, token) in batch.tokens.enumerated() {
            guard token >= 0, token < spec.vocabSize else {
                throw ModelError("token id \(token) is outside the vocabulary (0..<\(spec.vocabSize))")
            }
            convertToFloat(weights.embedding.data + token * h * weights.embedding.dtype.byteSize,
                           dtype: weights.embedding.dtype, count: h, into: x.row(row))
        }
        return x
    }

    /// logits [logitRows, vocab] = lm_head(norm(x [T, H])) for the rows that ask for them.
    private func head(_ x: Matrix, batch: ForwardBatch) -> Matrix {
        let rows = batch.logitRows.count
        let finalInput = Matrix(rows: rows, columns: spec.hiddenSize)       // [rows, H]
        for (index, row) in batch.logitRows.enumerated() {
            spec.normalize(x.row(row), rows: 1, weight: weights.finalNorm, into: finalInput.row(index))
        }
        let logits = Matrix(rows: rows, columns: spec.vocabSize)   // [rows, vocab]
        let generated = batch.generatedRows()
        matmul(finalInput.data, rows: rows, weights.lmHead, into: logits.data, generated: batch.logitRows.map { generated[$0] })
        return logits
    }

    /// x [T, H] (the residual stream) through the layers this process holds, in place. With a
    /// backend that overlaps micro-batches, the batch runs as two (`runOverlapped`); under `auto`,
    /// where the tuner has found that faster.
    public func runLayers(_ x: Matrix, batch: ForwardBatch, cache: PagedKVCache) throws {
        guard x.rows >= 2, backend.microBatchOverlap != .off, exchangesWork else {
            return try runWhole(x, batch: batch, cache: cache)
        }
        guard backend.microBatchOverlap == .auto else { return try runOverlapped(x, batch: batch, cache: cache) }
        let group = OverlapTuner.Group(rows: x.rows, decodeOnly: batch.segments.allSatisfy { $0.start >= $0.promptLength })
        let split = overlapTuner.split(group)
        let start = ContinuousClock.now
        try split ? runOverlapped(x, batch: batch, cache: cache) : runWhole(x, batch: batch, cache: cache)
        overlapTuner.record(group, split: split, secondsPerRow: (ContinuousClock.now - start).seconds / Double(x.rows))
    }

    private func runWhole(_ x: Matrix, batch: ForwardBatch, cache: PagedKVCache) throws {
        let whole = MicroBatch(batch, residual: x)
        for index in heldLayers {
            attend(index, whole, cache: cache)
            try finishFeedForward(try beginFeedForward(index, whole), whole)
        }
    }

    /// The batch cut in two micro-batches, A (the first rows) and B, each one's routed experts in
    /// flight while the other computes (SGLang's two-batch overlap). Per layer: A attends and sends
    /// its tokens; B finishes the layer before, attends and sends; A's replies are combined while
    /// B's are in flight, and A's next layer runs while they still are. A sequence cut in two is
    /// safe: A attends first at every layer, so B's rows find A's keys and values in the cache.
    /// Rows are computed alone, so the cut changes no result.
    private func runOverlapped(_ x: Matrix, batch: ForwardBatch, cache: PagedKVCache) throws {
        let parts = batch.split(into: 2).map { rows, part in
            let residual = Matrix(rows: rows.count, columns: x.columns)        // [rows, H]
            residual.data.update(from: x.row(rows.lowerBound), count: residual.count)
            return (rows, MicroBatch(part, residual: residual))
        }
        let (a, b) = (parts[0].1, parts[1].1)
        var inFlight: (a: FeedForwardInFlight?, b: FeedForwardInFlight?) = (nil, nil)
        do {
            for index in heldLayers {
                attend(index, a, cache: cache)
                inFlight.a = try beginFeedForward(index, a)
                if let previous = inFlight.b { inFlight.b = nil; try finishFeedForward(previous, b) }
                attend(index, b, cache: cache)
                inFlight.b = try beginFeedForward(index, b)
                if let current = inFlight.a { inFlight.a = nil; try finishFeedForward(current, a) }
            }
            if let last = inFlight.b { inFlight.b = nil; try finishFeedForward(last, b) }
        } catch {
            // A failed step leaves no exchange behind whose replies nobody will take.
            for pending in [inFlight.a, inFlight.b].compactMap({ $0?.exchange }) { backend.abandon(pending) }
            throw error
        }
        for (rows, part) in parts { x.row(rows.lowerBound).update(from: part.x.data, count: part.x.count) }
    }

    /// One micro-batch on its way through the layers: its rows' residual stream and scratch.
    private final class MicroBatch {
        let batch: ForwardBatch
        let layout: RowLayout
        let x: Matrix          // [t, H] residual stream
        let normed: Matrix     // [t, H] normalised input of a sublayer (the experts read it until combined)
        let branch: Matrix     // [t, H] a sublayer's output

        init(_ batch: ForwardBatch, residual x: Matrix) {
            self.batch = batch
            layout = batch.rowLayout()
            self.x = x
            normed = Matrix(rows: x.rows, columns: x.columns)
            branch = Matrix(rows: x.rows, columns: x.columns)
        }
    }

    /// x += attn(norm(x)); then normed = norm(x), the feed-forward's input.
    private func attend(_ index: Int, _ part: MicroBatch, cache: PagedKVCache) {
        let (layer, layerSpec, t) = (weights.layers[index], spec.layers[index], part.x.rows)
        spec.normalize(part.x.data, rows: t, weight: layer.inputNorm, into: part.normed.data)
        switch layer.attention {
        case .standard(let weights):
            Attention(spec: spec, layerSpec: layerSpec.attention, weights: weights, layer: index)
                .forward(part.normed, batch: part.batch, layout: part.layout, cache: cache, into: part.branch)
        case .latent(let weights):
            LatentAttention(spec: spec, layerSpec: layerSpec.attention, weights: weights, layer: index)
                .forward(part.normed, batch: part.batch, layout: part.layout, cache: cache, into: part.branch)
        }
        part.x.add(part.branch)
        spec.normalize(part.x.data, rows: t, weight: layer.postAttentionNorm, into: part.normed.data)
    }

    /// A layer's feed-forward begun: its routed work in flight (nil: none), and the shared expert
    /// still to run here.
    private struct FeedForwardInFlight {
        var exchange: Backend.Pending?
        var shared: (mlp: MLPWeights, gate: LinearWeight?)?
    }

    /// Starts the feed-forward of normed [t, H]: a dense MLP computes into branch at once; a MoE
    /// layer routes and sends its routed work (with the shared experts' slices under `offloadedDense`).
    private func beginFeedForward(_ index: Int, _ part: MicroBatch) throws -> FeedForwardInFlight {
        let (x, generated) = (part.normed, part.layout.generated)
        let slices = offloadedDense?.slices(of: spec.layers[index])
        switch weights.layers[index].feedForward {
        case .dense(let mlp):
            guard let slices else {
                mlp.forward(x.data, rows: x.rows, generated: generated, into: part.branch.data, accumulate: false)
                return FeedForwardInFlight()
            }
            // Every token to every slice of the FFN, weight 1: their partial sums are the FFN's output.
            let all = TokenRoute(experts: slices.ranges.indices.map { slices.firstId + $0 },
                                 weights: [Float](repeating: 1, count: slices.ranges.count))
            let request = ExpertRequest(layer: index, input: x, routes: Array(repeating: all, count: x.rows),
                                        placement: .output, generated: generated)
            return FeedForwardInFlight(exchange: try backend.dispatch(request))
        case .moe(let weights):
            guard let moe = spec.layers[index].moe else {
                throw ModelError("internal: layer \(index) has expert weights but no routing")
            }
            let logits = Matrix(rows: x.rows, columns: moe.expertCount)   // [T, E]
            matmul(x.data, rows: x.rows, weights.router, into: logits.data, generated: generated)
            logits.addToEveryRow(weights.routerBias)
            var routes = moe.route(logits: logits, correctionBias: weights.scoreCorrectionBias)
            if let slices {
                // The shared experts' slices join every token's route, weighted by its gate if gated.
                let gates = weights.sharedGate.map { sigmoidGate($0, x, generated: generated) }
                for row in routes.indices {
                    routes[row].experts += slices.ranges.indices.map { slices.firstId + $0 }
                    routes[row].weights += [Float](repeating: gates?[row] ?? 1, count: slices.ranges.count)
                }
            }
            let request = ExpertRequest(layer: index, input: x, routes: routes, placement: moe.weightPlacement,
                                        generated: generated)
            return FeedForwardInFlight(exchange: try backend.dispatch(request),
                                       shared: slices == nil ? weights.shared.map { ($0, weights.sharedGate) } : nil)
        }
    }

    /// Ends the feed-forward begun: branch [t, H] = shared expert (run while the routed work is in
    /// flight) + Σ routed experts; x += branch.
    private func finishFeedForward(_ inFlight: FeedForwardInFlight, _ part: MicroBatch) throws {
        let (x, out, generated) = (part.normed, part.branch, part.layout.generated)
        if let exchange = inFlight.exchange {
            out.zero()
            if let shared = inFlight.shared {
                shared.mlp.forward(x.data, rows: x.rows, generated: generated, into: out.data, accumulate: false)
                if let gate = shared.gate { scaleBySigmoidGate(out, gate, x, generated: generated) }
            }
            try backend.combine(exchange, into: out)
        }
        part.x.add(out)
    }

    /// rows of out [T, H] *= sigmoid(x [T, H] · gate [1, H]) (Qwen 2 MoE's shared expert gate).
    private func scaleBySigmoidGate(_ out: Matrix, _ gate: LinearWeight, _ x: Matrix, generated: [Bool]) {
        for (row, scale) in sigmoidGate(gate, x, generated: generated).enumerated() {
            let target = out.row(row)
            for j in 0..<out.columns { target[j] *= scale }
        }
    }

    /// sigmoid(x · gate) per row: the shared expert's weight for each token (Qwen 2 MoE).
    private func sigmoidGate(_ gate: LinearWeight, _ x: Matrix, generated: [Bool]) -> [Float] {
        let scores = Matrix(rows: x.rows, columns: 1)                 // [T, 1]
        matmul(x.data, rows: x.rows, gate, into: scores.data, generated: generated)
        return (0..<x.rows).map { sigmoid(scores.data[$0]) }
    }
}
