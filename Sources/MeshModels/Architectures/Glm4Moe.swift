/// GLM-4.5 and GLM-4.5-Air (`Glm4MoeForCausalLM`): the first `first_k_dense_replace` layers dense,
/// then MoE layers with grouped sigmoid routing (score-correction bias, `n_group`/`topk_group`,
/// `routed_scaling_factor`) and `n_shared_experts` shared experts as one MLP; attention with
/// q/k/v biases (`attention_bias`), optional per-head q/k RMSNorm (`use_qk_norm`) and RoPE on the
/// first half of each head (`partial_rotary_factor`, 0.5 unless the config says otherwise).
/// The multi-token-prediction layers after the last (`num_nextn_predict_layers`) are not used.
enum Glm4Moe: Architecture {
    static let modelTypes = ["glm4_moe"]

    static func spec(_ c: ConfigReader) throws -> ModelSpec {
        let basics = try DecoderBasics(c)
        let moe = try groupedMoE(c)
        let firstSparse = try c.optionalInt("first_k_dense_replace") ?? 1
        let attention = AttentionSpec(qkNorm: try c.bool("use_qk_norm", default: false) ? .rmsBeforeRope : .none,
                                      qkvBias: try c.bool("attention_bias", default: false))
        let layers = try (0..<basics.layerCount).map { index in
            try basics.layer(index, attention: attention, moe: index >= firstSparse ? moe : nil,
                             denseSizeField: "intermediate_size")
        }
        var spec = try basics.spec(modelType: "glm4_moe", layers: layers, pairing: .halves, partialRotaryDefault: 0.5)
        spec.unusedTrailingLayers = try c.optionalInt("num_nextn_predict_layers") ?? 0
        return spec
    }

    /// The routed experts of GLM-4.5 and DeepSeek-V3: grouped sigmoid routing and shared experts.
    static func groupedMoE(_ c: ConfigReader) throws -> MoESpec {
        let experts = try c.optionalInt("n_routed_experts") ?? c.positiveInt("num_local_experts")
        let groups = try c.optionalInt("n_group") ?? 1
        guard groups > 0, experts % groups == 0 else {
            throw ModelError("\(c.context): n_group \(groups) must divide the \(experts) routed experts")
        }
        let rule = try MoESpec.GroupedSigmoid(
            groups: groups, topKGroups: c.optionalInt("topk_group") ?? 1,
            normalize: c.bool("norm_topk_prob", default: true),
            scale: Float(c.optionalDouble("routed_scaling_factor") ?? 1))
        let expertSize = try c.positiveInt("moe_intermediate_size")
        let shared = try c.optionalInt("n_shared_experts") ?? 1
        return try MoESpec(expertCount: experts, topK: c.positiveInt("num_experts_per_tok"),
                           intermediateSize: expertSize,
                           routing: .groupedSigmoid(rule),
                           sharedExpertIntermediateSize: shared > 0 ? expertSize * shared : nil)
    }

    static func names(prefix p: String) -> ModelWeightNames {
        .llamaLayout(p) { layer, spec in
            standardLayerNames(layer, qkNorm: spec.attention.qkNorm == .rmsBeforeRope,
                               feedForward: groupedFeedForward(layer, spec))
        }
    }

    /// A dense MLP, or routed experts with the router's correction bias and the shared experts
    /// (GLM-4.5 and DeepSeek-V3 name them alike).
    static func groupedFeedForward(_ layer: String, _ spec: LayerSpec) -> FeedForwardNames {
        guard spec.moe != nil else { return .dense(MLPNames(prefix: "\(layer)mlp.")) }
        var moe = MoENames.mlpExperts(layer, shared: MLPNames(prefix: "\(layer)mlp.shared_experts."))
        moe.scoreCorrectionBias = "\(layer)mlp.gate.e_score_correction_bias"
        return .moe(moe)
    }
}
