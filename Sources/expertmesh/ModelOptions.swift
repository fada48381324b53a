import ArgumentParser
import Foundation
import MeshModels
import MeshServer
import MeshTokenizers

/// `--model DIR`, shared by the commands that open a model.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "Hugging Face model directory (config.json, *.safetensors, optional tokenizer.json).")
    var model: String

    var directory: URL { URL(fileURLWithPath: model) }

    /// The tokenizer of the model directory, or nil if it has none.
    func tokenizer() throws -> Tokenizer? { try Tokenizer.inDirectory(directory) }
}
