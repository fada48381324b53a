import Foundation
import MeshEngine
import MeshModels
import MeshTokenizers
import XCTest

/// models/demo, the model scripts/demo.sh serves, against transformers' own run of it
/// (Tests/Fixtures/demo/expected.json, recorded by scripts/train-demo-model.py).
final class DemoModelTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..")
        .standardizedFileURL
    static let model = repository.appendingPathComponent("models/demo")

    static func expected() throws -> [String: Any] {
        let file = repository.appendingPathComponent("Tests/Fixtures/demo/expected.json")
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any])
    }

    func testGreedyTokensEqualTransformers() throws {
        let expected = try Self.expected()
        let cases = try XCTUnwrap(expected["cases"] as? [[String: Any]])
        XCTAssertGreaterThanOrEqual(cases.count, 6)
        let tokenizer = try Tokenizer(directory: Self.model)
        let engine = try LocalEngine(directory: Self.model)
        for entry in cases {
            let prompt = try XCTUnwrap(entry["prompt_tokens"] as? [Int])
            let greedy = try XCTUnwrap(entry["greedy_tokens"] as? [Int])
            if let text = entry["prompt"] as? String {
                XCTAssertEqual(tokenizer.encode(text), prompt, "tokens of \(text.debugDescription) differ from HF tokenizers")
            }
            let result = try engine.generator.generate(GenerationRequest(prompt: prompt, maxTokens: greedy.count))
            XCTAssertEqual(result.tokens, greedy, "greedy continuation of \(entry["prompt"] ?? entry["messages"] ?? "") differs")
            XCTAssertEqual(tokenizer.decode(result.tokens), entry["text"] as? String)
        }
    }

    /// The issue's bounds: the Mixtral architecture, 8 experts top-2, 5–25M parameters, at most 40 MB, bf16.
    func testTheDemoModelIsASmallBF16Mixtral() throws {
        let model = try LoadedModel(directory: Self.model)
        XCTAssertEqual(model.spec.modelType, "mixtral")
        let config = try XCTUnwrap(JSONSerialization.jsonObject(
            with: Data(contentsOf: Self.model.appendingPathComponent("config.json"))) as? [String: Any])
        XCTAssertEqual(config["num_local_experts"] as? Int, 8)
        XCTAssertEqual(config["num_experts_per_tok"] as? Int, 2)
        let parameters = try XCTUnwrap(try Self.expected()["parameters"] as? Int)
        XCTAssertTrue((5_000_000...25_000_000).contains(parameters), "\(parameters) parameters")
        let files = try FileManager.default.contentsOfDirectory(at: Self.model, includingPropertiesForKeys: [.fileSizeKey])
        let bytes = try files.map { try $0.resourceValues(forKeys: [.fileSizeKey]).fileSize ?? 0 }.reduce(0, +)
        XCTAssertLessThanOrEqual(bytes, 40_000_000, "models/demo holds \(bytes) bytes")
        XCTAssertEqual(model.dense.lmHead.dtype, .bf16)
        let validation = try XCTUnwrap(try Self.expected()["validation_loss"] as? Double)
        XCTAssertLessThan(validation, 4.5, "the recorded validation loss says the model has not learnt English")
    }
}
