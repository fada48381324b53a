import Foundation
@testable import MeshChat
import XCTest

/// Behaviour pinned to values printed by Python jinja2 3.1.6, so these run without Python.
final class EngineTests: XCTestCase {
    private let twoMessages: JinjaValue = [["role": "user"], ["role": "assistant"]]

    private func render(_ source: String, messages: JinjaValue? = nil, extra: [String: JinjaValue] = [:],
                        bos: String? = nil) throws -> String {
        try ChatTemplate(source: source).render(messages: messages ?? twoMessages, addGenerationPrompt: false,
                                                bosToken: bos, eosToken: nil, extra: extra)
    }

    private func assertFails(_ source: String, kind: JinjaError.Kind, line: Int?, containing text: String = "",
                             file: StaticString = #filePath, sourceLine: UInt = #line) {
        XCTAssertThrowsError(try render(source), file: file, line: sourceLine) { error in
            guard let error = error as? JinjaError else { return XCTFail("not a JinjaError: \(error)") }
            XCTAssertEqual(error.kind, kind, "\(error)", file: file, line: sourceLine)
            XCTAssertEqual(error.line, line, "\(error)", file: file, line: sourceLine)
            if !text.isEmpty {
                XCTAssertTrue(error.description.contains(text), "\(error)", file: file, line: sourceLine)
            }
        }
    }

    func testTrimBlocksAndLstripBlocks() throws {
        XCTAssertEqual(try render("<{% for m in messages %}\n  {{ m.role }}\n{% endfor %}>"), "<  user\n  assistant\n>")
        XCTAssertEqual(try render("<  {%- if true -%}  x  {%- endif -%}  >"), "<x>")
        XCTAssertEqual(try render("a\n    {% if true %}\n    b\n    {% endif %}\nc\n"), "a\n    b\nc")
        XCTAssertEqual(try render("a\n  {{ 'v' }}\n  {%+ if true %}x{% endif %}\n{% raw %}{{ raw }}{% endraw %}"),
                       "a\n  v\n  x{{ raw }}")
    }

    func testLoopVariables() throws {
        let source = "{% for x in ['a', 'b', 'c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}"
            + "{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.previtem }}{{ loop.nextitem }}"
            + "{{ loop.cycle('x', 'y') }};{% endfor %}"
        XCTAssertEqual(try render(source), "103TrueFalse3bx;212FalseFalse3acy;321FalseTrue3bx;")
    }

    func testNamespaceOutlivesLoopScope() throws {
        let source = "{% set ns = namespace(n=0) %}{% for x in [1, 2, 3] %}{% set ns.n = ns.n + x %}"
            + "{% set local = x %}{% endfor %}{{ ns.n }}|{{ local }}|"
        XCTAssertEqual(try render(source), "6||")
    }

    func testMacrosWithDefaultsAndKeywords() throws {
        let source = "{% macro tag(name, value='-') %}<{{ name }}={{ value }}>{% endmacro %}"
            + "{{ tag('a') }}{{ tag('b', 1) }}{{ tag(value=2, name='c') }}"
        XCTAssertEqual(try render(source), "<a=-><b=1><c=2>")
    }

    func testToJSONMatchesPythonJSONDumps() throws {
        let source = #"{{ {'b': 1.0, 'a': [1e16, 1e-7, 'é"\n', none, true]}|tojson }}|"#
            + "{{ {'z': 1, 'a': {}}|tojson(indent=2, sort_keys=true) }}|{{ [1, 2]|tojson(separators=(',', ':')) }}"
        XCTAssertEqual(try render(source),
                       #"{"b": 1.0, "a": [1e+16, 1e-07, "é\"\n", null, true]}|{"#
                           + "\n  \"a\": {},\n  \"z\": 1\n}|[1,2]")
    }

