/// Qwen 1.5/2 MoE (`Qwen2MoeForCausalLM`): Qwen 2 attention (q/k/v biases), softmax top-k routing
/// (renormalised when `norm_topk_prob`), and an always-on shared expert whose output is scaled by
/// sigmoid(x · shared_expert_gate); dense layers where `mlp_only_layers` or `decoder_sparse_step` say.
enum Qwen2Moe: Architecture {
    static let modelTypes = ["qwen2_moe"]

    static func spec(_ c: ConfigReader) throws -> ModelSpec {
        let basics = try DecoderBasics(c)
        let moe = try MoESpec(
            expertCount: c.positiveInt("num_experts"), topK: c.positiveInt("num_experts_per_tok"),
            intermediateSize: c.positiveInt("moe_intermediate_size"),
            routing: .softmaxTopK(normalize: try c.bool("norm_topk_prob", default: false)),
            sharedExpertIntermediateSize: c.positiveInt("shared_expert_intermediate_size"), sharedExpertGated: true)
        let sparseStep = try c.optionalInt("decoder_sparse_step") ?? 1
        let denseOnly = Set(try c.intList("mlp_only_layers") ?? [])
        let bias = try c.bool("qkv_bias", default: true)
        let maxWindowLayers = try c.optionalInt("max_window_layers") ?? basics.layerCount
        // transformers' rule for configs without layer_types: even layers below max_window_layers.
        let windows = try basics.slidingWindows { $0 % 2 == 0 && $0 < maxWindowLayers }
        let layers = try (0..<basics.layerCount).map { index in
            let sparse = !denseOnly.contains(index) && sparseStep > 0 && (index + 1) % sparseStep == 0
            return try basics.layer(index, attention: AttentionSpec(slidingWindow: windows[index], qkvBias: bias),
                                    moe: sparse ? moe : nil, denseSizeField: "intermediate_size")
        }
        return try basics.spec(modelType: "qwen2_moe", layers: layers, pairing: .halves)
    }

    static func names(prefix p: String) -> ModelWeightNames {
        .llamaLayout(p) { layer, spec in
            guard spec.moe != nil else {
                return standardLayerNames(layer, feedForward: .dense(MLPNames(prefix: "\(layer)mlp.")))
            }
            var moe = MoENames.mlpExperts(layer, shared: MLPNames(prefix: "\(layer)mlp.shared_expert."))
            moe.sharedGate = "\(layer)mlp.shared_expert_gate.weight"
            return standardLayerNames(layer, feedForward: .moe(moe))
        }
    }
}
