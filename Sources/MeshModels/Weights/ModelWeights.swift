import MeshTensors

/// A gated MLP: down(act(gate(x), up(x))). Dense layers, shared experts and routed experts.
public struct MLPWeights: Sendable {
    public var gate: LinearWeight
    public var up: LinearWeight
    public var down: LinearWeight
    public var activation: GatedActivation = .silu
    /// Biases of the three projections (gpt-oss experts), nil where there are none.
    public var gateBias: [Float]? = nil, upBias: [Float]? = nil, downBias: [Float]? = nil

    public var byteCount: Int { gate.byteCount + up.byteCount + down.byteCount }
}

/// How a gated MLP combines its gate and up projections.
public enum GatedActivation: Sendable, Equatable {
    /// silu(gate) · up
    case silu
    /// gpt-oss: g = min(gate, limit), u = clamp(up, ±limit); g · sigmoid(alpha · g) · (u + 1)
    case clampedSwiGLU(alpha: Float, limit: Float)
}

public struct AttentionWeights: Sendable {
    public var q: LinearWeight, k: LinearWeight, v: LinearWeight, o: LinearWeight
    /// q/k norm weights: [headDim] per head (Qwen 3), or [heads·D] and [kvHeads·D] (OLMoE).
    public var qNorm: [Float]?, kNorm: [Float]?
    /// Projection biases where the architecture has them.
    public var qBias: [Float]?, kBias: [Float]?, vBias: [Float]?, oBias: [Float]?
    /// A learned logit per head that joins each softmax's denominator (gpt-oss's attention sinks).
    public var sinks: [Float]? = nil
}

/// Multi-head latent attention (DeepSeek-V3): see `LatentAttentionSpec`.
public struct LatentAttentionWeights: Sendable {
    /// [queryRank, H] and its RMSNorm [queryRank], when queries go through a low-rank step.
    public var queryDown: LinearWeight?, queryDownNorm: [Float]?
    /// [heads·(nope + rope), queryRank or H]
    public var query: LinearWeight
    /// [kvRank + rope, H] (`kv_a_proj_with_mqa`) and the latent's RMSNorm [kvRank]
    public var kvDown: LinearWeight, kvDownNorm: [Float]
    /// [heads·(nope + value), kvRank] (`kv_b_proj`): per head, the key rows then the value rows
    public var kvUp: LinearWeight
    /// [H, heads·value]
    public var o: LinearWeight
}

/// A layer's attention weights, of the kind its spec selects.
public enum AttentionLayerWeights: Sendable {
    case standard(AttentionWeights)
    case latent(LatentAttentionWeights)

    /// Every matrix a token is multiplied by.
    public var projections: [LinearWeight] {
        switch self {
        case .standard(let a): return [a.q, a.k, a.v, a.o]
        case .latent(let a): return (a.queryDown.map { [$0] } ?? []) + [a.query, a.kvDown, a.kvUp, a.o]
        }
    }
}

/// What the coordinator holds of a MoE layer; the routed experts live in an `ExpertBackend`.
public struct MoEWeights: Sendable {
    /// [E, H]
    public var router: LinearWeight
    public var shared: MLPWeights?
    /// [1, H]: scales the shared expert's output by its sigmoid (Qwen 2 MoE).
    public var sharedGate: LinearWeight?
    /// [E]: added to the scores for choosing experts only (grouped sigmoid routing).
    public var scoreCorrectionBias: [Float]?
    /// [E]: the router's own bias, added to its logits (gpt-oss).
    public var routerBias: [Float]? = nil
}

public enum FeedForwardWeights: Sendable {
    case dense(MLPWeights)
    case moe(MoEWeights)
}

public struct LayerWeights: Sendable {
    public var inputNorm: [Float]
    public var postAttentionNorm: [Float]
    public var attention: AttentionLayerWeights
    public var feedForward: FeedForwardWeights
}

/// Everything but the routed experts: what the coordinator holds.
public struct DenseWeights: Sendable {
    /// [vocab, hidden], file dtype
    public var embedding: TensorView
    public var finalNorm: [Float]
    /// [vocab, hidden]; the embedding itself when tied
    public var lmHead: LinearWeight
    public var layers: [LayerWeights]

    /// Bytes read per token outside the routed experts (all dense weights but the embedding table).
    public var bytesPerToken: Int { projections.reduce(0) { $0 + $1.byteCount } }

    /// Multiply-adds per token outside the routed experts.
    public var multiplyAddsPerToken: Int { projections.reduce(0) { $0 + $1.outFeatures * $1.inFeatures } }

    /// Every matrix a token is multiplied by outside the routed experts.
    var projections: [LinearWeight] {
        var all = [lmHead]
        for layer in layers {
            all += layer.attention.projections
            switch layer.feedForward {
            case .dense(let mlp): all += [mlp.gate, mlp.up, mlp.down]
            case .moe(let moe):
                all += [moe.router] + (moe.shared.map { [$0.gate, $0.up, $0.down] } ?? []) + (moe.sharedGate.map { [$0] } ?? [])
            }
        }
        return all
    }
}

/// The routed experts of some (layer, expert) pairs, each a gated MLP.
public struct ExpertKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var layer: Int
    public var expert: Int
    public init(layer: Int, expert: Int) { self.layer = layer; self.expert = expert }
    public static func < (a: ExpertKey, b: ExpertKey) -> Bool { (a.layer, a.expert) < (b.layer, b.expert) }
    public var description: String { "layer \(layer) expert \(expert)" }
}
