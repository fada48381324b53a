/// Llama 4 text (`Llama4ForCausalLM`, and the text half of `Llama4ForConditionalGeneration`).
/// Differences from Mixtral, following transformers' modeling_llama4.py:
/// - MoE layers every `interleave_moe_layer_step` layers (or the explicit `moe_layers`), dense
///   MLPs (`intermediate_size_mlp`) elsewhere; MoE layers add an always-on shared expert;
/// - routing: top-k on router logits, sigmoid of the chosen logits, applied to the expert INPUT;
/// - RoPE as complex rotation of interleaved pairs; NoPE layers where `no_rope_layers[i] == 0`;
/// - RoPE layers: weightless L2 norm of q and k after RoPE (`use_qk_norm`) and chunked
///   attention (`attention_chunk_size`); NoPE layers: full attention with temperature tuning.
enum Llama4: Architecture {
    static let modelTypes = ["llama4_text"]

    static func spec(_ c: ConfigReader) throws -> ModelSpec {
        let basics = try DecoderBasics(c)
        let layerCount = basics.layerCount
        let step = try c.optionalInt("interleave_moe_layer_step") ?? 1
        guard step > 0 else { throw ModelError("\(c.context): 'interleave_moe_layer_step' must be positive") }
        let moeLayers = Set(try c.intList("moe_layers") ?? Array(stride(from: step - 1, to: layerCount, by: step)))
        let interval = try c.optionalInt("no_rope_layer_interval") ?? 4
        var ropeLayers = try c.intList("no_rope_layers") ?? []
        if ropeLayers.isEmpty { ropeLayers = (0..<layerCount).map { ($0 + 1) % interval != 0 ? 1 : 0 } }
        guard ropeLayers.count == layerCount else {
            throw ModelError("\(c.context): 'no_rope_layers' has \(ropeLayers.count) entries for \(layerCount) layers")
        }
        let chunkSize = try c.optionalInt("attention_chunk_size")
        let tuning = try c.bool("attn_temperature_tuning", default: true)
            ? AttentionSpec.TemperatureTuning(floorScale: try c.optionalDouble("floor_scale") ?? 8192, attnScale: try c.optionalDouble("attn_scale") ?? 0.1)
            : nil
        let useQKNorm = try c.bool("use_qk_norm", default: true)
        let moe = try MoESpec(expertCount: c.positiveInt("num_local_experts"), topK: c.positiveInt("num_experts_per_tok"),
                              intermediateSize: c.positiveInt("intermediate_size"), routing: .topKSigmoid,
                              sharedExpertIntermediateSize: c.positiveInt("intermediate_size"))
        var layers: [LayerSpec] = []
        for index in 0..<layerCount {
            let rope = ropeLayers[index] != 0
            let attention = AttentionSpec(usesRope: rope, qkNorm: rope && useQKNorm ? .l2AfterRope : .none,
                                          chunkSize: rope ? chunkSize : nil, temperatureTuning: rope ? nil : tuning)
            layers.append(try basics.layer(index, attention: attention, moe: moeLayers.contains(index) ? moe : nil,
                                           denseSizeField: "intermediate_size_mlp"))
        }
        return try basics.spec(modelType: "llama4_text", layers: layers, pairing: .interleaved)
    }

    static func names(prefix p: String) -> ModelWeightNames {
        ModelWeightNames(embed: "\(p)embed_tokens.weight", finalNorm: "\(p)norm.weight", lmHead: "lm_head.weight", layer: { l, spec in
            let layer = "\(p)layers.\(l)."
            let ff = "\(layer)feed_forward."
            let feedForward: FeedForwardNames = spec.moe == nil ? .dense(MLPNames(prefix: ff)) : .moe(MoENames(
                router: ["\(ff)router.weight"],
                perExpert: { e in MLPNames(prefix: "\(ff)experts.\(e).") },
                fusedGateUp: ["\(ff)experts.gate_up_proj"], fusedDown: ["\(ff)experts.down_proj"],
                fusedDefaultLayout: .inMajor, shared: MLPNames(prefix: "\(ff)shared_expert.")))
            return standardLayerNames(layer, feedForward: feedForward)
        }, ignoredPrefixes: ["vision_model.", "multi_modal_projector.", "model.vision_model.", "model.multi_modal_projector."])
    }
}
