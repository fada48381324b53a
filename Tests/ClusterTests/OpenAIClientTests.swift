import Foundation
import XCTest

/// The official `openai` Python package against `serve` and against a coordinator with workers:
/// completions and chat, streaming and not, stop strings, logprobs, seeds, errors as the
/// client's own exception types (Tests/PythonClient/openai_client_checks.py).
final class OpenAIClientTests: XCTestCase {
    static let mixtralTemplate = Harness.root
        .appendingPathComponent("Tests/MeshChatTests/Templates/mixtral-8x7b-instruct-v0.1.jinja")

    func assertChecksPass(_ url: String, model: String, _ extra: [String] = []) throws {
        let (status, output) = try runPython("openai_client_checks.py", [url, model] + extra)
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("all checks passed"), output)
    }

    func testOfficialClientAgainstServe() throws {
        let serve = try ServeProcess(model: Harness.fixture("mixtral"),
                                     arguments: ["--served-model-name", "tiny-mixtral"])
        try assertChecksPass(serve.url, model: "tiny-mixtral")
    }

    func testOfficialClientChatsThroughACluster() throws {
        let cluster = try LoopbackCluster(model: Harness.fixture("mixtral"), workers: 2,
                                          coordinatorArguments: ["--chat-template", Self.mixtralTemplate.path])
        defer { cluster.stop() }
        try cluster.waitHealthy()
        // The fixture's tokenizer_config.json gives bos "<s>" and eos "</s>".
        try assertChecksPass(cluster.httpURL, model: "mixtral",
                             ["--chat", "--chat-template-file", Self.mixtralTemplate.path, "--bos", "<s>", "--eos", "</s>"])
        // SIGTERM: the coordinator drains, exits 0 and says goodbye to its workers.
        cluster.coordinator.kill(signal: SIGTERM)
        XCTAssertEqual(cluster.coordinator.process.terminationStatus, 0, cluster.coordinator.log)
        let deadline = Date().addingTimeInterval(5)
        while !cluster.workers.allSatisfy({ $0.log.contains("coordinator said goodbye") }), Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
        }
        for worker in cluster.workers { XCTAssertTrue(worker.log.contains("coordinator said goodbye"), worker.log) }
    }

    func testAPIKeyIsRequiredOnV1RoutesOnly() throws {
        let serve = try ServeProcess(model: Harness.fixture("mixtral"), arguments: ["--api-key", "s3cret"])
        XCTAssertEqual(Harness.http("GET", serve.url + "/health").status, 200)
        let refused = Harness.http("GET", serve.url + "/v1/models")
        XCTAssertEqual(refused.status, 401)
        XCTAssertEqual((refused.body["error"] as? [String: Any])?["type"] as? String, "authentication_error")
        let (status, output) = try runPython("openai_client_checks.py", [serve.url, "mixtral", "--api-key", "wrong"])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(output.contains("AuthenticationError") || output.contains("401"), output)
        try assertChecksPass(serve.url, model: "mixtral", ["--api-key", "s3cret"])
    }

    func testAnyKeyOfAnAPIKeyFileIsAccepted() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("keys-\(UUID().uuidString)")
        try "# team keys\nalpha-key\n\n  beta-key  \n".write(to: file, atomically: false, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let serve = try ServeProcess(model: Harness.fixture("mixtral"), arguments: ["--api-key-file", file.path])
        XCTAssertEqual(Harness.http("GET", serve.url + "/health").status, 200, "probes need no key")
        for (key, status) in [("alpha-key", 200), ("beta-key", 200), ("gamma-key", 401), ("# team keys", 401), ("", 401)] {
            let answer = Harness.http("GET", serve.url + "/v1/models", headers: ["Authorization": "Bearer \(key)"])
            XCTAssertEqual(answer.status, status, "key '\(key)'")
        }
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("no-keys-\(UUID().uuidString)")
        try "# nothing here\n".write(to: empty, atomically: false, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: empty) }
        let refused = try ChildProcess(try Harness.binary(), ["serve", "--model", Harness.fixture("mixtral").path,
                                                              "--api-key-file", empty.path], name: "no-keys")
        refused.waitForExit(timeout: 10)
        XCTAssertNotEqual(refused.process.terminationStatus, 0)
        XCTAssertTrue(refused.log.contains("holds no key (one a line)"), refused.log)
    }

    /// `expertmesh chat-template` prints exactly what jinja2 renders, or fails with one error line
    /// where jinja2 fails (Tests/PythonClient/chat_template_cli_checks.py).
    func testChatTemplateCommandMatchesJinja2() throws {
        let (status, output) = try runPython("chat_template_cli_checks.py", [try Harness.binary().path])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("all cases agree"), output)
    }

    func testGenerateStreamPrintsWhatTheWholeAnswerHas() throws {
        let serve = try ServeProcess(model: Harness.fixture("mixtral"))
        func generate(_ extra: [String]) throws -> String {
            let process = Process()
            let pipe = Pipe()
            process.executableURL = try Harness.binary()
            process.arguments = ["generate", "--server", serve.url, "--prompt", "The quick brown fox", "--max-tokens", "24",
                                 "--temperature", "0", "--ignore-eos"] + extra
            process.standardOutput = pipe
            try process.run()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            XCTAssertEqual(process.terminationStatus, 0)
            return String(decoding: data, as: UTF8.self)
        }
        let whole = try generate([])
        XCTAssertFalse(whole.isEmpty)
        XCTAssertEqual(try generate(["--stream"]), whole)
    }
}
