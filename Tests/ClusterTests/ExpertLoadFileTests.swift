import Foundation
import XCTest

/// `coordinator --expert-load FILE`: the tokens routed to each expert are written at stop, and the
/// next start places experts by them.
final class ExpertLoadFileTests: XCTestCase {
    func testTheLoadMeasuredInOneRunPlacesTheExpertsOfTheNext() throws {
        let model = Harness.fixture("mixtral")
        let config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: model.appendingPathComponent("config.json"))) as? [String: Any])
        let layers = try XCTUnwrap(config["num_hidden_layers"] as? Int), topK = try XCTUnwrap(config["num_experts_per_tok"] as? Int)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("load-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: file) }
        let request: [String: Any] = ["prompt": [1, 2, 3], "max_tokens": 8, "temperature": 0, "ignore_eos": true,
                                      "return_token_ids": true]

        let first = try LoopbackCluster(model: model, workers: 2, precision: "f32", coordinatorArguments: ["--expert-load", file.path])
        defer { first.stop() }
        try first.waitHealthy()
        XCTAssertTrue(first.coordinator.log.contains("no expert load at \(file.path) yet"), first.coordinator.log)
        XCTAssertTrue(first.coordinator.log.contains("placement (by bytes)"), first.coordinator.log)
        let before = Harness.http("POST", first.httpURL + "/v1/completions", json: request)
        XCTAssertEqual(before.status, 200, "\(before.body)")
        first.coordinator.kill(signal: SIGTERM)
        first.coordinator.waitForExit(timeout: 30)

        // 3 prompt tokens and 7 generated ones went through every MoE layer (the 8th is never fed back).
        let saved = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any])
        let table = try XCTUnwrap(saved["tokens_routed"] as? [String: [Int]])
        XCTAssertEqual(table.count, layers)
        XCTAssertEqual(table.values.joined().reduce(0, +), 10 * topK * layers)
        XCTAssertTrue(table.values.allSatisfy { $0.reduce(0, +) == 10 * topK })

        let port = String(first.httpURL.split(separator: ":").last!)
        let second = try ChildProcess(first.binary, [
            "coordinator", "--model", model.path, "--listen", first.zmqEndpoint, "--http", "127.0.0.1:\(port)",
            "--min-workers", "2", "--precision", "f32", "--wire-dtype", "f32", "--expert-load", file.path,
        ], name: "second-coordinator")
        defer { second.kill(signal: SIGTERM) }
        XCTAssertEqual(Harness.poll(first.httpURL + "/health", timeout: 30).status, 200, second.log)
        XCTAssertTrue(second.log.contains("\(10 * topK * layers) routed tokens; experts are placed by it"), second.log)
        XCTAssertTrue(second.log.contains("placement (by the load measured in earlier runs, and bytes)"), second.log)
        let after = Harness.http("POST", first.httpURL + "/v1/completions", json: request)
        XCTAssertEqual((after.body["choices"] as? [[String: Any]])?.first?["token_ids"] as? [Int],
                       (before.body["choices"] as? [[String: Any]])?.first?["token_ids"] as? [Int], "placement never changes a token")
        second.kill(signal: SIGTERM)
        second.waitForExit(timeout: 30)
        let again = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any])
        XCTAssertEqual((again["tokens_routed"] as? [String: [Int]])?.values.joined().reduce(0, +), 20 * topK * layers,
                       "the second run's tokens are added")
    }
}
