import MeshTensors

extension MLPWeights {
    /// out[T, H] (+)= down(act(gate(x), up(x))) for x [T, H]. Intermediates are [T, I].
    /// `generated` marks rows carrying generated tokens (it picks their kernels).
    public func forward(_ x: UnsafePointer<Float>, rows: Int, generated: [Bool]? = nil, into out: UnsafeMutablePointer<Float>,
                        accumulate: Bool) {
        let intermediate = gate.outFeatures
        let gated = Matrix(rows: rows, columns: intermediate)      // [T, I]
        let upValues = Matrix(rows: rows, columns: intermediate)   // [T, I]
        matmul(x, rows: rows, [(gate, gated.data), (up, upValues.data)], generated: generated)
        gated.addToEveryRow(gateBias)
        upValues.addToEveryRow(upBias)
        switch activation {
        case .silu:
            siluMultiply(gated.data, upValues.data, count: rows * intermediate)
        case .clampedSwiGLU(let alpha, let limit):
            for i in 0..<(rows * intermediate) {
                let g = min(gated.data[i], limit)
                let u = min(max(upValues.data[i], -limit), limit)
                gated.data[i] = g * sigmoid(g * alpha) * (u + 1)
            }
        }
        guard let downBias else {
            matmul(gated.data, rows: rows, down, into: out, accumulate: accumulate, generated: generated)
            return
        }
        let result = Matrix(rows: rows, columns: down.outFeatures)     // [T, H]
        matmul(gated.data, rows: rows, down, into: result.data, generated: generated)
        result.addToEveryRow(downBias)
        for i in 0..<(rows * down.outFeatures) { out[i] = accumulate ? out[i] + result.data[i] : result.data[i] }
    }
}
