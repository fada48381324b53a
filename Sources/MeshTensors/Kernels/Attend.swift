/// One key/value head's attention for the query heads that share it (grouped-query attention).
///
/// `queries` [heads, width] and `out` [heads, width] are contiguous; the j-th visible position's key
/// and value start at `keys + slots[j] · keyStride` and `values + slots[j] · valueStride`. Each key is
/// loaded once for all the heads of the group, and each head sums its values in registers (per head and
/// position, the score was a dot product with a horizontal sum through a call and each value was added
/// into memory: 5.5% of an int8 decode step, 4.9% now).
/// Scores are `scale · q·k`, softmaxed per head (with `sinks[head]` as one more logit that takes weight
/// but adds no value, gpt-oss), then `out[h] = Σ_j p[h, j] · v_j`. `scores` has room for heads · span.
/// A head's result depends only on its query and the cache: the same whatever else the step holds.
public struct GroupedAttention {
    public let keys: UnsafePointer<Float>
    public let values: UnsafePointer<Float>
    public let keyStride: Int
    public let valueStride: Int
    public let width: Int
    public let scale: Float

    public init(keys: UnsafePointer<Float>, keyStride: Int, values: UnsafePointer<Float>, valueStride: Int, width: Int,
                scale: Float) {
        (self.keys, self.keyStride, self.values, self.valueStride) = (keys, keyStride, values, valueStride)
        (self.width, self.scale) = (width, scale)
    }

    public func attend(_ queries: UnsafePointer<Float>, heads: Int, slots: UnsafeBufferPointer<Int>, sinks: [Float]?,
                       firstHead: Int, scores: UnsafeMutablePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        let span = slots.count
        for (j, slot) in slots.enumerated() {
            let key = keys + slot * keyStride
            for head in 0..<heads { scores[head * span + j] = dot(queries + head * width, key, width) * scale }
        }
        for head in 0..<heads {
            if let sinks {
                softmax(scores + head * span, count: span, sink: sinks[firstHead + head])
            } else {
                softmax(scores + head * span, count: span)
            }
        }
        for head in 0..<heads { weightedValues(scores + head * span, slots: slots, into: out + head * width) }
    }

    /// out[width] = Σ_j p[j] · v_j, 64 columns at a time held in registers across the positions (adding each
    /// position into memory loaded and stored the sums every time). Each column adds in position order.
    private func weightedValues(_ p: UnsafePointer<Float>, slots: UnsafeBufferPointer<Int>,
                                into out: UnsafeMutablePointer<Float>) {
        var column = 0
        while column + 64 <= width {
            var sums = (SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>())
            for (j, slot) in slots.enumerated() {
                let value = UnsafeRawPointer(values + slot * valueStride + column)
                let weight = SIMD16<Float>(repeating: p[j])
                sums.0.addProduct(weight, value.loadUnaligned(as: SIMD16<Float>.self))
                sums.1.addProduct(weight, value.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self))
                sums.2.addProduct(weight, value.loadUnaligned(fromByteOffset: 128, as: SIMD16<Float>.self))
                sums.3.addProduct(weight, value.loadUnaligned(fromByteOffset: 192, as: SIMD16<Float>.self))
            }
            let target = UnsafeMutableRawPointer(out + column)
            target.storeBytes(of: sums.0, as: SIMD16<Float>.self)
            target.storeBytes(of: sums.1, toByteOffset: 64, as: SIMD16<Float>.self)
            target.storeBytes(of: sums.2, toByteOffset: 128, as: SIMD16<Float>.self)
            target.storeBytes(of: sums.3, toByteOffset: 192, as: SIMD16<Float>.self)
            column += 64
        }
        guard column < width else { return }
        (out + column).update(repeating: 0, count: width - column)
        for (j, slot) in slots.enumerated() {
            axpy(p[j], values + slot * valueStride + column, out + column, width - column)
        }
    }
}
