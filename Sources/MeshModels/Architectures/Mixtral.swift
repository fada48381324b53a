/// Mixtral (`MixtralForCausalLM`): every layer is attention + a sparse MoE with softmax
/// top-k routing, renormalised; RoPE with `rotate_half` pairing.
enum Mixtral: Architecture {
    static let modelTypes = ["mixtral"]

    static func spec(_ c: ConfigReader) throws -> ModelSpec {
        let hidden = try c.positiveInt("hidden_size")
        let heads = try c.positiveInt("num_attention_heads")
        let headDim = c.optionalInt("head_dim") ?? hidden / heads
        let moe = try MoESpec(expertCount: c.positiveInt("num_local_experts"), topK: c.positiveInt("num_experts_per_tok"),
                              intermediateSize: c.positiveInt("intermediate_size"),
                              routing: .softmaxTopK(normalize: true), sharedExpertIntermediateSize: nil)
        let attention = AttentionSpec(usesRope: true, qkNorm: .none, chunkSize: nil, temperatureTuning: nil)
        let layer = LayerSpec(attention: attention, feedForward: .moe(moe))
        return try ModelSpec(
            modelType: "mixtral", vocabSize: c.positiveInt("vocab_size"), hiddenSize: hidden, headCount: heads,
            kvHeadCount: c.optionalInt("num_key_value_heads") ?? heads, headDim: headDim,
            rmsNormEps: Float(c.double("rms_norm_eps")), rope: RopeConfig.read(c, headDim: headDim, pairing: .halves),
            tieWordEmbeddings: c.bool("tie_word_embeddings", default: false),
            layers: Array(repeating: layer, count: c.positiveInt("num_hidden_layers")),
            bosTokenId: c.optionalInt("bos_token_id"), eosTokenIds: c.intOrList("eos_token_id"))
    }

    static func names(prefix p: String) -> ModelWeightNames {
        ModelWeightNames(embed: "\(p)embed_tokens.weight", finalNorm: "\(p)norm.weight", lmHead: "lm_head.weight", layer: { l, _ in
            let layer = "\(p)layers.\(l)."
            let moe = MoENames(
                router: ["\(layer)block_sparse_moe.gate.weight", "\(layer)mlp.gate.weight"],
                perExpert: { e in MLPNames(prefix: "\(layer)block_sparse_moe.experts.\(e).", gate: "w1", up: "w3", down: "w2") },
                fusedGateUp: ["\(layer)mlp.experts.gate_up_proj", "\(layer)block_sparse_moe.experts.gate_up_proj"],
                fusedDown: ["\(layer)mlp.experts.down_proj", "\(layer)block_sparse_moe.experts.down_proj"],
                fusedDefaultLayout: .outMajor, shared: nil)
            return standardLayerNames(layer, feedForward: .moe(moe))
        }, ignoredPrefixes: [])
    }
}

/// The attention and norm names shared by the Llama family (Mixtral, Qwen 3).
func standardLayerNames(_ layer: String, qkNorm: Bool = false, feedForward: FeedForwardNames) -> LayerWeightNames {
    LayerWeightNames(
        inputNorm: "\(layer)input_layernorm.weight", postAttentionNorm: "\(layer)post_attention_layernorm.weight",
        q: "\(layer)self_attn.q_proj.weight", k: "\(layer)self_attn.k_proj.weight",
        v: "\(layer)self_attn.v_proj.weight", o: "\(layer)self_attn.o_proj.weight",
        qNorm: qkNorm ? "\(layer)self_attn.q_norm.weight" : nil, kNorm: qkNorm ? "\(layer)self_attn.k_norm.weight" : nil,
        feedForward: feedForward)
}
