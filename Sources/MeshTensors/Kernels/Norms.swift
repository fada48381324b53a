import Foundation

/// RMSNorm over each row of x [rows, n]: y = x / sqrt(mean(x²) + eps) · weight.
/// `weight` nil gives Llama 4's weightless L2 norm on q and k.
public func rmsNorm(_ x: UnsafePointer<Float>, rows: Int, width n: Int, weight: [Float]?, eps: Float,
                    into y: UnsafeMutablePointer<Float>) {
    for r in 0..<rows {
        let row = x + r * n
        let out = y + r * n
        let meanSquare = dot(row, row, n) / Float(n)
        let scale = 1 / (meanSquare + eps).squareRoot()
        if let weight {
            for i in 0..<n { out[i] = row[i] * scale * weight[i] }
        } else {
            for i in 0..<n { out[i] = row[i] * scale }
        }
    }
}

/// LayerNorm without bias over each row of x [rows, n]: y = (x − mean) / sqrt(var + eps) · weight,
/// with the biased variance, as torch's `nn.LayerNorm(bias=False)` (DBRX). Moments are summed in
/// f64: a residual stream with a large mean loses digits to cancellation in f32 sums, and torch's
/// own moments (Welford, pairwise) are more accurate than a plain f32 loop.
public func layerNorm(_ x: UnsafePointer<Float>, rows: Int, width n: Int, weight: [Float], eps: Float,
                      into y: UnsafeMutablePointer<Float>) {
    for r in 0..<rows {
        let row = x + r * n
        let out = y + r * n
        var sum = 0.0
        for i in 0..<n { sum += Double(row[i]) }
        let mean = sum / Double(n)
        var squares = 0.0
        for i in 0..<n { squares += (Double(row[i]) - mean) * (Double(row[i]) - mean) }
        let scale = Float(1 / (squares / Double(n) + Double(eps)).squareRoot())
        for i in 0..<n { out[i] = (row[i] - Float(mean)) * scale * weight[i] }
    }
}
