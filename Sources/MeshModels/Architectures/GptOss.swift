/// gpt-oss-20b/120b (`GptOssForCausalLM`): attention with biases and learned sinks, sliding-window
/// layers alternating with full ones (`layer_types`, by default the even layers slide), YaRN RoPE;
/// every layer MoE, the router with a bias, softmax over the top-k logits, and experts with biases
/// and a clamped SwiGLU (`swiglu_alpha`, `swiglu_limit`) whose fused gate/up outputs interleave.
/// The hub's checkpoints store the experts as MXFP4 blocks (`*_blocks`/`*_scales`): they are read
/// in place and multiplied 4 bits a value (`LinearWeight(mxfp4Blocks:scales:)`), on workers too.
enum GptOss: Architecture {
    static let modelTypes = ["gpt_oss"]

    static func spec(_ c: ConfigReader) throws -> ModelSpec {
        let basics = try DecoderBasics(c)
        var moe = try MoESpec(expertCount: c.positiveInt("num_local_experts"),
                              topK: c.positiveInt("num_experts_per_tok"),
                              intermediateSize: c.positiveInt("intermediate_size"), routing: .topKSoftmax)
        moe.expertActivation = .clampedSwiGLU(alpha: Float(try c.optionalDouble("swiglu_alpha") ?? 1.702),
                                              limit: Float(try c.optionalDouble("swiglu_limit") ?? 7))
        (moe.routerBias, moe.expertBiases) = (true, true)
        let bias = try c.bool("attention_bias", default: true)
        let windows = try basics.slidingWindows { $0 % 2 == 0 }
        let layers = (0..<basics.layerCount).map { index in
            LayerSpec(attention: AttentionSpec(slidingWindow: windows[index], qkvBias: bias, outputBias: bias,
                                               sinks: true), feedForward: .moe(moe))
        }
        return try basics.spec(modelType: "gpt_oss", layers: layers, pairing: .halves)
    }

    static func names(prefix p: String) -> ModelWeightNames {
        .llamaLayout(p) { layer, _ in
            let experts = "\(layer)mlp.experts."
            var moe = MoENames(router: ["\(layer)mlp.router.weight"],
                               perExpert: { e in MLPNames(prefix: "\(experts)\(e).") },
                               fusedGateUp: ["\(experts)gate_up_proj"], fusedDown: ["\(experts)down_proj"],
                               fusedDefaultLayout: .inMajor, shared: nil)
            moe.interleavedGateUp = true
            (moe.fusedGateUpBias, moe.fusedDownBias) = ("\(experts)gate_up_proj_bias", "\(experts)down_proj_bias")
            moe.routerBias = "\(layer)mlp.router.bias"
            var names = standardLayerNames(layer, feedForward: .moe(moe))
            names.sinks = "\(layer)self_attn.sinks"
            return names
        }
    }
}
