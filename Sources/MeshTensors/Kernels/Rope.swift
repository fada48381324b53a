import Foundation

/// Rotary position embedding tables and their application to q/k heads.
public struct RotaryEmbedding: Sendable {
    /// How pairs are formed: `halves` pairs i with i + d/2 (Llama/Mixtral/Qwen `rotate_half`);
    /// `interleaved` pairs 2i with 2i+1 (Llama 4's complex-number form).
    public enum Pairing: Sendable { case halves, interleaved }

    /// Llama 3 style frequency scaling (`rope_type: "llama3"`), also used by Llama 4.
    public struct Llama3Scaling: Sendable, Equatable {
        public var factor: Double
        public var lowFrequencyFactor: Double
        public var highFrequencyFactor: Double
        public var originalMaxPositions: Double
        public init(factor: Double, lowFrequencyFactor: Double, highFrequencyFactor: Double, originalMaxPositions: Double) {
            self.factor = factor
            self.lowFrequencyFactor = lowFrequencyFactor
            self.highFrequencyFactor = highFrequencyFactor
            self.originalMaxPositions = originalMaxPositions
        }
    }

    public let headDim: Int
    public let pairing: Pairing
    /// inverse frequencies [headDim / 2]
    public let inverseFrequencies: [Double]

    public init(headDim: Int, theta: Double, pairing: Pairing, llama3: Llama3Scaling? = nil) {
        self.headDim = headDim
        self.pairing = pairing
        var frequencies = (0..<(headDim / 2)).map { 1.0 / pow(theta, Double(2 * $0) / Double(headDim)) }
        if let s = llama3 {
            // transformers' _compute_llama3_parameters, in float32 like the reference.
            let lowWavelength = s.originalMaxPositions / s.lowFrequencyFactor
            let highWavelength = s.originalMaxPositions / s.highFrequencyFactor
            frequencies = frequencies.map { f in
                let f32 = Double(Float(f))
                let wavelength = 2 * Double.pi / f32
                if wavelength > lowWavelength { return f32 / s.factor }
                if wavelength < highWavelength { return f32 }
                let smooth = (s.originalMaxPositions / wavelength - s.lowFrequencyFactor) / (s.highFrequencyFactor - s.lowFrequencyFactor)
                return (1 - smooth) * f32 / s.factor + smooth * f32
            }
        }
        // The reference keeps inv_freq in float32.
        inverseFrequencies = frequencies.map { Double(Float($0)) }
    }

    /// Rotates `heads` vectors of `headDim` at `x` for position `position`.
    public func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, position: Int) {
        let half = headDim / 2
        var cosines = [Float](repeating: 0, count: half)
        var sines = [Float](repeating: 0, count: half)
        for i in 0..<half {
            // freqs = position · inv_freq computed in float32, as torch does.
            let angle = Float(position) * Float(inverseFrequencies[i])
            cosines[i] = cos(angle)
            sines[i] = sin(angle)
        }
        for h in 0..<heads {
            let v = x + h * headDim
            for i in 0..<half {
                let (a, b) = pairing == .halves ? (i, i + half) : (2 * i, 2 * i + 1)
                let (x0, x1) = (v[a], v[b])
                v[a] = x0 * cosines[i] - x1 * sines[i]
                v[b] = x1 * cosines[i] + x0 * sines[i]
            }
        }
    }
}
