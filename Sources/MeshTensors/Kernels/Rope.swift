import Foundation

/// Rotary position embedding over the first `rotaryDim` values of each head (all of them unless the
/// model rotates part of the head, GLM-4.5's `partial_rotary_factor`), with the frequency
/// scalings real checkpoints use. Frequencies follow transformers' `modeling_rope_utils.py`.
public struct RotaryEmbedding: Sendable {
    /// How pairs are formed: `halves` pairs i with i + r/2 (Llama/Mixtral/Qwen `rotate_half`);
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

    /// YaRN (`rope_type: "yarn"`): interpolated low frequencies, extrapolated high ones, a linear
    /// ramp between, and cos/sin scaled by an attention factor.
    public struct YarnScaling: Sendable, Equatable {
        public var factor: Double
        public var originalMaxPositions: Double
        public var betaFast: Double = 32
        public var betaSlow: Double = 1
        public var truncate = true
        /// Given outright, or derived from `factor`, `mscale` and `mscaleAllDim`.
        public var attentionFactor: Double?
        public var mscale: Double?
        public var mscaleAllDim: Double?
        public init(factor: Double, originalMaxPositions: Double) {
            self.factor = factor
            self.originalMaxPositions = originalMaxPositions
        }
    }

    public enum Scaling: Sendable, Equatable {
        case none
        /// Positions divided by `factor` (`rope_type: "linear"`).
        case linear(factor: Double)
        case llama3(Llama3Scaling)
        case yarn(YarnScaling)
        /// NTK scaling recomputed for the sequence length (`rope_type: "dynamic"`): the base grows
        /// once a sequence is longer than `maxPositions`.
        case dynamic(factor: Double, maxPositions: Double)
    }

    public let headDim: Int
    /// Values rotated at the start of each head (even, ≤ headDim); the rest pass through.
    public let rotaryDim: Int
    public let pairing: Pairing
    public let theta: Double
    public let scaling: Scaling
    /// inverse frequencies [rotaryDim / 2] (for `dynamic`, those of sequences up to `maxPositions`)
    public let inverseFrequencies: [Double]
    /// Multiplies cos and sin (YaRN's attention factor; 1 otherwise).
    public let attentionFactor: Float

    public init(headDim: Int, rotaryDim: Int? = nil, theta: Double, pairing: Pairing, scaling: Scaling = .none) {
        self.headDim = headDim
        self.rotaryDim = rotaryDim ?? headDim
        self.pairing = pairing
        self.theta = theta
        self.scaling = scaling
        let dim = Double(self.rotaryDim)
        let base = (0..<(self.rotaryDim / 2)).map { 1.0 / pow(theta, Double(2 * $0) / dim) }
        var attentionFactor = 1.0
        switch scaling {
        case .none, .dynamic:
            inverseFrequencies = Self.float32(base)
        case .linear(let factor):
            inverseFrequencies = Self.float32(base.map { Double(Float($0)) / factor })
        case .llama3(let s):
            inverseFrequencies = Self.float32(Self.llama3(base, s))
        case .yarn(let s):
            inverseFrequencies = Self.float32(Self.yarn(base, s, theta: theta, dim: dim))
            attentionFactor = s.attentionFactor ?? Self.yarnAttentionFactor(s)
        }
        self.attentionFactor = Float(attentionFactor)
    }

    /// Whether a token's rotation depends on its sequence's length as well as its position.
    public var dependsOnSequenceLength: Bool {
        if case .dynamic = scaling { return true }
        return false
    }

    /// Rotates `heads` vectors of `headDim` at `x` for position `position`. `sequenceLength` is
    /// the length the frequencies are computed for under `dynamic` scaling (ignored otherwise):
    /// transformers uses the prompt's length for prompt tokens and position + 1 for generated ones.
    public func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, position: Int, sequenceLength: Int? = nil) {
        let half = rotaryDim / 2
        let frequencies = dynamicFrequencies(sequenceLength ?? position + 1) ?? inverseFrequencies
        var cosines = [Float](repeating: 0, count: half)
        var sines = [Float](repeating: 0, count: half)
        for i in 0..<half {
            // freqs = position · inv_freq computed in float32, as torch does.
            let angle = Float(position) * Float(frequencies[i])
            cosines[i] = cos(angle) * attentionFactor
            sines[i] = sin(angle) * attentionFactor
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

    /// `_compute_dynamic_ntk_parameters`: base · (factor · L / max − (factor − 1))^(r / (r − 2)).
    private func dynamicFrequencies(_ length: Int) -> [Double]? {
        guard case .dynamic(let factor, let maxPositions) = scaling, Double(length) > maxPositions else { return nil }
        let dim = Double(rotaryDim)
        let base = theta * pow(factor * Double(length) / maxPositions - (factor - 1), dim / (dim - 2))
        return Self.float32((0..<(rotaryDim / 2)).map { 1.0 / pow(base, Double(2 * $0) / dim) })
    }

    /// The reference keeps inv_freq in float32.
    private static func float32(_ values: [Double]) -> [Double] { values.map { Double(Float($0)) } }

    /// transformers' `_compute_llama3_parameters`, in float32 like the reference.
    private static func llama3(_ frequencies: [Double], _ s: Llama3Scaling) -> [Double] {
        let lowWavelength = s.originalMaxPositions / s.lowFrequencyFactor
        let highWavelength = s.originalMaxPositions / s.highFrequencyFactor
        return frequencies.map { f in
            let f32 = Double(Float(f))
            let wavelength = 2 * Double.pi / f32
            if wavelength > lowWavelength { return f32 / s.factor }
            if wavelength < highWavelength { return f32 }
            let smooth = (s.originalMaxPositions / wavelength - s.lowFrequencyFactor) / (s.highFrequencyFactor - s.lowFrequencyFactor)
            return (1 - smooth) * f32 / s.factor + smooth * f32
        }
    }

    /// transformers' `_compute_yarn_parameters`: a ramp over the dimensions between the ones that
    /// turn `betaFast` and `betaSlow` times in the original context.
    private static func yarn(_ frequencies: [Double], _ s: YarnScaling, theta: Double, dim: Double) -> [Double] {
        func correctionDim(_ rotations: Double) -> Double {
            dim * log(s.originalMaxPositions / (rotations * 2 * Double.pi)) / (2 * log(theta))
        }
        var (low, high) = (correctionDim(s.betaFast), correctionDim(s.betaSlow))
        if s.truncate { (low, high) = (floor(low), ceil(high)) }
        (low, high) = (max(low, 0), min(high, dim - 1))
        if low == high { high += 0.001 }
        return frequencies.enumerated().map { i, f in
            let extrapolated = Double(Float(f))
            let interpolated = Double(Float(1 / (s.factor / f)))
            let ramp = min(max((Double(i) - low) / (high - low), 0), 1)
            let extrapolationWeight = Double(1 - Float(ramp))
            return interpolated * (1 - extrapolationWeight) + extrapolated * extrapolationWeight
        }
    }

    private static func yarnAttentionFactor(_ s: YarnScaling) -> Double {
        func mscale(_ scale: Double, _ m: Double) -> Double { scale <= 1 ? 1 : 0.1 * m * log(scale) + 1 }
        if let m = s.mscale, let all = s.mscaleAllDim, m != 0, all != 0 {
            return mscale(s.factor, m) / mscale(s.factor, all)
        }
        return mscale(s.factor, 1)
    }
}
