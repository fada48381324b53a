/// Mistral (`MistralForCausalLM`): Llama's layout with sliding-window attention on every layer
/// when `sliding_window` is set (Mistral 7B v0.1: 4096 positions; later versions: null).
enum Mistral: Architecture {
    static let modelTypes = ["mistral"]

    static func spec(_ c: ConfigReader) throws -> ModelSpec {
        let basics = try DecoderBasics(c)
        let windows = try basics.slidingWindows { _ in true }
        return try Llama.denseSpec(basics, modelType: "mistral") { AttentionSpec(slidingWindow: windows[$0]) }
    }

    static func names(prefix p: String) -> ModelWeightNames { Llama.denseNames(prefix: p) }
}
