import Foundation
@testable import MeshChat
import XCTest

/// Seeded random conversations through the real templates: roles in any order, missing, null, empty, list and
/// non-string content, tool calls with odd ids and arguments, tool results, reasoning, tools on and off, template
/// variables. jinja2 and MeshChat must agree on every one (same text, or both fail).
final class RandomConversationParityTests: XCTestCase {
    /// A small seeded generator (SplitMix64), so the cases are the same on every run and machine.
    struct SeededGenerator: RandomNumberGenerator {
        var state: UInt64

        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let contents: [JinjaValue] = [
        "", " ", "hi", "  padded  ", "line1\nline2", "<think>\nr\n</think>\n\nanswer", "{{ x }}", "é👍中",
        "<tool_response>\nok\n</tool_response>", "a\tb", "ends with newline\n", "\n", "[INST]", "'quote\"", .none,
        [["type": "text", "text": "part"]], [["type": "text", "text": "a"], ["type": "image"]], 5, 1.5,
    ]
    static let arguments: [JinjaValue] = [
        ["location": "Paris"], [:], ["n": 1, "f": 0.5, "b": true, "z": .none, "l": [1, "x"]],
        #"{"location": "Paris"}"#, "not json", ["nested": ["k": [1.0, ["é": "ü"]]]],
    ]
    static let tools: JinjaValue = [[
        "type": "function",
        "function": ["name": "get_current_weather", "description": "Get weather", "parameters": [
            "type": "object", "required": ["location"],
            "properties": ["location": ["type": "string", "description": "City"],
                           "unit": ["type": "string", "enum": ["c", "f"]]],
        ]],
    ]]
    static let extras: [JinjaDict] = [
        JinjaDict(), JinjaDict([("enable_thinking", false)]), JinjaDict([("enable_thinking", true)]),
        JinjaDict([("functions", "[]"), ("datetime", "2024-07-26")]),
    ]

    private func toolCall(_ index: Int, _ random: inout SeededGenerator) -> JinjaValue {
        let ids: [JinjaValue] = ["call12345", "abcdefghi", "short", .string("call_\(index)")]
        var function = JinjaDict([("name", ["get_current_weather", "search", "x"].randomElement(using: &random)!),
                                  ("arguments", Self.arguments.randomElement(using: &random)!)])
        let roll = Double.random(in: 0..<1, using: &random)
        if roll < 0.1 { return .dict(function) }
        var call = JinjaDict([("id", ids.randomElement(using: &random)!), ("type", "function")])
        if roll < 0.2 { call["id"] = nil }
        call["function"] = .dict(function)
        return .dict(call)
    }

    private func message(_ random: inout SeededGenerator) -> JinjaValue {
        let role = ["system", "user", "user", "assistant", "assistant", "tool"].randomElement(using: &random)!
        var message = JinjaDict([("role", .string(role))])
        if Double.random(in: 0..<1, using: &random) < 0.95 {
            message["content"] = Self.contents.randomElement(using: &random)!
        }
        if role == "assistant", Double.random(in: 0..<1, using: &random) < 0.3 {
            message["tool_calls"] = .list((0..<Int.random(in: 1...2, using: &random)).map { toolCall($0, &random) })
        }
        if role == "assistant", Double.random(in: 0..<1, using: &random) < 0.2 {
            message["reasoning_content"] = ["think", "", .none].randomElement(using: &random)!
        }
        if role == "tool" {
            if Double.random(in: 0..<1, using: &random) < 0.7 { message["tool_call_id"] = "call12345" }
            if Double.random(in: 0..<1, using: &random) < 0.5 { message["name"] = "get_current_weather" }
        }
        return .dict(message)
    }

    func testRandomConversationsMatchJinja2() throws {
        var random = SeededGenerator(state: 20_240_726)
        let templates = try TemplateParityTests.templates()
        var cases: [(label: String, item: ReferenceRenderer.Case)] = []
        for index in 0..<800 {
            let template = templates.randomElement(using: &random)!
            var messages = (0..<Int.random(in: 1...6, using: &random)).map { _ in message(&random) }
            if Bool.random(using: &random) {
                messages[0] = ["role": ["system", "user"].randomElement(using: &random)!, "content": "start"]
            }
            let item = ReferenceRenderer.Case(
                template: template.source, messages: .list(messages),
                tools: Bool.random(using: &random) ? Self.tools : nil, addGenerationPrompt: Bool.random(using: &random),
                bosToken: template.bosToken, eosToken: template.eosToken,
                extra: Self.extras.randomElement(using: &random)!)
            cases.append(("case \(index) (\(template.name))", item))
        }
        let rendered = try ReferenceRenderer.assertParity(cases)
        XCTAssertGreaterThan(rendered.count, 250, "too few conversations render to prove much")
    }
}
