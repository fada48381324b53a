/// OLMoE (`OlmoeForCausalLM`): every layer MoE with softmax top-k routing (renormalised when
/// `norm_topk_prob`); q and k normalised by one RMSNorm across all heads before RoPE, then
/// clamped with q's and v's values to ±`clip_qkv` when set.
enum Olmoe: Architecture {
    static let modelTypes = ["olmoe"]

    static func spec(_ c: ConfigReader) throws -> ModelSpec {
        let basics = try DecoderBasics(c)
        let moe = try MoESpec(
            expertCount: c.optionalInt("num_experts") ?? c.positiveInt("num_local_experts"),
            topK: c.positiveInt("num_experts_per_tok"), intermediateSize: c.positiveInt("intermediate_size"),
            routing: .softmaxTopK(normalize: try c.bool("norm_topk_prob", default: false)))
        let bias = try c.bool("attention_bias", default: false)
        let clip = try c.optionalDouble("clip_qkv").map { Float($0) }
        let attention = AttentionSpec(qkNorm: .rmsAcrossHeadsBeforeRope, clipQKV: clip, qkvBias: bias, outputBias: bias)
        let layer = LayerSpec(attention: attention, feedForward: .moe(moe))
        let layers = Array(repeating: layer, count: basics.layerCount)
        return try basics.spec(modelType: "olmoe", layers: layers, pairing: .halves, normEps: 1e-5)
    }

    static func names(prefix p: String) -> ModelWeightNames {
        .llamaLayout(p) { layer, _ in standardLayerNames(layer, qkNorm: true, feedForward: .moe(.mlpExperts(layer))) }
    }
}
