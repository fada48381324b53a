/// Llama 2/3 (`LlamaForCausalLM`): a dense decoder, every layer attention + a gated MLP, that the
/// coordinator serves alone. Optional biases on every attention projection (`attention_bias`).
enum Llama: Architecture {
    static let modelTypes = ["llama"]

    static func spec(_ c: ConfigReader) throws -> ModelSpec {
        let basics = try DecoderBasics(c)
        let bias = try c.bool("attention_bias", default: false)
        return try denseSpec(basics, modelType: "llama") { _ in AttentionSpec(qkvBias: bias, outputBias: bias) }
    }

    static func names(prefix p: String) -> ModelWeightNames { denseNames(prefix: p) }

    /// Every layer dense with `intermediate_size` (a config asking for MLP biases is refused).
    static func denseSpec(_ basics: DecoderBasics, modelType: String,
                          attention: (Int) throws -> AttentionSpec) throws -> ModelSpec {
        if try basics.config.bool("mlp_bias", default: false) {
            throw ModelError("\(basics.config.context): 'mlp_bias: true' is not supported "
                             + "(no released \(modelType) checkpoint uses it)")
        }
        let layers = try (0..<basics.layerCount).map { index in
            try basics.layer(index, attention: attention(index), moe: nil, denseSizeField: "intermediate_size")
        }
        return try basics.spec(modelType: modelType, layers: layers, pairing: .halves)
    }

    /// `model.layers.N.self_attn.{q,k,v,o}_proj`, `model.layers.N.mlp.{gate,up,down}_proj`.
    static func denseNames(prefix p: String) -> ModelWeightNames {
        .llamaLayout(p) { layer, _ in standardLayerNames(layer, feedForward: .dense(MLPNames(prefix: "\(layer)mlp."))) }
    }
}
