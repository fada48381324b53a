import MeshTensors

/// The decoder forward pass, the same for every supported architecture:
/// x = embed(tokens); per layer: x += attn(norm(x)); x += ffn(norm(x)); logits = lm_head(norm(x)).
/// One pass runs every token of a step, whichever sequences they belong to: the dense parts on
/// [T, H] at once, attention per sequence against its own cache blocks, and one expert exchange
/// per MoE layer for all T tokens. The feed-forward of a MoE layer routes here and sends routed
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

    /// x [T, H] (the residual stream) through the layers this process holds, in place.
    public func runLayers(_ x: Matrix, batch: ForwardBatch, cache: PagedKVCache) throws {
        let (t, h) = (x.rows, spec.hiddenSize)
        let layout = batch.rowLayout()
        let normed = Matrix(rows: t, columns: h)
        let branch = Matrix(rows: t, columns: h)
        for index in heldLayers {
            let (layer, layerSpec) = (weights.layers[index], spec.layers[index])
            spec.normalize(x.data, rows: t, weight: layer.inputNorm, into: normed.data)
            switch layer.attention {
            case .standard(let weights):
                Attention(spec: spec, layerSpec: layerSpec.attention, weights: weights, layer: index)
                    .forward(normed, batch: batch, layout: layout, cache: cache, into: branch)
            case .latent(let weights):
                LatentAttention(spec: spec, layerSpec: layerSpec.attention, weights: weights, layer: index)
                    .forward(normed, batch: batch, layout: layout, cache: cache, into: branch)
            }
            x.add(branch)
            spec.normalize(x.data, rows: t, weight: layer.postAttentionNorm, into: normed.data)
            try feedForward(index, layer, normed, generated: layout.generated, into: branch)
            x.add(branch)
        }
    }

    /// out [T, H] = dense MLP, or shared expert + Σ routed experts.
    private func feedForward(_ index: Int, _ layer: LayerWeights, _ x: Matrix, generated: [Bool], into out: Matrix) throws {
        let slices = offloadedDense?.slices(of: spec.layers[index])
        switch layer.feedForward {
        case .dense(let mlp):
            guard let slices else {
                return mlp.forward(x.data, rows: x.rows, generated: generated, into: out.data, accumulate: false)
            }
            // Every token to every slice of the FFN, weight 1: their partial sums are the FFN's output.
            let all = TokenRoute(experts: slices.ranges.indices.map { slices.firstId + $0 },
                                 weights: [Float](repeating: 1, count: slices.ranges.count))
            let request = ExpertRequest(layer: index, input: x, routes: Array(repeating: all, count: x.rows),
                                        placement: .output, generated: generated)
            let pending = try backend.dispatch(request)
            out.zero()
            try backend.combine(pending, into: out)
        case .moe(let weights):
            guard let moe = spec.layers[index].moe else { return }
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
            let request = ExpertRequest(layer: index, input: x, routes: routes, placement: moe.weightPlacement, generated: generated)
            let pending = try backend.dispatch(request)
            out.zero()
            if let shared = weights.shared, slices == nil {
                shared.forward(x.data, rows: x.rows, generated: generated, into: out.data, accumulate: false)
                if let gate = weights.sharedGate { scaleBySigmoidGate(out, gate, x, generated: generated) }
            }
            try backend.combine(pending, into: out)
        }
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
