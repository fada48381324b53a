import Foundation
import MeshTensors

/// Self-attention for the T tokens of a step, each sequence against its own cached positions.
struct Attention {
    let spec: ModelSpec
    let layerSpec: AttentionSpec
    let weights: AttentionWeights
    let layer: Int

    /// x [T, H] (normalised) → out [T, H] (o_proj output). Writes each row's key and value to
    /// its slot, then attends each row to positions ≤ its own of its sequence. Every row is
    /// computed alone (the same operations whatever else is in the step).
    func forward(_ x: Matrix, batch: ForwardBatch, layout: RowLayout,
                 cache: PagedKVCache, into out: Matrix) {
        let (t, d) = (x.rows, spec.headDim)
        let (heads, kvHeads) = (spec.headCount, spec.kvHeadCount)
        let q = Matrix(rows: t, columns: heads * d)        // [T, heads·D]
        let k = Matrix(rows: t, columns: kvHeads * d)      // [T, kvHeads·D]
        let v = Matrix(rows: t, columns: kvHeads * d)
        matmul(x.data, rows: t, [(weights.q, q.data), (weights.k, k.data), (weights.v, v.data)], generated: layout.generated)
        q.addToEveryRow(weights.qBias)
        k.addToEveryRow(weights.kBias)
        v.addToEveryRow(weights.vBias)

        for row in 0..<t {
            let position = layout.positions[row]
            switch layerSpec.qkNorm {
            case .rmsBeforeRope:
                rmsNorm(q.row(row), rows: heads, width: d, weight: weights.qNorm, eps: spec.normEps, into: q.row(row))
                rmsNorm(k.row(row), rows: kvHeads, width: d, weight: weights.kNorm, eps: spec.normEps, into: k.row(row))
            case .rmsAcrossHeadsBeforeRope:
                rmsNorm(q.row(row), rows: 1, width: heads * d, weight: weights.qNorm, eps: spec.normEps, into: q.row(row))
                rmsNorm(k.row(row), rows: 1, width: kvHeads * d, weight: weights.kNorm, eps: spec.normEps, into: k.row(row))
            case .none, .l2AfterRope:
                break
            }
            if let clip = layerSpec.clipQKV {
                for matrix in [(q, heads), (k, kvHeads), (v, kvHeads)] {
                    let values = matrix.0.row(row)
                    for j in 0..<(matrix.1 * d) { values[j] = min(max(values[j], -clip), clip) }
                }
            }
            if layerSpec.usesRope {
                // Dynamic NTK: prompt tokens take the prompt's length, generated ones their own (as transformers).
                let length = max(batch.segments[layout.segment[row]].promptLength, position + 1)
                spec.rope.apply(q.row(row), heads: heads, position: position, sequenceLength: length)
                spec.rope.apply(k.row(row), heads: kvHeads, position: position, sequenceLength: length)
            }
            if layerSpec.qkNorm == .l2AfterRope {
                rmsNorm(q.row(row), rows: heads, width: d, weight: nil, eps: spec.normEps, into: q.row(row))
                rmsNorm(k.row(row), rows: kvHeads, width: d, weight: nil, eps: spec.normEps, into: k.row(row))
            }
            if let tuning = layerSpec.temperatureTuning {
                // Llama 4 NoPE layers: scale q by log1p(floor((pos + 1) / floor_scale)) · attn_scale + 1 (f32).
                let scale = Float(log1p(Float(floor(Float(position + 1) / Float(tuning.floorScale))))) * Float(tuning.attnScale) + 1
                let qRow = q.row(row)
                for j in 0..<(heads * d) { qRow[j] *= scale }
            }
            let slot = layout.slots[cache.group(ofLayer: layer)][row]
            cache.key(layer: layer, slot: slot).update(from: k.row(row), count: kvHeads * d)
            cache.value(layer: layer, slot: slot).update(from: v.row(row), count: kvHeads * d)
        }

        let context = Matrix(rows: t, columns: heads * d)   // [T, heads·D]
        let group = heads / kvHeads
        let cacheGroup = cache.group(ofLayer: layer)
        forEachQueryHead(heads: heads, headsPerTask: group, valuesPerKey: d, batch: batch, layout: layout,
                         reach: layerSpec.reach, group: cacheGroup) { row, head, slots, scores in
            let kvOffset = (head / group) * d
            let attention = GroupedAttention(keys: cache.key(layer: layer, slot: 0) + kvOffset,
                                             keyStride: cache.keyWidth,
                                             values: cache.value(layer: layer, slot: 0) + kvOffset,
                                             valueStride: cache.valueWidth, width: d, scale: 1 / Float(d).squareRoot())
            attention.attend(q.row(row) + head * d, heads: group, slots: slots, sinks: weights.sinks, firstHead: head,
                             scores: scores, into: context.row(row) + head * d)
        }
        matmul(context.data, rows: t, weights.o, into: out.data, generated: layout.generated)
        out.addToEveryRow(weights.oBias)
    }
}

/// Runs `body(row, head, slots, scores)` for every query row and every `headsPerTask`-th head of a step (the
/// heads sharing a key/value head go together): `slots` are the slots of KV cache `group` the row's query
/// sees (causal; with chunking only its chunk, with a window only its last positions), `scores` has room for
/// `headsPerTask` times as many values. Threads pay off once there is ~64 K multiply-adds of work
/// (scores and sums: ~ Σ span · heads · `valuesPerKey`), so one sequence decoding spreads its heads too
/// (serial, its attention had the other threads wait for 5% of a decode step).
func forEachQueryHead(heads: Int, headsPerTask: Int = 1, valuesPerKey: Int, batch: ForwardBatch, layout: RowLayout,
                      reach: CacheReach, group: Int,
                      _ body: (Int, Int, UnsafeBufferPointer<Int>, UnsafeMutablePointer<Float>) -> Void) {
    let t = layout.positions.count
    let work = layout.positions.reduce(0) { $0 + ($1 + 1) } * heads * valuesPerKey
    let longest = (layout.positions.max() ?? 0) + 1
    precondition(heads % headsPerTask == 0, "\(heads) heads in groups of \(headsPerTask)")
    let tasksPerRow = heads / headsPerTask
    let minimum = work > 1 << 16 ? max(1, 4 / headsPerTask) : t * tasksPerRow
    Parallel.forRanges(t * tasksPerRow, minimumPerTask: minimum) { range in
        var scores = [Float](repeating: 0, count: longest * headsPerTask)
        var slots = [Int](repeating: 0, count: longest)
        var (previousRow, span) = (-1, 0)
        for task in range {
            let (row, head) = (task / tasksPerRow, task % tasksPerRow * headsPerTask)
            if row != previousRow {
                let position = layout.positions[row]
                let segment = batch.segments[layout.segment[row]]
                let first = reach.firstVisible(from: position)
                span = position - first + 1
                for j in 0..<span { slots[j] = segment.slot(first + j, group: group) }
                previousRow = row
            }
            slots.withUnsafeBufferPointer { visible in
                scores.withUnsafeMutableBufferPointer { s in
                    body(row, head, UnsafeBufferPointer(rebasing: visible[0..<span]), s.baseAddress!)
                }
            }
        }
    }
}
