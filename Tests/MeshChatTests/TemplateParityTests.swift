import Foundation
@testable import MeshChat
import XCTest

/// Every real template in Templates/ × every conversation in Conversations/ × add_generation_prompt on/off renders
/// to exactly the text Python jinja2 renders (scripts/render-chat-template.py), or fails in both.
final class TemplateParityTests: XCTestCase {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()

    struct Template {
        let name: String
        let source: String
        let bosToken: String?
        let eosToken: String?
    }

    struct Conversation {
        let name: String
        let messages: JinjaValue
        let tools: JinjaValue?
        let extra: JinjaDict
    }

    static func templates() throws -> [Template] {
        let folder = directory.appendingPathComponent("Templates")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".jinja") }
        return try files.sorted().map { file in
            let name = String(file.dropLast(".jinja".count))
            let source = try String(contentsOf: folder.appendingPathComponent(file), encoding: .utf8)
            let meta = try JinjaValue(json: Data(contentsOf: folder.appendingPathComponent(name + ".json")))
            guard case .dict(let dict) = meta else { throw JinjaError.input("\(name).json is not an object") }
            return Template(name: name, source: source, bosToken: dict["bos_token"]?.stringValue,
                            eosToken: dict["eos_token"]?.stringValue)
        }
    }

    static func conversations() throws -> [Conversation] {
        let folder = directory.appendingPathComponent("Conversations")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".json") }
        return try files.sorted().map { file in
            guard case .dict(let dict) = try JinjaValue(json: Data(contentsOf: folder.appendingPathComponent(file))),
                  let messages = dict["messages"] else { throw JinjaError.input("\(file) has no messages") }
            var extra = JinjaDict()
            if case .dict(let given)? = dict["extra"] { extra = given }
            return Conversation(name: String(file.dropLast(".json".count)), messages: messages, tools: dict["tools"],
                                extra: extra)
        }
    }

    func testEveryTemplateAndConversationMatchesJinja2() throws {
        let templates = try Self.templates()
        let conversations = try Self.conversations()
        XCTAssertGreaterThanOrEqual(templates.count, 30)
        XCTAssertGreaterThanOrEqual(conversations.count, 20)
        var cases: [(label: String, item: ReferenceRenderer.Case)] = []
        for template in templates {
            for conversation in conversations {
                for prompt in [true, false] {
                    let item = ReferenceRenderer.Case(
                        template: template.source, messages: conversation.messages, tools: conversation.tools,
                        addGenerationPrompt: prompt, bosToken: template.bosToken, eosToken: template.eosToken,
                        extra: conversation.extra)
                    cases.append(("\(template.name) × \(conversation.name) × add_generation_prompt=\(prompt)", item))
                }
            }
        }
        let rendered = try ReferenceRenderer.assertParity(cases)
        var renderedByTemplate: [String: Int] = [:]
        for label in rendered { renderedByTemplate[String(label.prefix { $0 != " " }), default: 0] += 1 }
        // A template that fails every conversation would prove nothing.
        for template in templates {
            XCTAssertGreaterThan(renderedByTemplate[template.name, default: 0], 1, "\(template.name) renders too few")
        }
    }
}
