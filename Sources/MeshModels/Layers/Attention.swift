import Foundation
import MeshTensors

/// Self-attention for T new tokens at positions p0 ..< p0+T, reading and extending the KV cache.
struct Attention {
    let spec: ModelSpec
    let layerSpec: AttentionSpec
    let weights: AttentionWeights
    let layer: Int

    /// x [T, H] (normalised) → out [T, H] (o_proj output).
    func forward(_ x: Matrix, cache: KVCache, into out: Matrix) {
        let (t, d) = (x.rows, spec.headDim)
        let (heads, kvHeads) = (spec.headCount, spec.kvHeadCount)
        let p0 = cache.length
        let q = Matrix(rows: t, columns: heads * d)        // [T, heads·D]
        let k = Matrix(rows: t, columns: kvHeads * d)      // [T, kvHeads·D]
        let v = Matrix(rows: t, columns: kvHeads * d)
        matmul(x.data, rows: t, [(weights.q, q.data), (weights.k, k.data), (weights.v, v.data)])

        for row in 0..<t {
            let position = p0 + row
            if layerSpec.qkNorm == .rmsBeforeRope {
                rmsNorm(q.row(row), rows: heads, width: d, weight: weights.qNorm, eps: spec.rmsNormEps, into: q.row(row))
                rmsNorm(k.row(row), rows: kvHeads, width: d, weight: weights.kNorm, eps: spec.rmsNormEps, into: k.row(row))
            }
            if layerSpec.usesRope {
                spec.rope.apply(q.row(row), heads: heads, position: position)
                spec.rope.apply(k.row(row), heads: kvHeads, position: position)
            }
            if layerSpec.qkNorm == .l2AfterRope {
                rmsNorm(q.row(row), rows: heads, width: d, weight: nil, eps: spec.rmsNormEps, into: q.row(row))
                rmsNorm(k.row(row), rows: kvHeads, width: d, weight: nil, eps: spec.rmsNormEps, into: k.row(row))
            }
            if let tuning = layerSpec.temperatureTuning {
                // Llama 4 NoPE layers: scale q by log1p(floor((pos + 1) / floor_scale)) · attn_scale + 1 (f32).
                let scale = Float(log1p(Float(floor(Float(position + 1) / Float(tuning.floorScale))))) * Float(tuning.attnScale) + 1
                let qRow = q.row(row)
                for j in 0..<(heads * d) { qRow[j] *= scale }
            }
        }
        cache.append(layer: layer, keys: k, values: v)
        let keys = cache.keys[layer], values = cache.values[layer]

        let context = Matrix(rows: t, columns: heads * d)   // [T, heads·D]
        let group = heads / kvHeads
        let scale = 1 / Float(d).squareRoot()
        // Threads only pay off once there is real work (scores and sums: ~ T · heads · span · D).
        let work = t * heads * (p0 + t) * d
        Parallel.forRanges(t * heads, minimumPerTask: work > 1 << 20 ? 4 : t * heads) { range in
            var scores = [Float](repeating: 0, count: p0 + t)
            for task in range {
                let (row, head) = (task / heads, task % heads)
                let position = p0 + row
                // Causal; with chunking only keys in the query's chunk of positions.
                let first = layerSpec.chunkSize.map { (position / $0) * $0 } ?? 0
                let query = q.row(row) + head * d
                let kvOffset = (head / group) * d
                let span = position - first + 1
                scores.withUnsafeMutableBufferPointer { s in
                    for j in 0..<span { s[j] = dot(query, keys.row(first + j) + kvOffset, d) * scale }
                    softmax(s.baseAddress!, count: span)
                    let target = context.row(row) + head * d
                    for j in 0..<span { axpy(s[j], values.row(first + j) + kvOffset, target, d) }
                }
            }
        }
        matmul(context.data, rows: t, weights.o, into: out.data)
    }
}