    func testSlicingAndPrintingFollowPython() throws {
        XCTAssertEqual(try render("{{ 'abcdef'[::-1] }} {{ 'abcdef'[1:] }} {{ 'abcdef'[:-2] }} {{ [1, 2, 3, 4][::2] }}"
                                  + " {{ 'héllo'[1] }}"), "fedcba bcdef abcd [1, 3] é")
        XCTAssertEqual(try render("{{ [1, 2.0, 'it\\'s', none, true, {'k': 'v'}, (1,)] }}"),
                       #"[1, 2.0, "it's", None, True, {'k': 'v'}, (1,)]"#)
    }

    func testFloatReprMatchesPython() {
        let cases: [(Double, String)] = [
            (0.1, "0.1"), (1e16, "1e+16"), (1e15, "1000000000000000.0"), (1e-5, "1e-05"), (0.0001, "0.0001"),
            (1.5e-7, "1.5e-07"), (123456789012345678.0, "1.2345678901234568e+17"), (.leastNonzeroMagnitude, "5e-324"),
            (-0.0, "-0.0"), (2.5, "2.5"), (100.0, "100.0"), (1.0 / 3, "0.3333333333333333"), (1e22, "1e+22"),
            (9007199254740993.0, "9007199254740992.0"), (1.7976931348623157e308, "1.7976931348623157e+308"),
            (0.1 + 0.2, "0.30000000000000004"), (12345.678, "12345.678"),
            (9.999999999999999e-05, "9.999999999999999e-05"),
            (.infinity, "inf"), (-.infinity, "-inf"), (.nan, "nan"),
        ]
        for (number, expected) in cases { XCTAssertEqual(Python.floatRepr(number), expected) }
    }

    func testOrderedJSONKeepsKeyOrderAndNumberKinds() throws {
        let json = #"{"z": 1, "a": 1.0, "m": [1e2, -0, 2.50], "z": 3, "s": "\u00e9\ud83d\ude00"}"#
        let value = try JinjaValue(json: Data(json.utf8))
        XCTAssertEqual(try render("{{ v }} {{ v|tojson }}", extra: ["v": value]),
                       #"{'z': 3, 'a': 1.0, 'm': [100.0, 0, 2.5], 's': 'é😀'} "#
                           + #"{"z": 3, "a": 1.0, "m": [100.0, 0, 2.5], "s": "é😀"}"#)
        let bad = ["{\"a\": 1,}", "[1 2]", "nul", "\"\\ud800\"", "99999999999999999999", "NaN", "\"a\u{1}\"", "{} x"]
        for data in bad.map({ Data($0.utf8) }) + [Data([0x22, 0xFF, 0x22])] {
            XCTAssertThrowsError(try JinjaValue(json: data), "\(Array(data))") { error in
                XCTAssertEqual((error as? JinjaError)?.kind, .input)
            }
        }
    }

    func testDictKeysFollowPythonEquality() throws {
        XCTAssertEqual(try render("{{ {1: 'a', 1.0: 'b', true: 'c', 'é': 1, 'e\u{301}': 2} }}"),
                       "{1: 'c', 'é': 1, 'é': 2}")
    }

    func testErrorsNameTheTemplateLine() {
        assertFails("line one\n{% if %}", kind: .syntax, line: 2, containing: "template line 2:")
        assertFails("a\nb\n{{ 1 + }}", kind: .syntax, line: 3)
        assertFails("{% for x in l %}\n{{ x }}", kind: .syntax, line: 2, containing: "'endfor'")
        assertFails("ok\n{% endif %}", kind: .syntax, line: 2, containing: "unknown tag 'endif'")
        assertFails("\n\n{{ missing.attribute }}", kind: .undefined, line: 3, containing: "'missing' is undefined")
        assertFails("{% for m in messages %}\n{{ m.nope.deeper }}{% endfor %}", kind: .undefined, line: 2,
                    containing: "'m.nope' is undefined")
        assertFails("x\n{{ raise_exception('Roles must alternate') }}", kind: .raised, line: 2,
                    containing: "Roles must alternate")
        assertFails("{{ messages.append(1) }}", kind: .security, line: 1, containing: "unsafe")
        assertFails("\n{{ 'a' + 1 }}", kind: .type, line: 2)
        assertFails("{{ x|no_such_filter }}", kind: .syntax, line: 1, containing: "no filter named 'no_such_filter'")
    }

    func testRaiseExceptionSurfacesTheMessage() throws {
        let template = try ChatTemplate(source: "{{ raise_exception('Conversation roles must alternate') }}")
        XCTAssertThrowsError(try template.render(messages: twoMessages, addGenerationPrompt: true, bosToken: nil,
                                                 eosToken: nil)) { error in
            XCTAssertEqual((error as? JinjaError)?.message, "Conversation roles must alternate")
        }
    }

    /// Valid jinja2 that this engine does not implement fails loudly, naming the line, rather than rendering
    /// something different.
    func testUnsupportedConstructsAreErrorsWithLines() {
        let unsupported = [
            "{% for x in [1] recursive %}{{ loop(x) }}{% endfor %}", "{% call m() %}x{% endcall %}",
            "{% include 'other' %}", "{% extends 'base' %}", "{% block b %}x{% endblock %}",
            "{{ [{'a': 1}]|groupby('a') }}", "{{ lipsum() }}", "{{ cycler(1, 2) }}", "{{ {'a': 1}.items }}",
            "{{ [1]|select }}", "{{ '{:>5}'.format(1) }}", "{{ (-8) ** 0.5 }}", "{{ 2 ** 100 }}", "{{ '\\N{BULLET}' }}",
            "{% for x in [1] %}{{ loop.changed(x) }}{% endfor %}", "{{ 'x'.encode() }}", "{{ strftime_now('%Z') }}",
            "{{ 'x'|wordwrap(3) }}", "{{ 99999999999999999999 }}", "{{ range(3)[1:] }}",
            "{% set g = [1, 2, 3]|select %}{% for x in g %}{% if loop.last %}{% endif %}{% break %}{% endfor %}"
                + "{{ g|list }}",
        ]
        for source in unsupported {
            assertFails("\n" + source, kind: .unsupported, line: 2, containing: "template line 2: not supported: ")
        }
    }

    func testInputIsNormalisedLikeTransformers() throws {
        let source = "{% for m in messages %}{{ m|tojson }}{% endfor %}|{{ bos_token is defined }}|{{ tools }}|{{ x }}"
        let messages: JinjaValue = [
            ["role": "assistant", "content": .none, "reasoning_content": "why", "tool_calls": .none],
            ["thinking": "t", "role": "assistant", "reasoning": "r"],
        ]
        let template = try ChatTemplate(source: source)
        XCTAssertEqual(try template.render(messages: messages, addGenerationPrompt: false, bosToken: nil, eosToken: nil,
                                           extra: ["x": "X"]),
                       #"{"thinking": "why", "role": "assistant", "reasoning_content": "why"}"#
                       + #"{"thinking": "t", "role": "assistant", "reasoning": "r", "reasoning_content": "t"}"#
                       + "|False|None|X")
        XCTAssertEqual(try template.render(messages: messages, tools: [], addGenerationPrompt: false, bosToken: "<s>",
                                           eosToken: nil).suffix(9), "|True|[]|")
        for bad: JinjaValue in [[], "text", ["not a dict"]] {
            XCTAssertThrowsError(try template.render(messages: bad, addGenerationPrompt: false, bosToken: nil,
                                                     eosToken: nil)) {
                XCTAssertEqual(($0 as? JinjaError)?.kind, .input)
            }
        }
        XCTAssertThrowsError(try template.render(messages: twoMessages, tools: ["not a dict"],
                                                 addGenerationPrompt: false, bosToken: nil, eosToken: nil))
        XCTAssertThrowsError(try template.render(messages: twoMessages, addGenerationPrompt: false, bosToken: nil,
                                                 eosToken: nil, extra: ["messages": []]))
        XCTAssertEqual(try ChatTemplate(source: "{{ bos_token }}").render(
            messages: twoMessages, addGenerationPrompt: false, bosToken: "<s>", eosToken: nil,
            extra: ["bos_token": "<override>"]), "<override>")
    }

    func testStrftimeNowReadsTheClock() throws {
        let template = try ChatTemplate(source: "{{ strftime_now('%d %b %Y, %A %-d %B %H:%M') }}")
        XCTAssertEqual(try template.render(messages: twoMessages, tools: nil, addGenerationPrompt: false, bosToken: nil,
                                           eosToken: nil, extra: [:], now: ReferenceRenderer.fixedDate),
                       "26 Jul 2024, Friday 26 July 09:30")
    }
}
