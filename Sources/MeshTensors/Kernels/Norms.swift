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
