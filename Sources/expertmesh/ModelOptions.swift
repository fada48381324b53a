import ArgumentParser
import Foundation
import MeshModels
import MeshTokenizers

/// `--model DIR`, shared by the commands that open a model.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "Hugging Face model directory (config.json, *.safetensors, optional tokenizer.json).")
    var model: String

    var directory: URL { URL(fileURLWithPath: model) }

    /// The tokenizer of the model directory, or nil if it has none.
    func tokenizer() throws -> Tokenizer? {
        let file = directory.appendingPathComponent("tokenizer.json")
        guard FileManager.default.fileExists(atPath: file.path) else { return nil }
        return try Tokenizer(directory: directory)
    }
}
