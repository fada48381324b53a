import Foundation
import MeshChat
import XCTest

/// `ChatTemplate.load(modelDirectory:)` reads templates and special tokens the way transformers does.
final class ChatTemplateLoadTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("chat-template-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func write(_ name: String, _ text: String) throws {
        try Data(text.utf8).write(to: directory.appendingPathComponent(name))
    }

    private func renderLoaded() throws -> String? {
        let loaded = try ChatTemplate.load(modelDirectory: directory)
        return try loaded.template?.render(messages: [["role": "user", "content": "hi"]], addGenerationPrompt: true,
                                          bosToken: loaded.bosToken, eosToken: loaded.eosToken)
    }

    func testStringTemplateWithAddedTokenObjects() throws {
        try write("tokenizer_config.json", #"""
            {"bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
             "eos_token": "</s>", "chat_template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"}
            """#)
        XCTAssertEqual(try renderLoaded(), "<s>hi</s>")
    }

    func testNullTokenIsUndefinedInTheTemplate() throws {
        try write("tokenizer_config.json", #"""
            {"bos_token": null, "eos_token": "<|im_end|>", "chat_template": "{{ bos_token is defined }}{{ eos_token }}"}
            """#)
        let loaded = try ChatTemplate.load(modelDirectory: directory)
        XCTAssertNil(loaded.bosToken)
        XCTAssertEqual(try renderLoaded(), "False<|im_end|>")
    }

    func testListFormUsesTheDefaultTemplate() throws {
        try write("tokenizer_config.json", #"""
            {"chat_template": [{"name": "tool_use", "template": "tools"}, {"name": "default", "template": "default"}]}
            """#)
        XCTAssertEqual(try renderLoaded(), "default")
        try write("tokenizer_config.json", #"{"chat_template": [{"name": "rag", "template": "x"}]}"#)
        XCTAssertThrowsError(try ChatTemplate.load(modelDirectory: directory)) {
            XCTAssertTrue("\($0)".contains("no \"default\""), "\($0)")
        }
    }

    func testChatTemplateFileTakesPriority() throws {
        try write("tokenizer_config.json", #"{"eos_token": "</s>", "chat_template": "from config"}"#)
        try write("chat_template.jinja", "from file {{ eos_token }}\n")
        XCTAssertEqual(try renderLoaded(), "from file </s>")
    }

    func testDirectoryWithoutTemplateStillHasItsSpecialTokens() throws {
        XCTAssertNil(try ChatTemplate.load(modelDirectory: directory).template)
        try write("tokenizer_config.json", #"{"eos_token": "</s>"}"#)
        let loaded = try ChatTemplate.load(modelDirectory: directory)
        XCTAssertNil(loaded.template)
        XCTAssertEqual(loaded.eosToken, "</s>")
    }

    func testErrorsNameTheFile() throws {
        try write("tokenizer_config.json", "{not json")
        XCTAssertThrowsError(try ChatTemplate.load(modelDirectory: directory)) {
            XCTAssertTrue("\($0)".contains("tokenizer_config.json"), "\($0)")
        }
        try write("tokenizer_config.json", #"{"chat_template": "ok\n{% if %}"}"#)
        XCTAssertThrowsError(try ChatTemplate.load(modelDirectory: directory)) { error in
            XCTAssertEqual((error as? JinjaError)?.line, 2)
            XCTAssertTrue("\(error)".contains("template line 2: ") && "\(error)".contains("chat_template"), "\(error)")
        }
        try write("tokenizer_config.json", #"{"chat_template": "x", "eos_token": 5}"#)
        XCTAssertThrowsError(try ChatTemplate.load(modelDirectory: directory)) {
            XCTAssertTrue("\($0)".contains("eos_token"), "\($0)")
        }
    }

    func testReferenceTemplatesLoadFromModelDirectories() throws {
        let templates = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Templates")
        let source = try String(contentsOf: templates.appendingPathComponent("mixtral-8x7b-instruct-v0.1.jinja"),
                                encoding: .utf8)
        let config = ["bos_token": "<s>", "eos_token": "</s>", "chat_template": source]
        let configURL = directory.appendingPathComponent("tokenizer_config.json")
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        let loaded = try ChatTemplate.load(modelDirectory: directory)
        let text = try XCTUnwrap(loaded.template).render(
            messages: [["role": "system", "content": "Be brief."], ["role": "user", "content": "Hi"],
                       ["role": "assistant", "content": "Hello"], ["role": "user", "content": "Bye"]],
            addGenerationPrompt: true, bosToken: loaded.bosToken, eosToken: loaded.eosToken)
        XCTAssertEqual(text, "<s> [INST] Be brief.\n\nHi [/INST] Hello</s> [INST] Bye [/INST]")
    }
}
