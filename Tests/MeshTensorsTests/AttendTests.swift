import MeshTensors
import XCTest

final class AttendTests: XCTestCase {
    /// GroupedAttention against softmax(q·k · scale [+ sink]) · V in Double, for head widths on and off the
    /// 64-column path, with and without sinks, positions in scattered slots of a strided cache.
    func testGroupedAttentionMatchesTheDefinition() {
        var state: UInt64 = 11
        func random() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2000) / 1000 - 1
        }
        for (width, heads, span, sinks) in [(64, 4, 37, false), (128, 2, 5, true), (80, 3, 19, false), (24, 1, 1, true),
                                            (64, 1, 200, true)] {
            let (slotCount, stride, offset) = (span * 2 + 3, width * 3 + 5, width + 2)   // a kv head at `offset`
            let keys = (0..<(slotCount * stride)).map { _ in random() }
            let values = (0..<(slotCount * stride)).map { _ in random() }
            let queries = (0..<(heads * width)).map { _ in 2 * random() }
            let sinkLogits: [Float]? = sinks ? (0..<(heads + 1)).map { _ in random() } : nil
            let slots = (0..<span).map { (($0 * 7) % slotCount + slotCount) % slotCount }
            let scale = 1 / Float(width).squareRoot()
            var scores = [Float](repeating: .nan, count: heads * span)
            var out = [Float](repeating: .nan, count: heads * width)
            keys.withUnsafeBufferPointer { k in
                values.withUnsafeBufferPointer { v in
                    slots.withUnsafeBufferPointer { visible in
                        GroupedAttention(keys: k.baseAddress! + offset, keyStride: stride, values: v.baseAddress! + offset,
                                         valueStride: stride, width: width, scale: scale)
                            .attend(queries, heads: heads, slots: visible, sinks: sinkLogits, firstHead: 1, scores: &scores,
                                    into: &out)
                    }
                }
            }
            for head in 0..<heads {
                let logits = slots.map { slot in
                    (0..<width).reduce(0.0) { $0 + Double(queries[head * width + $1]) * Double(keys[offset + slot * stride + $1]) }
                        * Double(scale)
                }
                let sink = sinkLogits.map { Double($0[1 + head]) }
                let maximum = max(logits.max()!, sink ?? -.infinity)
                let weights = logits.map { exp($0 - maximum) }
                let total = weights.reduce(0, +) + (sink.map { exp($0 - maximum) } ?? 0)
                for column in 0..<width {
                    let expected = zip(slots, weights).reduce(0.0) {
                        $0 + $1.1 / total * Double(values[offset + $1.0 * stride + column])
                    }
                    XCTAssertEqual(Double(out[head * width + column]), expected, accuracy: 1e-5,
                                   "width \(width), head \(head) of \(heads), span \(span), sinks \(sinks), column \(column)")
                }
            }
        }
    }
}
