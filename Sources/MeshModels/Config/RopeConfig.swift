import MeshTensors

/// Reads RoPE settings in both config styles: `rope_theta` + `rope_scaling` (checkpoints on
/// the hub) and transformers 5's `rope_parameters` object.
enum RopeConfig {
    static let supportedTypes = ["default", "linear", "dynamic", "yarn", "llama3"]

    /// `partialDefault`: the rotated fraction of a head when the config does not say (GLM-4.5: 0.5).
    static func read(_ config: ConfigReader, headDim: Int, pairing: RotaryEmbedding.Pairing,
                     partialDefault: Double = 1) throws -> RotaryEmbedding {
        let parameters = try config.object("rope_parameters")
        let scaling = try parameters ?? config.object("rope_scaling")
        let theta = try parameters?.double("rope_theta") ?? config.double("rope_theta")
        let type = try scaling?.string("rope_type") ?? scaling?.string("type") ?? "default"
        let partial = try parameters?.optionalDouble("partial_rotary_factor") ?? config.optionalDouble("partial_rotary_factor")
            ?? partialDefault
        let rotaryDim = Int(Double(headDim) * partial)
        guard rotaryDim > 0, rotaryDim <= headDim, rotaryDim % 2 == 0 else {
            throw ModelError("\(config.context): partial_rotary_factor \(partial) gives \(rotaryDim) rotated values of a "
                             + "\(headDim)-value head; it must give an even number from 2 to \(headDim)")
        }
        func fields() throws -> ConfigReader {
            guard let scaling else { throw ModelError("\(config.context): rope_type \(type) needs rope scaling fields") }
            return scaling
        }
        let kind: RotaryEmbedding.Scaling
        switch type {
        case "default":
            kind = .none
        case "linear":
            kind = .linear(factor: try fields().double("factor"))
        case "dynamic":
            let maxPositions = Double(try config.positiveInt("max_position_embeddings"))
            kind = .dynamic(factor: try fields().double("factor"), maxPositions: maxPositions)
        case "llama3":
            let s = try fields()
            kind = .llama3(try RotaryEmbedding.Llama3Scaling(
                factor: s.double("factor"), lowFrequencyFactor: s.double("low_freq_factor"),
                highFrequencyFactor: s.double("high_freq_factor"),
                originalMaxPositions: s.double("original_max_position_embeddings")))
        case "yarn":
            kind = .yarn(try yarn(fields(), config))
        default:
            throw ModelError("\(config.context): rope_type '\(type)' is not supported; supported: "
                             + supportedTypes.joined(separator: ", "))
        }
        return RotaryEmbedding(headDim: headDim, rotaryDim: rotaryDim, theta: theta, pairing: pairing, scaling: kind)
    }

    private static func yarn(_ s: ConfigReader, _ config: ConfigReader) throws -> RotaryEmbedding.YarnScaling {
        let original = try s.double("original_max_position_embeddings")
        // DeepSeek-V3 style configs may leave the factor out: the ratio of the two context lengths.
        let factor = try s.optionalDouble("factor") ?? Double(config.positiveInt("max_position_embeddings")) / original
        var yarn = RotaryEmbedding.YarnScaling(factor: factor, originalMaxPositions: original)
        yarn.betaFast = try s.optionalDouble("beta_fast") ?? 32
        yarn.betaSlow = try s.optionalDouble("beta_slow") ?? 1
        yarn.truncate = try s.bool("truncate", default: true)
        yarn.attentionFactor = try s.optionalDouble("attention_factor")
        yarn.mscale = try s.optionalDouble("mscale")
        yarn.mscaleAllDim = try s.optionalDouble("mscale_all_dim")
        return yarn
    }
}
