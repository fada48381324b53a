import Foundation

/// What sizing a model needs, layer by layer: parameters by where they live (the coordinator's
/// attention, norms, dense and shared FFN, router; the workers' routed experts) and the KV cache
/// values each token leaves per layer, made from a `ModelSpec` (`expertmesh plan` sizes a model by it).
public struct ModelShape: Sendable {
    public struct Layer: Sendable {
        /// Projections, their biases and q/k norm weights.
        public var attention: Int
        /// Values cached per token (K and V, or a latent and a rope key).
        public var kvValuesPerToken: Int
        /// How far back its queries look: sliding and chunked layers keep only that much cached.
        public var reach = CacheReach()
        public var norms: Int
        /// A dense FFN, or the shared experts of an MoE layer: on the coordinator.
        public var dense: Int
        /// Intermediate size of that dense FFN or those shared experts (what `--offload-dense` slices).
        public var denseIntermediate = 0
        public var router: Int
        public var experts = 0
        public var expertParameters = 0
        public var topK = 0
    }

    public var modelType: String
    public var hiddenSize: Int
    public var vocabSize: Int
    public var tiedEmbeddings: Bool
    public var layers: [Layer]
    /// How `--offload-dense` cuts the dense parts (nil for a model without experts).
    public var denseSlicing: DenseSlices?

    /// Embeddings, LM head (unless tied) and the final norm.
    public var outerParameters: Int { vocabSize * hiddenSize * (tiedEmbeddings ? 1 : 2) + hiddenSize }
    public var moeLayerCount: Int { layers.filter { $0.experts > 0 }.count }
    public var kvValuesPerToken: Int { layers.reduce(0) { $0 + $1.kvValuesPerToken } }

    /// Parameters `--offload-dense` moves to the workers: the gate, up and down projections of every
    /// dense FFN and shared expert (0 for a model without experts, where nothing sizes the slices).
    public var offloadableParameters: Int {
        denseSlicing == nil ? 0 : layers.reduce(0) { $0 + 3 * hiddenSize * $1.denseIntermediate }
    }

    /// The slices `--offload-dense` cuts `layer`'s dense FFN or shared experts into.
    public func denseSlices(_ layer: Layer) -> Int {
        denseSlicing?.ranges(intermediate: layer.denseIntermediate).count ?? 0
    }

    /// Values one sequence of `context` positions keeps in the KV cache at most: every position in
    /// full-attention layers, the blocks its window or chunk spans in the others (of `range`'s
    /// layers: a pipeline stage's; default: all).
    public func kvValues(context: Int, layers range: Range<Int>? = nil) -> Int {
        layers[range ?? layers.indices].reduce(0) { sum, layer in
            let kept = layer.reach.blocksHeldAtMost.map { min(context, $0 * PagedKVCache.blockSize) } ?? context
            return sum + layer.kvValuesPerToken * kept
        }
    }

    public var parameterCount: ParameterCount {
        var total = outerParameters, inactive = 0, routed = 0
        for layer in layers {
            total += layer.attention + layer.norms + layer.dense + layer.router + layer.experts * layer.expertParameters
            routed += layer.experts * layer.expertParameters
            inactive += (layer.experts - layer.topK) * layer.expertParameters
        }
        return ParameterCount(total: total, active: total - inactive, routedExperts: routed)
    }
}

extension ModelShape {
    /// Attention parameters and cached values per token of one layer.
    static func attention(_ a: AttentionSpec, _ spec: ModelSpec) -> Layer {
        let (h, d, heads) = (spec.hiddenSize, spec.headDim, spec.headCount)
        if let mla = a.latent {
            let queryWidth = heads * (mla.nopeDim + mla.ropeDim)
            let query = mla.queryRank.map { h * $0 + $0 + $0 * queryWidth } ?? h * queryWidth
            let kv = h * (mla.kvRank + mla.ropeDim) + mla.kvRank + mla.kvRank * heads * (mla.nopeDim + mla.valueDim)
            return Layer(attention: query + kv + heads * mla.valueDim * h, kvValuesPerToken: mla.kvRank + mla.ropeDim,
                         norms: 0, dense: 0, router: 0)
        }
        let (qWidth, kvWidth) = (heads * d, spec.kvHeadCount * d)
        let biases = (a.qkvBias ? qWidth + 2 * kvWidth : 0) + (a.outputBias ? h : 0)
        let qkNorms: Int
        switch a.qkNorm {
        case .rmsBeforeRope: qkNorms = 2 * d
        case .rmsAcrossHeadsBeforeRope: qkNorms = qWidth + kvWidth
        case .none, .l2AfterRope: qkNorms = 0
        }
        let sinks = a.sinks ? heads : 0
        return Layer(attention: 2 * h * qWidth + 2 * h * kvWidth + biases + qkNorms + sinks, kvValuesPerToken: 2 * kvWidth,
                     norms: 0, dense: 0, router: 0)
    }

    public init(spec: ModelSpec) {
        let h = spec.hiddenSize
        modelType = spec.modelType
        hiddenSize = h
        vocabSize = spec.vocabSize
        tiedEmbeddings = spec.tieWordEmbeddings
        denseSlicing = DenseSlices(spec: spec)
        layers = spec.layers.map { layer in
            var shape = Self.attention(layer.attention, spec)
            shape.reach = layer.attention.reach
            shape.norms = 2 * h
            switch layer.feedForward {
            case .dense(let intermediate):
                shape.dense = 3 * h * intermediate
                shape.denseIntermediate = intermediate
            case .moe(let moe):
                shape.dense = 3 * h * (moe.sharedExpertIntermediateSize ?? 0) + (moe.sharedExpertGated ? h : 0)
                shape.denseIntermediate = moe.sharedExpertIntermediateSize ?? 0
                shape.router = moe.expertCount * h + (moe.routerBias ? moe.expertCount : 0)
                if case .groupedSigmoid = moe.routing { shape.router += moe.expertCount }   // the score-correction bias
                (shape.experts, shape.expertParameters, shape.topK) =
                    (moe.expertCount, 3 * h * moe.intermediateSize + (moe.expertBiases ? 2 * moe.intermediateSize + h : 0), moe.topK)
            }
            return shape
        }
    }

    /// The shape of a `config.json` (through its `ModelSpec`; no weights needed).
    public static func read(configFile: URL) throws -> ModelShape {
        ModelShape(spec: try ModelSpec.decode(configFile: configFile))
    }
}
