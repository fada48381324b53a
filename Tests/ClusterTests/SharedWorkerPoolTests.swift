import Foundation
import MeshEngine
import XCTest

/// Several coordinators of one model (stage-0 replicas, each with its own requests and KV cache)
/// share one pool of workers: each worker connects to all of them (`--coordinator` repeated) and
/// holds the union of their assignments.
final class SharedWorkerPoolTests: XCTestCase {
    func testTwoCoordinatorsShareOneWorkerPoolAndOutliveEachOther() throws {
        let fixture = "mixtral"
        let second = (zmq: "tcp://127.0.0.1:\(Harness.freePort())", http: Harness.freePort())
        let other = try ChildProcess(try Harness.binary(), [
            "coordinator", "--model", Harness.fixture(fixture).path, "--listen", second.zmq,
            "--http", "127.0.0.1:\(second.http)", "--min-workers", "2", "--wire-dtype", "f32", "--precision", "f32",
        ], name: "coordinator-2")
        defer { other.kill(signal: SIGTERM) }
        let cluster = try LoopbackCluster(model: Harness.fixture(fixture), workers: 2, precision: "f32",
                                          workerArguments: ["--coordinator", second.zmq])
        defer { cluster.stop() }
        try cluster.waitHealthy()
        let otherURL = "http://127.0.0.1:\(second.http)"
        XCTAssertEqual(Harness.poll(otherURL + "/health", until: 200, timeout: 30).status, 200, other.log)

        // Both serve at once, each request with the tokens one process gives.
        let engine = try LocalEngine(directory: Harness.fixture(fixture))
        let reference = try engine.generator.generate(GenerationRequest(prompt: [1, 2, 3], maxTokens: 24)).tokens
        let answers = FailoverTests.Results()
        let group = DispatchGroup()
        for url in [cluster.httpURL, otherURL] {
            for _ in 0..<4 {
                group.enter()
                Thread {
                    let (status, body) = Harness.http("POST", url + "/v1/completions", json: [
                        "prompt": [1, 2, 3], "max_tokens": 24, "temperature": 0, "ignore_eos": true,
                        "return_token_ids": true])
                    answers.add(status, body, seconds: 0)
                    group.leave()
                }.start()
            }
        }
        XCTAssertEqual(group.wait(timeout: .now() + 60), .success, "requests hung")
        XCTAssertEqual(answers.all.count, 8)
        for answer in answers.all {
            XCTAssertEqual(answer.status, 200, "\(answer.body)")
            XCTAssertEqual(answer.tokens, reference, "a request through a shared worker changed its tokens")
        }
        _ = try Harness.assertClusterEqualsSingleProcess(fixture, url: otherURL, log: other.log)
        for worker in cluster.workers {
            XCTAssertTrue(worker.log.contains("connecting to \(second.zmq)"), worker.log)
        }

        // One coordinator going away leaves the other serving, with the same workers.
        other.kill(signal: SIGKILL)
        _ = try Harness.assertClusterEqualsSingleProcess(fixture, cluster)
        XCTAssertEqual(Harness.http("GET", cluster.httpURL + "/health").status, 200)
    }
}
