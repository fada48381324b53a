import Foundation
import XCTest

/// The probes orchestrators use: the coordinator's /health and /health/live, a worker's --health.
final class HealthProbeTests: XCTestCase {
    func waitFor(_ url: String, status: Int, timeout: Double = 30) -> [String: Any] {
        let last = Harness.poll(url, until: status, timeout: timeout)
        XCTAssertEqual(last.status, status, "\(url) answered \(last.status) \(last.body), expected \(status)")
        return last.body
    }

    func testWorkerAndCoordinatorProbesFollowTheClusterState() throws {
        let model = Harness.fixture("mixtral")
        let zmq = "tcp://127.0.0.1:\(Harness.freePort())"
        let healthURL = "http://127.0.0.1:\(Harness.freePort())"
        let worker = try ChildProcess(try Harness.binary(), [
            "worker", "--coordinator", zmq, "--model", model.path, "--name", "probed", "--health",
            String(healthURL.dropFirst("http://".count)),
        ], name: "probed-worker")
        defer { worker.kill(signal: SIGTERM) }

        // No coordinator yet: alive, not ready.
        var body = waitFor(healthURL + "/health", status: 503)
        XCTAssertEqual(body["state"] as? String, "connecting to the coordinator", "\(body)")
        XCTAssertEqual(body["worker"] as? String, "probed")
        XCTAssertEqual(waitFor(healthURL + "/health/live", status: 200)["status"] as? String, "live")

        let http = Harness.freePort()
        let coordinator = try ChildProcess(try Harness.binary(), [
            "coordinator", "--model", model.path, "--listen", zmq, "--http", "127.0.0.1:\(http)", "--min-workers", "1",
        ], name: "probed-coordinator")
        body = waitFor(healthURL + "/health", status: 200)
        XCTAssertEqual(body["state"] as? String, "serving", "\(body)")
        XCTAssertEqual(body["experts"] as? Int, 16, "\(body)")
        _ = waitFor("http://127.0.0.1:\(http)/health", status: 200)

        // The coordinator goes: the worker is no longer ready, but it is not stuck either.
        coordinator.kill(signal: SIGKILL)
        body = waitFor(healthURL + "/health", status: 503, timeout: 15)
        XCTAssertEqual(body["state"] as? String, "connecting to the coordinator", "\(body)")
        _ = waitFor(healthURL + "/health/live", status: 200)
    }

    func testCoordinatorStaysLiveWhileItsWorkersAreGone() throws {
        let cluster = try LoopbackCluster(model: Harness.fixture("mixtral"), workers: 1)
        defer { cluster.stop() }
        try cluster.waitHealthy()
        XCTAssertEqual(waitFor(cluster.httpURL + "/health/live", status: 200)["status"] as? String, "live")
        cluster.workers[0].kill(signal: SIGKILL)
        _ = waitFor(cluster.httpURL + "/health", status: 503, timeout: 15)
        XCTAssertEqual(waitFor(cluster.httpURL + "/health/live", status: 200)["status"] as? String, "live",
                       "a lost worker must not make an orchestrator restart the coordinator")
    }

    func testABadHealthAddressIsRefusedClearly() throws {
        let refused = try ChildProcess(try Harness.binary(), [
            "worker", "--coordinator", "tcp://127.0.0.1:1", "--model", Harness.fixture("mixtral").path, "--health", "8081",
        ], name: "bad-health")
        refused.waitForExit(timeout: 10)
        XCTAssertNotEqual(refused.process.terminationStatus, 0)
        XCTAssertTrue(refused.log.contains("--health"), refused.log)
    }
}
