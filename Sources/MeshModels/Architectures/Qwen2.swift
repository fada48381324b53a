/// Qwen 2 / 2.5 (`Qwen2ForCausalLM`): Llama's layout with biases on q, k and v (not on o), and
/// sliding windows on the layers from `max_window_layers` on when `use_sliding_window` is set.
enum Qwen2: Architecture {
    static let modelTypes = ["qwen2"]

    static func spec(_ c: ConfigReader) throws -> ModelSpec {
        let basics = try DecoderBasics(c)
        let maxWindowLayers = try c.optionalInt("max_window_layers") ?? basics.layerCount
        let windows = try basics.slidingWindows { $0 >= maxWindowLayers }
        return try Llama.denseSpec(basics, modelType: "qwen2") {
            AttentionSpec(slidingWindow: windows[$0], qkvBias: true)
        }
    }

    static func names(prefix p: String) -> ModelWeightNames { Llama.denseNames(prefix: p) }
}
