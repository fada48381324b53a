import MeshTensors

/// Everything the forward pass needs to know about a model, decoded from config.json by
/// the model's architecture file. Per-layer specs carry the differences between layers
/// (dense vs MoE feed-forward, RoPE vs NoPE attention, chunked attention).
public struct ModelSpec: Sendable {
    public var modelType: String
    public var vocabSize: Int
    public var hiddenSize: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDim: Int
    /// The decoder's norms (input, post-attention, final) and their epsilon.
    public var norm: NormKind = .rms
    public var normEps: Float
    public var rope: RotaryEmbedding
    public var tieWordEmbeddings: Bool
    public var layers: [LayerSpec]
    public var bosTokenId: Int?
    public var eosTokenIds: [Int]
    /// `max_position_embeddings`: the longest sequence the model was built for (nil: unknown).
    public var maxPositions: Int?
    /// Layers the checkpoint holds after the last one and inference does not use (GLM-4.5's and
    /// DeepSeek-V3's multi-token-prediction layers): their tensors are expected, and left alone.
    public var unusedTrailingLayers = 0

    public var layerCount: Int { layers.count }
    /// Values the KV cache keeps per token and layer, in its key and value arrays.
    public var cacheWidths: (key: Int, value: Int) {
        layers.first.map { $0.attention.cacheWidths(kvHeads: kvHeadCount, headDim: headDim) } ?? (0, 0)
    }
    public var moeLayerIndices: [Int] { layers.indices.filter { layers[$0].moe != nil } }
}

public enum NormKind: Sendable {
    case rms
    /// LayerNorm with a weight and no bias (DBRX).
    case layerNorm
}

extension ModelSpec {
    /// The decoder norm on each row of x [rows, H].
    func normalize(_ x: UnsafePointer<Float>, rows: Int, weight: [Float], into y: UnsafeMutablePointer<Float>) {
        switch norm {
        case .rms: rmsNorm(x, rows: rows, width: hiddenSize, weight: weight, eps: normEps, into: y)
        case .layerNorm: layerNorm(x, rows: rows, width: hiddenSize, weight: weight, eps: normEps, into: y)
        }
    }
}

public struct LayerSpec: Sendable {
    public var attention: AttentionSpec
    public var feedForward: FeedForwardSpec

    public var moe: MoESpec? {
        if case .moe(let spec) = feedForward { return spec }
        return nil
    }
}

public struct AttentionSpec: Sendable {
    /// Normalisation of q and k per head before attention.
    public enum QKNorm: Sendable {
        case none
        /// RMSNorm with a learned [headDim] weight, before RoPE (Qwen 3).
        case rmsBeforeRope
        /// Weightless L2 norm after RoPE (Llama 4, RoPE layers only).
        case l2AfterRope
        /// RMSNorm across all heads of q ([heads·D] weight) and of k ([kvHeads·D]), before RoPE (OLMoE).
        case rmsAcrossHeadsBeforeRope
    }

    /// Llama 4's attention temperature tuning on NoPE layers:
    /// q *= log1p(floor((position + 1) / floorScale)) · attnScale + 1.
    public struct TemperatureTuning: Sendable {
        public var floorScale: Double
        public var attnScale: Double
    }

    public var usesRope: Bool
    public var qkNorm: QKNorm
    /// Keys visible to a query are those in the same block of `chunkSize` positions (Llama 4).
    public var chunkSize: Int?
    public var temperatureTuning: TemperatureTuning?
    /// A query sees only the last `slidingWindow` positions, its own included (Mistral, Qwen 2).
    public var slidingWindow: Int?
    /// q, k and v clamped to ±clip after their projections (OLMoE's `clip_qkv`).
    public var clipQKV: Float?
    /// Biases on the q, k and v projections (Qwen 2), and on the output projection.
    public var qkvBias: Bool
    public var outputBias: Bool
    /// Multi-head latent attention instead of one K and V per head (DeepSeek-V3).
    public var latent: LatentAttentionSpec?
    /// A learned per-head logit joins every softmax's denominator (gpt-oss's attention sinks).
    public var sinks: Bool

