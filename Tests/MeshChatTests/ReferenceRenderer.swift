import Foundation
@testable import MeshChat
import XCTest

/// Runs scripts/render-chat-template.py (Python jinja2, rendering as transformers does) on a batch of cases.
enum ReferenceRenderer {
    struct Case {
        var template: String
        var messages: JinjaValue
        var tools: JinjaValue?
        var addGenerationPrompt: Bool
        var bosToken: String?
        var eosToken: String?
        var extra: JinjaDict = JinjaDict()
        /// Local time for `strftime_now`, "YYYY-MM-DDTHH:MM:SS".
        var now = ReferenceRenderer.fixedNow
    }

    enum Outcome: Equatable {
        case rendered(String)
        case failed(String)
    }

    static let fixedNow = "2024-07-26T09:30:00"

    /// The `Date` of `fixedNow` in the local time zone, as Python's naive datetime sees it.
    static var fixedDate: Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = .current
        return calendar.date(from: DateComponents(year: 2024, month: 7, day: 26, hour: 9, minute: 30))!
    }

    /// scripts/render-chat-template.py in the nearest directory above this file that has it (the package root).
    static func script() throws -> URL {
        var directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent("scripts/render-chat-template.py")
            if FileManager.default.fileExists(atPath: candidate.path) { return candidate }
            directory.deleteLastPathComponent()
        }
        throw JinjaError.input("scripts/render-chat-template.py not found above \(#filePath)")
    }

    static func render(_ cases: [Case]) throws -> [Outcome] {
        let batch = JinjaValue.list(cases.map { item in
            var dict = JinjaDict([
                ("template", .string(item.template)), ("messages", item.messages),
                ("add_generation_prompt", .bool(item.addGenerationPrompt)),
                ("bos_token", item.bosToken.map(JinjaValue.string) ?? .none),
                ("eos_token", item.eosToken.map(JinjaValue.string) ?? .none),
                ("extra", .dict(item.extra)), ("now", .string(item.now)),
            ])
            if let tools = item.tools { dict["tools"] = tools }
            return .dict(dict)
        })
        let input = try PythonJSON().dumps(batch)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", try script().path]
        let stdin = Pipe()
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        // Write and read concurrently so a large batch cannot deadlock on full pipes.
        let writer = Thread {
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try? stdin.fileHandleForWriting.close()
        }
        writer.start()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        let errors = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw JinjaError.input("the reference renderer failed (python3 with jinja2 >= 3.1.6 is needed: "
                                   + "python3 -m pip install jinja2): " + String(decoding: errors, as: UTF8.self))
        }
        let results = try JSONDecoder().decode([[String: String]].self, from: output)
        return results.map { result in
            if let text = result["ok"] { return .rendered(text) }
            return .failed(result["error"] ?? "?")
        }
    }

    /// What MeshChat does with the same case; `parsed` caches templates by source.
    static func swiftOutcome(_ item: Case, parsed: inout [String: ChatTemplate]) -> Outcome {
        do {
            let template = try parsed[item.template] ?? ChatTemplate(source: item.template)
            parsed[item.template] = template
            var extra: [String: JinjaValue] = [:]
            for entry in item.extra.entries { extra[entry.key.stringValue ?? ""] = entry.value }
            return .rendered(try template.render(messages: item.messages, tools: item.tools,
                                                 addGenerationPrompt: item.addGenerationPrompt,
                                                 bosToken: item.bosToken, eosToken: item.eosToken,
                                                 extra: extra, now: fixedDate))
        } catch {
            return .failed("\(error)")
        }
    }

    /// Renders every case with both engines and fails the test for each case where they disagree (different
    /// text, or only one of them fails). Returns the labels of the cases both rendered.
    @discardableResult
    static func assertParity(_ cases: [(label: String, item: Case)], file: StaticString = #filePath,
                             line: UInt = #line) throws -> [String] {
        let expected = try render(cases.map(\.item))
        XCTAssertEqual(expected.count, cases.count, file: file, line: line)
        var parsed: [String: ChatTemplate] = [:]
        var rendered: [String] = []
        var failures = 0
        for ((label, item), reference) in zip(cases, expected) where failures < 20 {
            switch (reference, swiftOutcome(item, parsed: &parsed)) {
            case (.rendered(let a), .rendered(let b)) where a == b:
                rendered.append(label)
            case (.failed, .failed):
                break
            case (.rendered(let a), .rendered(let b)):
                failures += 1
                XCTFail("\(label): output differs at \(firstDifference(a, b))", file: file, line: line)
            case (.rendered, .failed(let error)):
                failures += 1
                XCTFail("\(label): jinja2 renders but Swift fails: \(error)", file: file, line: line)
            case (.failed(let error), .rendered):
                failures += 1
                XCTFail("\(label): Swift renders but jinja2 fails: \(error)", file: file, line: line)
            }
        }
        return rendered
    }

    /// The first differing line of two texts, for readable failures.
    static func firstDifference(_ expected: String, _ actual: String) -> String {
        let left = expected.components(separatedBy: "\n")
        let right = actual.components(separatedBy: "\n")
        for index in 0..<max(left.count, right.count) {
            let a = index < left.count ? left[index] : "<end>"
            let b = index < right.count ? right[index] : "<end>"
            if a != b { return "line \(index + 1):\n  jinja2: \(a.debugDescription)\n  swift:  \(b.debugDescription)" }
        }
        return "(identical lines; difference in line endings)"
    }
}
