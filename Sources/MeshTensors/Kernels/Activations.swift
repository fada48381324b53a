import Foundation

/// SiLU (swish): x · sigmoid(x).
@inline(__always) public func silu(_ x: Float) -> Float { x / (1 + expf(-x)) }

@inline(__always) public func sigmoid(_ x: Float) -> Float { 1 / (1 + expf(-x)) }

/// gate[i] = silu(gate[i]) · up[i] (the SwiGLU of every supported architecture).
public func siluMultiply(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { gate[i] = silu(gate[i]) * up[i] }
}

/// In-place softmax of one row whose denominator also holds exp(`sink`), a logit with no value
/// (gpt-oss's attention sinks: the row may sum to less than one).
public func softmax(_ x: UnsafeMutablePointer<Float>, count: Int, sink: Float) {
    var maximum = sink
    for i in 0..<count { maximum = max(maximum, x[i]) }
    var sum = exp(sink - maximum)
    for i in 0..<count {
        x[i] = exp(x[i] - maximum)
        sum += x[i]
    }
    for i in 0..<count { x[i] /= sum }
}

/// In-place softmax of one row, computed stably (max subtracted).
public func softmax(_ x: UnsafeMutablePointer<Float>, count: Int) {
    guard count > 0 else { return }
    var maximum = -Float.infinity
    for i in 0..<count { maximum = max(maximum, x[i]) }
    var sum: Float = 0
    for i in 0..<count {
        x[i] = expf(x[i] - maximum)
        sum += x[i]
    }
    let inverse = 1 / sum
    for i in 0..<count { x[i] *= inverse }
}

/// log-softmax of one row into `out` (for logprobs).
public func logSoftmax(_ x: UnsafePointer<Float>, count: Int, into out: UnsafeMutablePointer<Float>) {
    var maximum = -Float.infinity
    for i in 0..<count { maximum = max(maximum, x[i]) }
    var sum: Double = 0
    for i in 0..<count { sum += Double(expf(x[i] - maximum)) }
    let logSum = maximum + Float(log(sum))
    for i in 0..<count { out[i] = x[i] - logSum }
}

/// Indices of the `k` largest values, largest first; ties go to the lower index (as torch.topk on CPU).
public func topK(_ values: UnsafePointer<Float>, count: Int, k: Int) -> [Int] {
    var chosen: [Int] = []
    chosen.reserveCapacity(k)
    for i in 0..<count {
        let v = values[i]
        if chosen.count < k {
            chosen.append(i)
        } else if v > values[chosen[k - 1]] {
            chosen[k - 1] = i
        } else {
            continue
        }
        var j = chosen.count - 1
        while j > 0, values[chosen[j]] > values[chosen[j - 1]] {
            chosen.swapAt(j, j - 1)
            j -= 1
        }
    }
    return chosen
}
