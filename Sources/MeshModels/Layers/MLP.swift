import MeshTensors

extension MLPWeights {
    /// out[T, H] (+)= down(silu(gate(x)) · up(x)) for x [T, H]. Intermediates are [T, I].
    /// `generated` marks rows carrying generated tokens (it picks their kernels).
    public func forward(_ x: UnsafePointer<Float>, rows: Int, generated: [Bool]? = nil, into out: UnsafeMutablePointer<Float>,
                        accumulate: Bool) {
        let intermediate = gate.outFeatures
        let gated = UnsafeMutablePointer<Float>.allocate(capacity: rows * intermediate)
        let upValues = UnsafeMutablePointer<Float>.allocate(capacity: rows * intermediate)
        defer { gated.deallocate(); upValues.deallocate() }
        matmul(x, rows: rows, [(gate, gated), (up, upValues)], generated: generated)
        siluMultiply(gated, upValues, count: rows * intermediate)
        matmul(gated, rows: rows, down, into: out, accumulate: accumulate, generated: generated)
    }
}
