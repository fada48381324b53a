/// Qwen 3 (`Qwen3ForCausalLM`, dense) and Qwen 3 MoE (`Qwen3MoeForCausalLM`): per-head RMSNorm on
/// q and k before RoPE; softmax top-k routing with optional renormalisation (`norm_topk_prob`);
/// some layers of a MoE model may be dense (`mlp_only_layers`, `decoder_sparse_step`).
enum Qwen3: Architecture {
    static let modelTypes = ["qwen3", "qwen3_moe"]

    static func spec(_ c: ConfigReader) throws -> ModelSpec {
        let basics = try DecoderBasics(c)
        // Hub checkpoints say num_experts; transformers 5 writes num_local_experts. Dense Qwen 3 has neither.
        let expertCount = try c.optionalInt("num_experts") ?? c.optionalInt("num_local_experts") ?? 0
        let sparseStep = try c.optionalInt("decoder_sparse_step") ?? 1
        let denseOnly = Set(try c.intList("mlp_only_layers") ?? [])
        let moe = expertCount > 0 ? try MoESpec(
            expertCount: expertCount, topK: c.positiveInt("num_experts_per_tok"),
            intermediateSize: c.positiveInt("moe_intermediate_size"),
            routing: .softmaxTopK(normalize: try c.bool("norm_topk_prob", default: false))) : nil
        let bias = try c.bool("attention_bias", default: false)
        let maxWindowLayers = try c.optionalInt("max_window_layers") ?? basics.layerCount
        let windows = try basics.slidingWindows { $0 >= maxWindowLayers }
        var layers: [LayerSpec] = []
        for index in 0..<basics.layerCount {
            let attention = AttentionSpec(qkNorm: .rmsBeforeRope, slidingWindow: windows[index], qkvBias: bias,
                                          outputBias: bias)
            // transformers: MoE when not in mlp_only_layers and (index + 1) % decoder_sparse_step == 0.
            let sparse = !denseOnly.contains(index) && sparseStep > 0 && (index + 1) % sparseStep == 0
            layers.append(try basics.layer(index, attention: attention, moe: sparse ? moe : nil,
                                           denseSizeField: "intermediate_size"))
        }
        return try basics.spec(modelType: c.string("model_type") ?? "qwen3_moe", layers: layers, pairing: .halves)
    }

    static func names(prefix p: String) -> ModelWeightNames {
        .llamaLayout(p) { layer, spec in
            standardLayerNames(layer, qkNorm: true, feedForward: spec.moe == nil
                ? .dense(MLPNames(prefix: "\(layer)mlp.")) : .moe(.mlpExperts(layer)))
        }
    }
}
