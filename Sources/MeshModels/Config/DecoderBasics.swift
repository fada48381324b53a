import MeshTensors

/// The config fields every supported decoder shares (Llama family naming), read once so each
/// architecture file only decodes what is particular to it.
struct DecoderBasics {
    let config: ConfigReader
    let hiddenSize: Int
    let headCount: Int
    let headDim: Int
    let layerCount: Int

    init(_ c: ConfigReader) throws {
        config = c
        hiddenSize = try c.positiveInt("hidden_size")
        headCount = try c.positiveInt("num_attention_heads")
        headDim = try c.optionalInt("head_dim") ?? hiddenSize / headCount
        layerCount = try c.positiveInt("num_hidden_layers")
    }

    /// A MoE layer when `moe` is given, else a dense MLP whose size is config field `denseSizeField`.
    func layer(_ index: Int, attention: AttentionSpec, moe: MoESpec?, denseSizeField: String) throws -> LayerSpec {
        if let moe { return LayerSpec(attention: attention, feedForward: .moe(moe)) }
        guard let size = try config.optionalInt(denseSizeField) else {
            throw ModelError("\(config.context): layer \(index) is dense but '\(denseSizeField)' is missing")
        }
        return LayerSpec(attention: attention, feedForward: .dense(intermediateSize: size))
    }

    func spec(modelType: String, layers: [LayerSpec], pairing: RotaryEmbedding.Pairing) throws -> ModelSpec {
        let c = config
        return try ModelSpec(
            modelType: modelType, vocabSize: c.positiveInt("vocab_size"), hiddenSize: hiddenSize, headCount: headCount,
            kvHeadCount: try c.optionalInt("num_key_value_heads") ?? headCount, headDim: headDim,
            rmsNormEps: Float(c.double("rms_norm_eps")), rope: RopeConfig.read(c, headDim: headDim, pairing: pairing),
            tieWordEmbeddings: try c.bool("tie_word_embeddings", default: false), layers: layers,
            bosTokenId: try c.optionalInt("bos_token_id"), eosTokenIds: try c.intOrList("eos_token_id"),
            maxPositions: try c.optionalInt("max_position_embeddings"))
    }
}
