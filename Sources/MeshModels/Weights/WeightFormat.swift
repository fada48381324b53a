import MeshTensors

/// How weights are held in memory: as the checkpoint stores them, or quantised at load.
public enum WeightFormat: String, Sendable, CaseIterable {
    /// The checkpoint's dtype (f32, bf16, f16), copied at load into huge-page memory
    /// (`LinearWeight.residentCopy`): decode reads it 15-25% faster than the file's mapped pages.
    case file
    /// The checkpoint's dtype, read in place from the memory-mapped file: no copy and no load time,
    /// for a host whose memory is tight (the page cache holds the weights).
    case mapped
    /// Q8_0 (llama.cpp's q8_0: int8 with one f16 scale per 32 values), quantised at load; 1.06 bytes
    /// a weight where bf16 takes 2.
    case int8

    /// Throws when this CPU cannot compute in `self`.
    public func checkSupported() throws {
        if self == .int8, !LinearWeight.q8Supported {
            throw ModelError("int8 weights need a CPU with AVX-512 VNNI; this one has none: keep the file's dtype (--weights-dtype file)")
        }
    }

    func apply(_ weight: LinearWeight) -> LinearWeight {
        switch self {
        case .file: return weight.residentCopy()
        case .mapped: return weight
        case .int8: return weight.quantizedQ8_0()
        }
    }
}

/// The formats of one process's weights: routed experts and dense projections.
public struct WeightFormats: Sendable, CustomStringConvertible {
    public var experts: WeightFormat
    public var dense: WeightFormat
    public init(experts: WeightFormat = .file, dense: WeightFormat = .file) {
        self.experts = experts
        self.dense = dense
    }
    public var description: String { "experts \(experts.rawValue), dense \(dense.rawValue)" }
}

extension MLPWeights {
    public func converted(to format: WeightFormat) -> MLPWeights {
        var result = self
        (result.gate, result.up, result.down) = (format.apply(gate), format.apply(up), format.apply(down))
        return result
    }
}

extension DenseWeights {
    /// Attention, dense feed-forward, shared experts and the LM head in `format`. The embedding
    /// table (rows are gathered, not multiplied), norms and routers (small, and they choose the
    /// experts) stay as they are; so do the dense feed-forward and shared experts unless
    /// `includingFeedForward` (they run on workers under `--offload-dense`, and are never read here).
    /// A pipeline stage converts only the layers it holds (`held`), and the head if it runs it.
    public func converted(to format: WeightFormat, includingFeedForward: Bool = true,
                          held: (layers: Range<Int>, head: Bool)? = nil) -> DenseWeights {
        guard format != .mapped else { return self }
        var result = self
        if held?.head ?? true { result.lmHead = format.apply(lmHead) }
        result.layers = layers.enumerated().map { index, layer in
            guard held?.layers.contains(index) ?? true else { return layer }
            var layer = layer
            switch layer.attention {
            case .standard(var a):
                (a.q, a.k, a.v, a.o) = (format.apply(a.q), format.apply(a.k), format.apply(a.v), format.apply(a.o))
                layer.attention = .standard(a)
            case .latent(var a):
                // kv_b_proj stays: its rows are also read transposed (queries absorbed into the latent).
                a.queryDown = a.queryDown.map(format.apply)
                (a.query, a.kvDown, a.o) = (format.apply(a.query), format.apply(a.kvDown), format.apply(a.o))
                layer.attention = .latent(a)
            }
            switch layer.feedForward {
            case _ where !includingFeedForward: break
            case .dense(let mlp): layer.feedForward = .dense(mlp.converted(to: format))
            case .moe(var moe):
                moe.shared = moe.shared?.converted(to: format)
                layer.feedForward = .moe(moe)
            }
            return layer
        }
        return result
    }
}
