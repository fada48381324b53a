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

    /// Each layer's sliding window (nil: full attention): `layer_types` where the config lists them
    /// (transformers 5 writes them), else `isSliding(index)`, the family's own rule for older configs.
    /// No window at all when `sliding_window` is null or `use_sliding_window` is false.
    func slidingWindows(isSliding: (Int) -> Bool) throws -> [Int?] {
        let c = config
        guard try c.bool("use_sliding_window", default: true), let window = try c.optionalInt("sliding_window"),
              window > 0 else { return Array(repeating: nil, count: layerCount) }
        guard let types = try c.stringList("layer_types") else {
            return (0..<layerCount).map { isSliding($0) ? window : nil }
        }
        guard types.count == layerCount else {
            throw ModelError("\(c.context): 'layer_types' has \(types.count) entries for \(layerCount) layers")
        }
        return try types.map { type in
            switch type {
            case "sliding_attention": return window
            case "full_attention": return nil
            default:
                throw ModelError("\(c.context): layer type '\(type)' is not supported; supported: sliding_attention, full_attention")
            }
        }
    }

    /// `normEps`: the family's `rms_norm_eps` in transformers when a config leaves it out (nil: required).
    /// `partialRotaryDefault`: the family's `partial_rotary_factor` when the config leaves it out.
    /// `ropeHeadDim`: the values RoPE turns per head when they are not the head (DeepSeek's rope part).
    func spec(modelType: String, layers: [LayerSpec], pairing: RotaryEmbedding.Pairing, normEps: Double? = nil,
              partialRotaryDefault: Double = 1, ropeHeadDim: Int? = nil) throws -> ModelSpec {
        let c = config
        let rope = try RopeConfig.read(c, headDim: ropeHeadDim ?? headDim, pairing: pairing, partialDefault: partialRotaryDefault)
        return try ModelSpec(
            modelType: modelType, vocabSize: c.positiveInt("vocab_size"), hiddenSize: hiddenSize, headCount: headCount,
            kvHeadCount: try c.optionalInt("num_key_value_heads") ?? headCount, headDim: headDim,
            normEps: Float(try normEps.map { try c.optionalDouble("rms_norm_eps") ?? $0 } ?? c.double("rms_norm_eps")),
            rope: rope,
            tieWordEmbeddings: try c.bool("tie_word_embeddings", default: false), layers: layers,
            bosTokenId: try c.optionalInt("bos_token_id"), eosTokenIds: try c.intOrList("eos_token_id"),
            maxPositions: try c.optionalInt("max_position_embeddings").map { Self.context($0, rope.scaling) })
    }

    /// The context a RoPE scaling stretches `max_position_embeddings` to (as vLLM reads it): linear
    /// and dynamic scaling multiply it by their factor; YaRN reaches its original context × factor.
    static func context(_ maxPositions: Int, _ scaling: RotaryEmbedding.Scaling) -> Int {
        switch scaling {
        case .linear(let factor), .dynamic(let factor, _): return Int(Double(maxPositions) * max(factor, 1))
        case .yarn(let yarn): return max(maxPositions, Int(yarn.originalMaxPositions * yarn.factor))
        case .none, .llama3: return maxPositions
        }
    }
}
