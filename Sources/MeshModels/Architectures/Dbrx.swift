import MeshTensors

/// DBRX (`DbrxForCausalLM`): its own config names (`d_model`, `n_heads`, `attn_config`, `ffn_config`)
/// and tensor names (`transformer.blocks.N.…`); LayerNorms without bias; one fused `Wqkv`
/// projection clamped to ±`clip_qkv`; softmax top-k routing renormalised by the 1-norm
/// (`moe_normalize_expert_weights`); experts stacked in [E·I, H] tensors `w1`, `v1`, `w2`.
enum Dbrx: Architecture {
    static let modelTypes = ["dbrx"]

    static func spec(_ c: ConfigReader) throws -> ModelSpec {
        guard let attention = try c.object("attn_config"), let ffn = try c.object("ffn_config") else {
            throw ModelError("\(c.context): dbrx needs 'attn_config' and 'ffn_config' objects")
        }
        let (h, heads) = (try c.positiveInt("d_model"), try c.positiveInt("n_heads"))
        // Absent: transformers' default 1; null: no renormalisation.
        let normalization = try ffn.values.keys.contains("moe_normalize_expert_weights")
            ? ffn.optionalDouble("moe_normalize_expert_weights") : 1
        guard normalization == nil || normalization == 1 else {
            throw ModelError("\(ffn.context): moe_normalize_expert_weights \(normalization!) is not supported; "
                             + "DBRX checkpoints use 1 (the 1-norm) or null")
        }
        let moe = try MoESpec(expertCount: ffn.positiveInt("moe_num_experts"), topK: ffn.positiveInt("moe_top_k"),
                              intermediateSize: ffn.positiveInt("ffn_hidden_size"),
                              routing: .softmaxTopK(normalize: normalization != nil))
        let clip = try attention.optionalDouble("clip_qkv").map { Float($0) }
        let layer = LayerSpec(attention: AttentionSpec(clipQKV: clip), feedForward: .moe(moe))
        var spec = try ModelSpec(
            modelType: "dbrx", vocabSize: c.positiveInt("vocab_size"), hiddenSize: h, headCount: heads,
            kvHeadCount: attention.optionalInt("kv_n_heads") ?? heads, headDim: h / heads, normEps: 1e-5,
            rope: rope(c, attention, headDim: h / heads),
            tieWordEmbeddings: c.bool("tie_word_embeddings", default: false),
            layers: Array(repeating: layer, count: c.positiveInt("n_layers")),
            bosTokenId: c.optionalInt("bos_token_id"),
            eosTokenIds: c.intOrList("eos_token_id"), maxPositions: c.optionalInt("max_seq_len"))
        spec.norm = .layerNorm
        return spec
    }

    /// transformers 5 writes `rope_parameters` and reads only that; hub configs keep the theta in `attn_config`.
    static func rope(_ c: ConfigReader, _ attention: ConfigReader, headDim: Int) throws -> RotaryEmbedding {
        if c.has("rope_parameters") { return try RopeConfig.read(c, headDim: headDim, pairing: .halves) }
        let theta = try attention.optionalDouble("rope_theta") ?? 10000
        return RotaryEmbedding(headDim: headDim, theta: theta, pairing: .halves)
    }

    static func names(prefix p: String) -> ModelWeightNames {
        ModelWeightNames(embed: "\(p)wte.weight", finalNorm: "\(p)norm_f.weight", lmHead: "lm_head.weight",
                         layer: { l, _ in
            let block = "\(p)blocks.\(l)."
            let (attention, ffn) = ("\(block)norm_attn_norm.", "\(block)ffn.")
            let mlp = "\(ffn)experts.mlp."
            let stacked = MLPNames(gate: "\(mlp)w1", up: "\(mlp)v1", down: "\(mlp)w2")
            let moe = MoENames(router: ["\(ffn)router.layer.weight"], perExpert: { _ in stacked }, fusedGateUp: [],
                               fusedDown: [], fusedDefaultLayout: .outMajor, shared: nil, stacked: stacked)
            return LayerWeightNames(
                inputNorm: "\(attention)norm_1.weight", postAttentionNorm: "\(attention)norm_2.weight",
                q: "", k: "", v: "", o: "\(attention)attn.out_proj.weight", qNorm: nil, kNorm: nil,
                feedForward: .moe(moe), fusedQKV: "\(attention)attn.Wqkv.weight")
        }, ignoredPrefixes: [])
    }
}
