import Foundation
import XCTest

/// `--replicas`: a worker lost mid-request (killed or frozen) costs no request and changes no token.
final class FailoverTests: XCTestCase {
    final class Results: @unchecked Sendable {
        private let lock = NSLock()
        private var answers: [(status: Int, tokens: [Int]?, body: [String: Any])] = []
        var stop = false
        func add(_ status: Int, _ body: [String: Any]) {
            let tokens = (body["choices"] as? [[String: Any]])?.first?["token_ids"] as? [Int]
            lock.withLock { answers.append((status, tokens, body)) }
        }
        var all: [(status: Int, tokens: [Int]?, body: [String: Any])] { lock.withLock { answers } }
    }

    static var request: [String: Any] {
        ["prompt": [1, 2, 3], "max_tokens": 120, "temperature": 0, "ignore_eos": true, "return_token_ids": true]
    }

    /// Requests back to back while `fail` strikes a worker; every one must give `reference`.
    /// `restore` undoes the failure before the cluster stops (a frozen process cannot stop).
    func assertRequestsSurvive(_ fail: (LoopbackCluster) -> Void, recovery: Double, restore: () -> Void = {}) throws {
        let cluster = try LoopbackCluster(model: Harness.fixture("mixtral"), workers: 3, precision: "f32",
                                          coordinatorArguments: ["--replicas", "2"])
        defer { cluster.stop() }
        defer { restore() }
        try cluster.waitHealthy()
        XCTAssertTrue(cluster.coordinator.log.contains("each on 2 of them"), cluster.coordinator.log)
        let (status, body) = Harness.http("POST", cluster.httpURL + "/v1/completions", json: Self.request)
        XCTAssertEqual(status, 200, "\(body)")
        let reference = try XCTUnwrap((body["choices"] as? [[String: Any]])?.first?["token_ids"] as? [Int])

        let results = Results()
        let finished = DispatchSemaphore(value: 0)
        let url = cluster.httpURL
        Thread {
            while !results.stop {
                let (status, body) = Harness.http("POST", url + "/v1/completions", json: FailoverTests.request, timeout: 60)
                results.add(status, body)
            }
            finished.signal()
        }.start()
        Thread.sleep(forTimeInterval: 0.3)
        fail(cluster)
        // Long enough for detection (3 heartbeats) and several more requests.
        Thread.sleep(forTimeInterval: recovery)
        results.stop = true
        XCTAssertEqual(finished.wait(timeout: .now() + 60), .success, "requests hung")

        let answers = results.all
        XCTAssertGreaterThanOrEqual(answers.count, 3, "too few requests ran across the failure")
        for answer in answers {
            XCTAssertEqual(answer.status, 200, "a request was lost: \(answer.body)")
            XCTAssertEqual(answer.tokens, reference, "a request's tokens changed through the failure")
        }
        XCTAssertTrue(cluster.coordinator.log.contains("sending its work to replicas"), cluster.coordinator.log)
        XCTAssertEqual(Harness.http("GET", cluster.httpURL + "/health").status, 200, "one worker down of 3 with 2 replicas still serves")
        XCTAssertTrue(cluster.coordinator.process.isRunning)
    }

    func testAWorkerKilledMidRequestCostsNoRequestAndNoToken() throws {
        try assertRequestsSurvive({ $0.workers[1].kill(signal: SIGKILL) }, recovery: 5)
    }

    func testAFrozenWorkerIsDetectedAndItsWorkGoesToReplicas() throws {
        var frozen: Int32 = 0
        try assertRequestsSurvive({ cluster in
            frozen = cluster.workers[2].process.processIdentifier
            kill(frozen, SIGSTOP)
        }, recovery: 6, restore: { kill(frozen, SIGCONT) })
    }

    func testTooFewWorkersForTheReplicasIsRefusedClearly() throws {
        let refused = try ChildProcess(try Harness.binary(), ["coordinator", "--model", Harness.fixture("mixtral").path,
                                                              "--min-workers", "2", "--replicas", "3"], name: "bad-replicas")
        refused.waitForExit(timeout: 10)
        XCTAssertNotEqual(refused.process.terminationStatus, 0)
        XCTAssertTrue(refused.log.contains("--replicas 3 needs at least 3 workers"), refused.log)
    }
}