    public init(usesRope: Bool = true, qkNorm: QKNorm = .none, chunkSize: Int? = nil,
                temperatureTuning: TemperatureTuning? = nil, slidingWindow: Int? = nil, clipQKV: Float? = nil,
                qkvBias: Bool = false, outputBias: Bool = false, latent: LatentAttentionSpec? = nil, sinks: Bool = false) {
        self.usesRope = usesRope
        self.qkNorm = qkNorm
        self.chunkSize = chunkSize
        self.temperatureTuning = temperatureTuning
        self.slidingWindow = slidingWindow
        self.clipQKV = clipQKV
        self.qkvBias = qkvBias
        self.outputBias = outputBias
        self.latent = latent
        self.sinks = sinks
    }

    /// What the KV cache stores per token: keys and values of every KV head, or MLA's latent and
    /// shared rotated key (in the key and value arrays).
    func cacheWidths(kvHeads: Int, headDim: Int) -> (key: Int, value: Int) {
        if let latent { return (latent.kvRank, latent.ropeDim) }
        return (kvHeads * headDim, kvHeads * headDim)
    }

    /// The earlier positions its queries can see (what the KV cache must keep for this layer).
    public var reach: CacheReach { CacheReach(window: slidingWindow, chunk: chunkSize) }
}

/// DeepSeek-V3's multi-head latent attention: queries [heads, nope + rope] (through a low-rank
/// `q_lora_rank` step or directly), one compressed latent [kvRank] and one shared rotated key
/// [rope] per token, expanded per head by `kv_b_proj` into keys [nope] and values [valueDim].
public struct LatentAttentionSpec: Sendable, Equatable {
    public var queryRank: Int?
    public var kvRank: Int
    public var nopeDim: Int
    public var ropeDim: Int
    public var valueDim: Int
    /// Softmax scale: (nope + rope)^-0.5, times YaRN's mscale² where the config asks.
    public var scale: Float
}

public enum FeedForwardSpec: Sendable {
    case dense(intermediateSize: Int)
    case moe(MoESpec)
}

public struct MoESpec: Sendable {
    public enum Routing: Sendable {
        /// softmax over all experts, top-k, optional renormalisation; weight scales the output (Mixtral, Qwen).
        case softmaxTopK(normalize: Bool)
        /// top-k on logits, sigmoid of the chosen logits; weight scales the expert's input (Llama 4).
        case topKSigmoid
        /// DeepSeek-V3 / GLM-4.5: sigmoid scores, plus a learned per-expert bias for choosing only;
        /// experts split in `groups`, the `topKGroups` groups with the best two-expert sums kept,
        /// top-k among their experts; weights are the unbiased scores, optionally renormalised,
        /// times `scale` (`routed_scaling_factor`).
        case groupedSigmoid(GroupedSigmoid)
        /// top-k on the logits (router bias included), softmax over the k chosen (gpt-oss).
        case topKSoftmax
    }

    public struct GroupedSigmoid: Sendable, Equatable {
        public var groups: Int
        public var topKGroups: Int
        public var normalize: Bool
        public var scale: Float
    }

    public var expertCount: Int
    public var topK: Int
    public var intermediateSize: Int
    public var routing: Routing
    /// Intermediate size of an always-on shared expert (Llama 4), nil if none.
    public var sharedExpertIntermediateSize: Int?
    /// The shared expert's output is scaled by sigmoid(x · w) of its own [1, H] gate (Qwen 2 MoE).
    public var sharedExpertGated = false
    /// How the routed experts combine gate and up (gpt-oss: clamped SwiGLU).
    public var expertActivation: GatedActivation = .silu
    /// The router adds a bias to its logits, and the experts have biases on their projections (gpt-oss).
    public var routerBias = false
    public var expertBiases = false

    public init(expertCount: Int, topK: Int, intermediateSize: Int, routing: Routing,
                sharedExpertIntermediateSize: Int? = nil, sharedExpertGated: Bool = false) {
        self.expertCount = expertCount
        self.topK = topK
        self.intermediateSize = intermediateSize
        self.routing = routing
        self.sharedExpertIntermediateSize = sharedExpertIntermediateSize
        self.sharedExpertGated = sharedExpertGated
    }

    public var weightPlacement: RoutingWeightPlacement {
        if case .topKSigmoid = routing { return .input }
        return .output
    }
}

/// Where a token's routing weight is applied: to the expert output (the usual MoE) or to
/// the expert input (Llama 4). Carried on the wire so a worker computes either.
public enum RoutingWeightPlacement: Sendable, Equatable {
    case output
    case input
}
