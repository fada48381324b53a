/// OLMoE (`OlmoeForCausalLM`): every layer MoE with softmax top-k routing (renormalised when
/// `norm_topk_prob`); q and k normalised by one RMSNorm across all heads before RoPE, then
/// clamped with q's and v's values to ±`clip_qkv` when set.
enum Olmoe: Architecture {
    static let modelTypes = ["olmoe"]

    static func spec(_ c: ConfigReader) throws -> ModelSpec {
        let basics = try DecoderBasics(c)
        let moe = try MoESpec(
            expertCount: c.optionalInt("num_experts") ?? c.positiveInt("num_local_experts"), topK: c.positiveInt("num_experts_per_tok"),
            intermediateSize: c.positiveInt("intermediate_size"),
            routing: .softmaxTopK(normalize: try c.bool("norm_topk_prob", default: false)))
        let bias = try c.bool("attention_bias", default: false)
        let attention = AttentionSpec(qkNorm: .rmsAcrossHeadsBeforeRope, clipQKV: try c.optionalDouble("clip_qkv").map { Float($0) },
                                      qkvBias: bias, outputBias: bias)
        let layer = LayerSpec(attention: attention, feedForward: .moe(moe))
        return try basics.spec(modelType: "olmoe", layers: Array(repeating: layer, count: basics.layerCount), pairing: .halves,
                               normEps: 1e-5)
    }

    static func names(prefix p: String) -> ModelWeightNames {
        ModelWeightNames(embed: "\(p)embed_tokens.weight", finalNorm: "\(p)norm.weight", lmHead: "lm_head.weight", layer: { l, _ in
            let layer = "\(p)layers.\(l)."
            let moe = MoENames(
                router: ["\(layer)mlp.gate.weight"],
                perExpert: { e in MLPNames(prefix: "\(layer)mlp.experts.\(e).") },
                fusedGateUp: ["\(layer)mlp.experts.gate_up_proj"], fusedDown: ["\(layer)mlp.experts.down_proj"],
                fusedDefaultLayout: .outMajor, shared: nil)
            return standardLayerNames(layer, qkNorm: true, feedForward: .moe(moe))
        }, ignoredPrefixes: [])
    }
}
