import MeshTensors

/// DeepSeek-V3's multi-head latent attention (MLA) for the T tokens of a step. The cache keeps per
/// token and layer only the normalised latent c [R] (in its key array) and the shared rotated key
/// k_rot [r] (in its value array), not per-head keys and values. Each head's keys and values are
/// `kv_b_proj` rows applied to c, so they are never expanded: the query is absorbed instead,
///   q_lat = W_UKᵀ · q_nope            [R]      (W_UK: the head's key rows of kv_b_proj, [n, R])
///   s_j   = (q_lat · c_j + q_rot · k_rot_j) · scale
///   out   = W_UV · Σ_j softmax(s)_j c_j  [v]      (W_UV: the head's value rows, [v, R])
/// which is transformers' expand-then-attend, summed in another order.
struct LatentAttention {
    let spec: ModelSpec
    let layerSpec: AttentionSpec
    let weights: LatentAttentionWeights
    let layer: Int

    /// x [T, H] (normalised) → out [T, H] (o_proj output).
    func forward(_ x: Matrix, batch: ForwardBatch, layout: RowLayout, cache: PagedKVCache, into out: Matrix) {
        guard let mla = layerSpec.latent else { return }
        let (t, heads) = (x.rows, spec.headCount)
        let (nope, rope, rank, valueDim) = (mla.nopeDim, mla.ropeDim, mla.kvRank, mla.valueDim)
        let queryWidth = nope + rope
        let generated = layout.generated

        let q = Matrix(rows: t, columns: heads * queryWidth)     // [T, heads·(n + r)]
        if let down = weights.queryDown, let norm = weights.queryDownNorm {
            let compressed = Matrix(rows: t, columns: down.outFeatures)   // [T, queryRank]
            matmul(x.data, rows: t, down, into: compressed.data, generated: generated)
            rmsNorm(compressed.data, rows: t, width: down.outFeatures, weight: norm, eps: spec.normEps,
                    into: compressed.data)
            matmul(compressed.data, rows: t, weights.query, into: q.data, generated: generated)
        } else {
            matmul(x.data, rows: t, weights.query, into: q.data, generated: generated)
        }
        let kv = Matrix(rows: t, columns: rank + rope)            // [T, R + r]: latent, then the rope key
        matmul(x.data, rows: t, weights.kvDown, into: kv.data, generated: generated)
        for row in 0..<t {
            let position = layout.positions[row]
            let length = max(batch.segments[layout.segment[row]].promptLength, position + 1)
            rmsNorm(kv.row(row), rows: 1, width: rank, weight: weights.kvDownNorm, eps: spec.normEps, into: kv.row(row))
            spec.rope.apply(kv.row(row) + rank, heads: 1, position: position, sequenceLength: length)
            for head in 0..<heads {
                let ropeQuery = q.row(row) + head * queryWidth + nope
                spec.rope.apply(ropeQuery, heads: 1, position: position, sequenceLength: length)
            }
            let slot = layout.slots[cache.group(ofLayer: layer)][row]
            cache.key(layer: layer, slot: slot).update(from: kv.row(row), count: rank)
            cache.value(layer: layer, slot: slot).update(from: kv.row(row) + rank, count: rope)
        }

        // Absorb each head's key rows into its query: q_lat [T, heads·R].
        let queryLatent = Matrix(rows: t, columns: heads * rank)
        let headQuery = Matrix(rows: t, columns: nope)          // [T, n]
        let headLatent = Matrix(rows: t, columns: rank)         // [T, R]
        for head in 0..<heads {
            for row in 0..<t { headQuery.row(row).update(from: q.row(row) + head * queryWidth, count: nope) }
            let keyRows = keyRowsTransposed(head, nope: nope, valueDim: valueDim)
            matmul(headQuery.data, rows: t, keyRows, into: headLatent.data, generated: generated)
            for row in 0..<t { (queryLatent.row(row) + head * rank).update(from: headLatent.row(row), count: rank) }
        }

        let contextLatent = Matrix(rows: t, columns: heads * rank)   // [T, heads·R]: Σ_j p_j c_j
        forEachQueryHead(heads: heads, valuesPerKey: rank + rope, batch: batch, layout: layout, reach: layerSpec.reach,
                         group: cache.group(ofLayer: layer)) { row, head, slots, s in
            let latentQuery = queryLatent.row(row) + head * rank
            let ropeQuery = q.row(row) + head * queryWidth + nope
            for j in 0..<slots.count {
                s[j] = (dot(latentQuery, cache.key(layer: layer, slot: slots[j]), rank)
                        + dot(ropeQuery, cache.value(layer: layer, slot: slots[j]), rope)) * mla.scale
            }
            softmax(s, count: slots.count)
            let target = contextLatent.row(row) + head * rank
            for j in 0..<slots.count { axpy(s[j], cache.key(layer: layer, slot: slots[j]), target, rank) }
        }

        // Each head's value rows on its context latent: context [T, heads·v].
        let context = Matrix(rows: t, columns: heads * valueDim)
        let headValues = Matrix(rows: t, columns: valueDim)     // [T, v]
        for head in 0..<heads {
            for row in 0..<t { headLatent.row(row).update(from: contextLatent.row(row) + head * rank, count: rank) }
            let valueRows = head * (nope + valueDim) + nope
            let valueRowsOfHead = weights.kvUp.outputs(valueRows ..< valueRows + valueDim)
            matmul(headLatent.data, rows: t, valueRowsOfHead, into: headValues.data, generated: generated)
            for row in 0..<t { (context.row(row) + head * valueDim).update(from: headValues.row(row), count: valueDim) }
        }
        matmul(context.data, rows: t, weights.o, into: out.data, generated: generated)
    }

    /// W_UKᵀ of `head` as a weight [out R, in n]: kv_b_proj's key rows of that head read transposed.
    private func keyRowsTransposed(_ head: Int, nope: Int, valueDim: Int) -> LinearWeight {
        let up = weights.kvUp
        let firstRow = head * (nope + valueDim)
        return LinearWeight(data: up.data + firstRow * up.leadingDimension * up.dtype.byteSize, dtype: up.dtype,
                            outFeatures: up.inFeatures, inFeatures: nope, layout: .inMajor,
                            leadingDimension: up.leadingDimension, owner: up.owner)
    }
}
