import Foundation
import MeshTensors

/// DeepSeek-V3/R1 and Kimi K2 (`DeepseekV3ForCausalLM`): multi-head latent attention (the cache
/// keeps a `kv_lora_rank` latent and a `qk_rope_head_dim` rotated key per token, see
/// `LatentAttention`), RoPE on interleaved pairs (`rope_interleave`), usually YaRN with its
/// mscale² on the softmax scale; the first `first_k_dense_replace` layers dense, then GLM-4.5's
/// grouped sigmoid routing and `n_shared_experts` shared experts. The multi-token-prediction
/// layers after the last (`num_nextn_predict_layers`) are not used.
enum DeepseekV3: Architecture {
    static let modelTypes = ["deepseek_v3", "kimi_k2"]

    static func spec(_ c: ConfigReader) throws -> ModelSpec {
        let basics = try DecoderBasics(c)
        if try c.bool("attention_bias", default: false) {
            throw ModelError("\(c.context): 'attention_bias: true' is not supported for deepseek_v3 "
                             + "(no released checkpoint uses it)")
        }
        let (nope, rope) = (try c.positiveInt("qk_nope_head_dim"), try c.positiveInt("qk_rope_head_dim"))
        var latent = LatentAttentionSpec(queryRank: try c.optionalInt("q_lora_rank"),
                                         kvRank: try c.positiveInt("kv_lora_rank"), nopeDim: nope, ropeDim: rope,
                                         valueDim: try c.positiveInt("v_head_dim"),
                                         scale: 1 / Float(nope + rope).squareRoot())
        let moe = try Glm4Moe.groupedMoE(c)
        let firstSparse = try c.optionalInt("first_k_dense_replace") ?? 0
        func layers(_ latent: LatentAttentionSpec) throws -> [LayerSpec] {
            try (0..<basics.layerCount).map { index in
                try basics.layer(index, attention: AttentionSpec(latent: latent), moe: index >= firstSparse ? moe : nil,
                                 denseSizeField: "intermediate_size")
            }
        }
        let pairing: RotaryEmbedding.Pairing = try c.bool("rope_interleave", default: true) ? .interleaved : .halves
        var spec = try basics.spec(modelType: "deepseek_v3", layers: layers(latent), pairing: pairing,
                                   ropeHeadDim: rope)
        // transformers' yarn_apply_mscale: YaRN with mscale_all_dim sharpens the softmax by mscale².
        if case .yarn(let yarn) = spec.rope.scaling, let all = yarn.mscaleAllDim, all != 0, yarn.factor > 1 {
            let mscale = Float(0.1 * all * log(yarn.factor) + 1)
            latent.scale *= mscale * mscale
            spec.layers = try layers(latent)
        }
        spec.headDim = nope + rope
        spec.unusedTrailingLayers = try c.optionalInt("num_nextn_predict_layers") ?? 0
        return spec
    }

    static func names(prefix p: String) -> ModelWeightNames {
        .llamaLayout(p) { layer, spec in
            var names = standardLayerNames(layer, feedForward: Glm4Moe.groupedFeedForward(layer, spec))
            names.latent = LatentAttentionNames(prefix: "\(layer)self_attn.")
            return names
        }
    }
}
