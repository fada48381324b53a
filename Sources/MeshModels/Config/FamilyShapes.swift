/// Sizing for families whose configs `expertmesh plan` reads before the engine runs them: their
/// parameters as transformers instantiates them (text model, no multi-token-prediction layers).
extension ModelShape {
    static let familyReaders: [String: @Sendable (ConfigReader) throws -> ModelShape] = [
        "deepseek_v3": deepseekV3,
    ]

    /// DeepSeek-V3 (and Kimi K2): multi-head latent attention (the cache holds the latent and the rope
    /// key), dense first layers, sigmoid routing with a score-correction bias, shared experts.
    static func deepseekV3(_ config: ConfigReader) throws -> ModelShape {
        let h = try config.positiveInt("hidden_size"), heads = try config.positiveInt("num_attention_heads")
        let latent = try config.positiveInt("kv_lora_rank"), rope = try config.positiveInt("qk_rope_head_dim")
        let nope = try config.positiveInt("qk_nope_head_dim"), value = try config.positiveInt("v_head_dim")
        let query = try config.optionalInt("q_lora_rank").map { rank in h * rank + rank + rank * heads * (nope + rope) }
            ?? h * heads * (nope + rope)
        let attention = query + h * (latent + rope) + latent + latent * heads * (nope + value) + heads * value * h
        return try routedWithSharedExperts(config, attention: attention, kvValuesPerToken: latent + rope,
                                           expertCountKey: "n_routed_experts")
    }

    /// The DeepSeek-style layer stack: `first_k_dense_replace` dense layers, then MoE layers with a
    /// router (plus a bias per expert), routed experts and `n_shared_experts` shared ones.
    private static func routedWithSharedExperts(_ config: ConfigReader, attention: Int, kvValuesPerToken: Int,
                                                expertCountKey: String) throws -> ModelShape {
        let h = try config.positiveInt("hidden_size")
        let experts = try config.positiveInt(expertCountKey), expert = 3 * h * (try config.positiveInt("moe_intermediate_size"))
        let shared = try config.optionalInt("n_shared_experts") ?? 0
        let denseLayers = try config.optionalInt("first_k_dense_replace") ?? 0
        let dense = 3 * h * (try config.positiveInt("intermediate_size"))
        let topK = try config.positiveInt("num_experts_per_tok")
        let layers = (0..<(try config.positiveInt("num_hidden_layers"))).map { index in
            index < denseLayers
                ? Layer(attention: attention, kvValuesPerToken: kvValuesPerToken, norms: 2 * h, dense: dense, router: 0)
                : Layer(attention: attention, kvValuesPerToken: kvValuesPerToken, norms: 2 * h, dense: shared * expert,
                        router: experts * h + experts, experts: experts, expertParameters: expert, topK: topK)
        }
        return ModelShape(modelType: try config.string("model_type") ?? "", hiddenSize: h,
                          vocabSize: try config.positiveInt("vocab_size"),
                          tiedEmbeddings: try config.bool("tie_word_embeddings", default: false), layers: layers)
    }
}
