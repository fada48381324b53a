/// Mixtral (`MixtralForCausalLM`): every layer is attention + a sparse MoE with softmax
/// top-k routing, renormalised; RoPE with `rotate_half` pairing.
enum Mixtral: Architecture {
    static let modelTypes = ["mixtral"]

    static func spec(_ c: ConfigReader) throws -> ModelSpec {
        let basics = try DecoderBasics(c)
        let moe = try MoESpec(expertCount: c.positiveInt("num_local_experts"), topK: c.positiveInt("num_experts_per_tok"),
                              intermediateSize: c.positiveInt("intermediate_size"),
                              routing: .softmaxTopK(normalize: true))
        let layer = LayerSpec(attention: AttentionSpec(), feedForward: .moe(moe))
        return try basics.spec(modelType: "mixtral", layers: Array(repeating: layer, count: basics.layerCount), pairing: .halves)
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
