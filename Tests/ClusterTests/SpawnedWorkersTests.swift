import Foundation
import XCTest

/// `coordinator --spawn-workers N`: a whole cluster from one command, gone when it goes.
final class SpawnedWorkersTests: XCTestCase {
    /// Child pids of a process, from /proc (every thread's children list).
    static func children(of pid: Int32) -> [Int32] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.flatMap { task in
            ((try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8)) ?? "")
                .split(separator: " ").compactMap { Int32($0) }
        }
    }

    static func isAlive(_ pid: Int32) -> Bool {
        // A zombie has exited; only its parent's wait is missing.
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
        return !stat.contains(") Z ")
    }

    func startCoordinator(workers: Int) throws -> (ChildProcess, String, [Int32]) {
        let http = Harness.freePort()
        let url = "http://127.0.0.1:\(http)"
        let coordinator = try ChildProcess(try Harness.binary(), [
            "coordinator", "--model", Harness.fixture("mixtral").path, "--listen", "tcp://0.0.0.0:\(Harness.freePort())", "--insecure",
            "--http", "127.0.0.1:\(http)", "--spawn-workers", String(workers), "--precision", "f32", "--start-timeout", "60",
        ], name: "spawning-coordinator")
        let health = Harness.poll(url + "/health")
        XCTAssertEqual(health.status, 200, coordinator.log)
        let names = (health.body["workers"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }.sorted()
        XCTAssertEqual(names, (1...workers).map { "local-\($0)" }, coordinator.log)
        let pids = Self.children(of: coordinator.process.processIdentifier)
        XCTAssertEqual(pids.count, workers, "the coordinator should have exactly its workers as children")
        return (coordinator, url, pids)
    }

    func testSpawnedWorkersServeTheModelAndStopWithTheCoordinator() throws {
        let (coordinator, url, pids) = try startCoordinator(workers: 2)
        let expected = try XCTUnwrap(JSONSerialization.jsonObject(
            with: Data(contentsOf: Harness.fixture("mixtral").appendingPathComponent("expected.json"))) as? [String: Any])
        let greedy = try XCTUnwrap(expected["greedy_tokens"] as? [Int])
        let (status, body) = Harness.http("POST", url + "/v1/completions", json: [
            "prompt": try XCTUnwrap(expected["prompt_tokens"] as? [Int]), "max_tokens": greedy.count, "temperature": 0,
            "ignore_eos": true, "return_token_ids": true,
        ])
        XCTAssertEqual(status, 200, "\(body)")
        let tokens = (body["choices"] as? [[String: Any]])?.first?["token_ids"] as? [Int]
        XCTAssertEqual(tokens, greedy, "spawned workers must give transformers' greedy tokens")
        XCTAssertTrue(coordinator.log.contains("started 2 local worker processes"), coordinator.log)

        coordinator.kill(signal: SIGTERM)
        XCTAssertEqual(coordinator.process.terminationStatus, 0, coordinator.log)
        XCTAssertTrue(coordinator.log.contains("stopped 2 local worker processes"), coordinator.log)
        XCTAssertEqual(pids.filter(Self.isAlive), [], "workers left running after the coordinator stopped")
    }

    func testSpawnedWorkersEndWhenTheCoordinatorIsKilledOutright() throws {
        let (coordinator, _, pids) = try startCoordinator(workers: 2)
        coordinator.kill(signal: SIGKILL)
        // Orphans notice their parent is gone at their next heartbeat check.
        let deadline = Date().addingTimeInterval(15)
        while pids.contains(where: Self.isAlive), Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        XCTAssertEqual(pids.filter(Self.isAlive), [], "workers outlived a killed coordinator")
        pids.filter(Self.isAlive).forEach { kill($0, SIGKILL) }
    }

    func testAnAbsurdWorkerCountIsRefusedBeforeAnythingStarts() throws {
        let refused = try ChildProcess(try Harness.binary(), ["coordinator", "--model", Harness.fixture("mixtral").path,
                                                              "--spawn-workers", "300"], name: "bad-spawn")
        refused.waitForExit(timeout: 10)
        XCTAssertNotEqual(refused.process.terminationStatus, 0)
        XCTAssertTrue(refused.log.contains("--spawn-workers must be 0 to 256"), refused.log)
    }
}
