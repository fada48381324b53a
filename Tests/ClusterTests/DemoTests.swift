import Foundation
import XCTest

/// scripts/demo.sh and the demo model served by a cluster, as a user meets them.
final class DemoTests: XCTestCase {
    static let model = Harness.root.appendingPathComponent("models/demo")

    /// A private copy of the demo model: its path tells this test's processes from any other.
    func privateModelCopy() throws -> URL {
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("demo-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: Self.model, to: copy)
        addTeardownBlock { try? FileManager.default.removeItem(at: copy) }
        return copy
    }

    /// Processes whose command line names `text`.
    func processes(mentioning text: String) -> [Int32] {
        let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }
        return pids.filter { pid in
            guard SpawnedWorkersTests.isAlive(pid),
                  let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            return String(decoding: data, as: UTF8.self).contains(text)
        }
    }

    func runDemo(_ model: URL, extra: [String] = []) throws -> ChildProcess {
        try ChildProcess(URL(fileURLWithPath: "/bin/bash"), [Harness.root.appendingPathComponent("scripts/demo.sh").path,
                                                              "--binary", try Harness.binary().path, "--model", model.path] + extra,
                         name: "demo")
    }

    func testDemoStreamsEnglishShowsStatusAndLeavesNothingBehind() throws {
        let model = try privateModelCopy()
        let demo = try runDemo(model)
        demo.waitForExit(timeout: 120)
        XCTAssertEqual(demo.process.terminationStatus, 0, demo.log)
        let log = demo.log
        for section in ["== a completion, streamed", "== a chat, streamed", "serving (every expert has a live worker)", "all stopped"] {
            XCTAssertTrue(log.contains(section), "missing \(section.debugDescription) in:\n\(log)")
        }
        for worker in ["shard-1", "shard-2", "shard-3"] {
            XCTAssertNotNil(log.range(of: "\(worker) +127.0.0.1 +ready +16 ", options: .regularExpression), "\(worker) row:\n\(log)")
        }
        // English: most words of the streamed text and chat are in an English dictionary (Debian's wamerican).
        let streamed = log.components(separatedBy: "== a completion, streamed")[1].components(separatedBy: "== expertmesh status")[0]
        let dictionary = Set(try String(contentsOfFile: "/usr/share/dict/words", encoding: .utf8).lowercased()
            .split(separator: "\n").map(String.init))
        // The generated lines only, not the headings that quote the prompts.
        let words = streamed.split(separator: "\n").filter { !$0.hasPrefix("==") && !$0.hasPrefix(":") }
            .joined(separator: " ").lowercased()
            .split { !$0.isLetter && $0 != "'" }.map(String.init)
        let english = words.filter { dictionary.contains($0) }
        XCTAssertGreaterThan(words.count, 30, streamed)
        XCTAssertGreaterThan(Double(english.count), 0.8 * Double(words.count),
                             "the demo's text is not English: \(words.filter { !dictionary.contains($0) })\n\(streamed)")
        XCTAssertEqual(processes(mentioning: model.path), [], "demo processes left behind")
    }

    func testCtrlCStopsEveryProcess() throws {
        let model = try privateModelCopy()
        let demo = try runDemo(model, extra: ["--keep-running"])
        let deadline = Date().addingTimeInterval(120)
        while !demo.log.contains("keeps running"), demo.process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        XCTAssertTrue(demo.log.contains("keeps running"), demo.log)
        let cluster = processes(mentioning: model.path).filter { $0 != demo.process.processIdentifier }
        XCTAssertEqual(cluster.count, 4, "a coordinator and 3 workers while it runs")
        kill(demo.process.processIdentifier, SIGINT)
        demo.waitForExit(timeout: 30)
        XCTAssertEqual(demo.process.terminationStatus, 130, demo.log)
        XCTAssertEqual(processes(mentioning: model.path), [], "Ctrl-C left processes behind:\n\(demo.log)")
    }

    /// A cluster of --spawn-workers serving the demo model: transformers' prompt tokens (HF tokenizer
    /// and jinja2 chat template) and greedy tokens, through the HTTP API.
    func testClusterServesTransformersTokensForTextAndChat() throws {
        let expected = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: Harness.root
            .appendingPathComponent("Tests/Fixtures/demo/expected.json"))) as? [String: Any])
        let http = Harness.freePort()
        let url = "http://127.0.0.1:\(http)"
        let coordinator = try ChildProcess(try Harness.binary(), [
            "coordinator", "--model", Self.model.path, "--listen", "tcp://127.0.0.1:\(Harness.freePort())",
            "--http", "127.0.0.1:\(http)", "--spawn-workers", "3", "--precision", "f32", "--wire-dtype", "f32",
        ], name: "demo-coordinator")
        defer { coordinator.kill(signal: SIGTERM) }
        _ = Harness.poll(url + "/health")
        for entry in try XCTUnwrap(expected["cases"] as? [[String: Any]]) {
            let greedy = try XCTUnwrap(entry["greedy_tokens"] as? [Int])
            var request: [String: Any] = ["max_tokens": greedy.count, "temperature": 0, "ignore_eos": true,
                                          "return_token_ids": true, "skip_special_tokens": false]
            let path: String
            if let prompt = entry["prompt"] as? String {
                request["prompt"] = prompt
                path = "/v1/completions"
            } else {
                request["messages"] = entry["messages"]
                path = "/v1/chat/completions"
            }
            let (status, body) = Harness.http("POST", url + path, json: request)
            XCTAssertEqual(status, 200, "\(body)\n\(coordinator.log)")
            let choice = (body["choices"] as? [[String: Any]])?.first
            let promptTokens = (body["prompt_token_ids"] ?? choice?["prompt_token_ids"]) as? [Int]
            XCTAssertEqual(promptTokens, entry["prompt_tokens"] as? [Int], "\(path): prompt tokens differ from transformers'")
            XCTAssertEqual(choice?["token_ids"] as? [Int], greedy, "\(path): greedy tokens differ from transformers'")
        }
    }
}
