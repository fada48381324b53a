import MeshTensors

/// Reads RoPE settings in both config styles: `rope_theta` + `rope_scaling` (checkpoints on
/// the hub) and transformers 5's `rope_parameters` object.
enum RopeConfig {
    static func read(_ config: ConfigReader, headDim: Int, pairing: RotaryEmbedding.Pairing) throws -> RotaryEmbedding {
        let parameters = try config.object("rope_parameters")
        let scaling = try parameters ?? config.object("rope_scaling")
        let theta = try parameters?.double("rope_theta") ?? config.double("rope_theta")
        let type = try scaling?.string("rope_type") ?? scaling?.string("type") ?? "default"
        switch type {
        case "default":
            return RotaryEmbedding(headDim: headDim, theta: theta, pairing: pairing)
        case "llama3":
            guard let s = scaling else { throw ModelError("\(config.context): rope_type llama3 needs rope scaling fields") }
            let llama3 = try RotaryEmbedding.Llama3Scaling(
                factor: s.double("factor"), lowFrequencyFactor: s.double("low_freq_factor"),
                highFrequencyFactor: s.double("high_freq_factor"),
                originalMaxPositions: s.double("original_max_position_embeddings"))
            return RotaryEmbedding(headDim: headDim, theta: theta, pairing: pairing, llama3: llama3)
        default:
            throw ModelError("\(config.context): rope_type '\(type)' is not supported; supported: default, llama3")
        }
    }
}
