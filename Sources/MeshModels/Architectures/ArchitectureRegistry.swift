import Foundation

/// One architecture: decodes its config and names its checkpoint tensors.
protocol Architecture: Sendable {
    static var modelTypes: [String] { get }
    static func spec(_ config: ConfigReader) throws -> ModelSpec
    /// Names with the decoder under `prefix` (e.g. "model.").
    static func names(prefix: String) -> ModelWeightNames
}

/// `model_type` → architecture, and unwrapping of multimodal wrappers to their text model.
public enum ArchitectureRegistry {
    static let architectures: [any Architecture.Type] = [
        Mixtral.self, Qwen3.self, Llama4.self, Qwen2Moe.self, Olmoe.self, Glm4Moe.self, DeepseekV3.self, GptOss.self,
        Dbrx.self, Llama.self, Mistral.self, Qwen2.self,
    ]

    /// Wrappers whose text model sits in `text_config`.
    static let wrappers: [String: String] = ["llama4": "llama4_text"]

    public static var supportedModelTypes: [String] {
        (architectures.flatMap { $0.modelTypes } + wrappers.keys).sorted()
    }

    /// Where the text decoder and LM head may live: plain causal LMs, then wrapper layouts
    /// (transformers 4.x `language_model.model.`, 5.x `model.language_model.`), then DBRX's `transformer.`.
    static let layouts: [(decoder: String, lmHead: String)] = [
        ("model.", "lm_head.weight"),
        ("language_model.model.", "language_model.lm_head.weight"),
        ("model.language_model.", "lm_head.weight"),
        ("transformer.", "lm_head.weight"),
    ]

    static func resolve(_ config: ConfigReader) throws -> (any Architecture.Type, ConfigReader) {
        guard let modelType = try config.string("model_type") else {
            throw ModelError("\(config.context): missing field 'model_type'; supported: \(supportedModelTypes.joined(separator: ", "))")
        }
        var textConfig = config
        var textType = modelType
        if let inner = wrappers[modelType] {
            guard let nested = try config.object("text_config") else {
                throw ModelError("\(config.context): model_type '\(modelType)' needs a 'text_config' object")
            }
            textConfig = nested
            textType = try nested.string("model_type") ?? inner
            // Some wrappers keep tie_word_embeddings at the top level only.
            if !nested.has("tie_word_embeddings"), config.has("tie_word_embeddings") {
                var values = nested.values
                values["tie_word_embeddings"] = config.values["tie_word_embeddings"]
                textConfig = ConfigReader(values: values, context: nested.context)
            }
        }
        guard let architecture = architectures.first(where: { $0.modelTypes.contains(textType) }) else {
            throw ModelError("unknown model_type '\(modelType)'; supported: \(supportedModelTypes.joined(separator: ", "))")
        }
        return (architecture, textConfig)
    }
}

extension ArchitectureRegistry {
    /// The architecture of a `config.json` and the spec it describes.
    static func decode(configFile: URL) throws -> (any Architecture.Type, ModelSpec) {
        let (architecture, textConfig) = try resolve(ConfigReader(file: configFile))
        return (architecture, try architecture.spec(textConfig))
    }
}

extension ModelSpec {
    /// Decodes a `config.json` of any supported architecture (no weights needed).
    public static func decode(configFile: URL) throws -> ModelSpec {
        try ArchitectureRegistry.decode(configFile: configFile).1
    }
}
