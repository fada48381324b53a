import Foundation
import XCTest

/// `--replicas`: a worker lost mid-request (killed or frozen) costs no request and changes no token.
final class FailoverTests: XCTestCase {
    final class Results: @unchecked Sendable {
        private let lock = NSLock()
        typealias Answer = (status: Int, tokens: [Int]?, body: [String: Any], seconds: Double)
        private var answers: [Answer] = []
        var stop = false
        func add(_ status: Int, _ body: [String: Any], seconds: Double) {
            let tokens = (body["choices"] as? [[String: Any]])?.first?["token_ids"] as? [Int]
            lock.withLock { answers.append((status, tokens, body, seconds)) }
        }
        var all: [Answer] { lock.withLock { answers } }
    }

    /// The workers' logs at the end of the last `assertRequestsSurvive`, and the /health statuses seen during it.
    var lastSurvivorLogs: [String] = []
    var lastHealthSeen: Set<Int> = []

    static var request: [String: Any] {
        ["prompt": [1, 2, 3], "max_tokens": 120, "temperature": 0, "ignore_eos": true, "return_token_ids": true]
    }

    /// Requests back to back while `fail` strikes a worker; every one must give `reference`.
    /// `restore` undoes the failure before the cluster stops (a frozen process cannot stop).
    @discardableResult
    func assertRequestsSurvive(_ fail: (LoopbackCluster) -> Void, recovery: Double, restore: () -> Void = {},
                               expectLog: String = "to replicas", maximumRequestSeconds: Double? = nil,
                               replicas: Int = 2, coordinatorArguments: [String] = [],
                               fixture: String = "mixtral", workers: Int = 3) throws -> [[String: Any]] {
        let cluster = try LoopbackCluster(model: Harness.fixture(fixture), workers: workers, precision: "f32",
                                          coordinatorArguments: ["--replicas", String(replicas)] + coordinatorArguments)
        defer { cluster.stop() }
        defer { restore() }
        try cluster.waitHealthy(timeout: 120)
        XCTAssertEqual(cluster.coordinator.log.contains("each on 2 of them"), replicas == 2, cluster.coordinator.log)
        let (status, body) = Harness.http("POST", cluster.httpURL + "/v1/completions", json: Self.request)
        XCTAssertEqual(status, 200, "\(body)")
        let reference = try XCTUnwrap((body["choices"] as? [[String: Any]])?.first?["token_ids"] as? [Int])

        let results = Results()
        let finished = DispatchSemaphore(value: 0)
        let url = cluster.httpURL
        Thread {
            while !results.stop {
                let start = Date()
                let (status, body) = Harness.http("POST", url + "/v1/completions", json: FailoverTests.request, timeout: 60)
                results.add(status, body, seconds: Date().timeIntervalSince(start))
            }
            finished.signal()
        }.start()
        Thread.sleep(forTimeInterval: 0.3)
        let failedAt = Date()
        fail(cluster)
        // Long enough for detection (3 heartbeats) and several more requests; meanwhile, when every
        // expert is back on `replicas` ready workers (the figure for the notes).
        var degradedSeen = false, restoredAfter: Double?
        lastHealthSeen = []
        while Date().timeIntervalSince(failedAt) < recovery {
            lastHealthSeen.insert(Harness.http("GET", cluster.httpURL + "/health", timeout: 2).status)
            let full = Self.fullyReplicated(cluster, replicas: replicas)
            if !full { degradedSeen = true } else if degradedSeen, restoredAfter == nil {
                restoredAfter = Date().timeIntervalSince(failedAt)
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        print(restoredAfter.map { String(format: "replication factor %d restored %.2f s after the failure", replicas, $0) }
              ?? "replication factor \(replicas) not restored within \(recovery) s")
        results.stop = true
        XCTAssertEqual(finished.wait(timeout: .now() + 60), .success, "requests hung")

        let answers = results.all
        let seconds = answers.map(\.seconds).sorted()
        print(String(format: "%d requests across the failure: median %.2f s, slowest %.2f s",
                     answers.count, seconds[seconds.count / 2], seconds.last ?? 0))
        XCTAssertGreaterThanOrEqual(answers.count, 3, "too few requests ran across the failure")
        for answer in answers {
            XCTAssertEqual(answer.status, 200, "a request was lost: \(answer.body)")
            XCTAssertEqual(answer.tokens, reference, "a request's tokens changed through the failure")
        }
        XCTAssertTrue(cluster.coordinator.log.contains(expectLog), cluster.coordinator.log)
        if let maximumRequestSeconds {
            let slowest = answers.map(\.seconds).max() ?? 0
            XCTAssertLessThan(slowest, maximumRequestSeconds, "a request waited out the failure")
        }
        let health = Harness.http("GET", cluster.httpURL + "/health")
        lastSurvivorLogs = cluster.workers.map(\.log)
        XCTAssertEqual(health.status, 200, "one worker down of \(workers) still serves")
        XCTAssertTrue(cluster.coordinator.process.isRunning)
        return health.body["workers"] as? [[String: Any]] ?? []
    }

    /// Every expert on `replicas` serving workers (ready, or degraded: slow lately), by /v1/cluster.
    static func fullyReplicated(_ cluster: LoopbackCluster, replicas: Int) -> Bool {
        let view = Harness.http("GET", cluster.httpURL + "/v1/cluster", timeout: 2).body
        let ready = Set((view["workers"] as? [[String: Any]] ?? [])
            .filter { ["ready", "degraded"].contains($0["state"] as? String ?? "") }
            .compactMap { $0["name"] as? String })
        let layers = (view["experts"] as? [String: Any])?["layers"] as? [[String: Any]] ?? []
        return !layers.isEmpty && layers.allSatisfy { layer in
            (layer["workers"] as? [[String]] ?? []).allSatisfy { $0.filter(ready.contains).count == replicas }
        }
    }

    /// Without replicas, a lost worker's experts move to the survivors after --reassign-after while
    /// the requests that need them wait; with replicas, moving them restores the replication factor.
    func testALostWorkersExpertsMoveToTheSurvivorsWhileRequestsWait() throws {
        for replicas in [1, 2] {
            let workers = try assertRequestsSurvive({ $0.workers[1].kill(signal: SIGKILL) }, recovery: 7,
                                                    expectLog: "experts move to", replicas: replicas,
                                                    coordinatorArguments: ["--reassign-after", "1"])
            let serving = workers.filter { $0["ready"] as? Bool == true }
            XCTAssertEqual(serving.compactMap { $0["name"] as? String }.sorted(), ["worker-1", "worker-3"])
            XCTAssertEqual(serving.compactMap { $0["experts"] as? Int }.reduce(0, +), 16 * replicas,
                           "every expert on \(replicas) live workers again: \(workers)")
            // Without replicas, readiness turns 503 while the requests wait for the experts' new home.
            XCTAssertEqual(lastHealthSeen.contains(503), replicas == 1, "\(lastHealthSeen)")
            XCTAssertTrue(lastSurvivorLogs.contains { $0.contains("held already and kept") },
                          "survivors load only the experts they gain:\n\(lastSurvivorLogs.joined())")
        }
    }

    func testANewWorkerTakesOverALostWorkersExperts() throws {
        let cluster = try LoopbackCluster(model: Harness.fixture("mixtral"), workers: 2, precision: "f32",
                                          coordinatorArguments: ["--reassign-after", "never"])
        defer { cluster.stop() }
        try cluster.waitHealthy()
        let held = Harness.http("GET", cluster.httpURL + "/health").body["workers"] as? [[String: Any]] ?? []
        let lostCount = try XCTUnwrap(held.first { $0["name"] as? String == "worker-1" }?["experts"] as? Int)
        cluster.workers[0].kill(signal: SIGKILL)
        _ = Harness.poll(cluster.httpURL + "/health", until: 503, timeout: 15)
        try cluster.addWorker(name: "fresh")
        try cluster.waitHealthy()
        XCTAssertTrue(cluster.coordinator.log.contains("worker 'fresh' takes over the \(lostCount) experts of lost worker 'worker-1'"),
                      cluster.coordinator.log)
        let (status, body) = Harness.http("POST", cluster.httpURL + "/v1/completions", json: Self.request)
        XCTAssertEqual(status, 200, "\(body)")
    }

    func testRequestsForExpertsNobodyHoldsFailAfterTheTimeoutNamingThem() throws {
        let cluster = try LoopbackCluster(model: Harness.fixture("mixtral"), workers: 2, precision: "f32",
                                          coordinatorArguments: ["--reassign-after", "never", "--unserved-timeout", "1"])
        defer { cluster.stop() }
        try cluster.waitHealthy()
        cluster.workers[0].kill(signal: SIGKILL)
        Thread.sleep(forTimeInterval: 0.5)
        let started = Date()
        let (status, body) = Harness.http("POST", cluster.httpURL + "/v1/completions", json: Self.request)
        XCTAssertEqual(status, 503, "\(body)")
        let message = ((body["error"] as? [String: Any])?["message"] as? String) ?? ""
        XCTAssertTrue(message.contains("has no live replica: worker(s) worker-1 holding it are lost"), message)
        XCTAssertLessThan(Date().timeIntervalSince(started), 10, "the wait is bounded by --unserved-timeout")
        XCTAssertTrue(cluster.coordinator.process.isRunning)
        // It serves again as soon as the worker returns.
        try cluster.addWorker(name: "worker-1")
        try cluster.waitHealthy()
        let again = Harness.http("POST", cluster.httpURL + "/v1/completions", json: Self.request)
        XCTAssertEqual(again.status, 200, "\(again.body)\n\(cluster.coordinator.log)")
    }

    func testAWorkerKilledMidRequestCostsNoRequestAndNoToken() throws {
        try assertRequestsSurvive({ $0.workers[1].kill(signal: SIGKILL) }, recovery: 5)
    }

    /// With `--offload-dense`, the slices of shared experts and dense FFN layers are replicated and
    /// failed over like routed experts: GLM-4.5's dense first layer and shared experts survive a kill.
    func testOffloadedDenseSlicesFailOverLikeExperts() throws {
        try assertRequestsSurvive({ $0.workers[1].kill(signal: SIGKILL) }, recovery: 5,
                                  coordinatorArguments: ["--offload-dense"], fixture: "glm4_moe")
    }

    /// Behemoth's topology in miniature over 64 workers with replicas 2 (shared experts offloaded
    /// too): a worker killed mid-generation costs no request and no token.
    func testSixtyFourWorkersWithReplicasLoseNothingWhenOneIsKilled() throws {
        try assertRequestsSurvive({ $0.workers[17].kill(signal: SIGKILL) }, recovery: 5,
                                  coordinatorArguments: ["--offload-dense"], fixture: ScaleTests.fixture, workers: 64)
    }

    func testAFrozenWorkerIsDetectedAndItsWorkGoesToReplicas() throws {
        var frozen: Int32 = 0
        try assertRequestsSurvive({ cluster in
            frozen = cluster.workers[2].process.processIdentifier
            kill(frozen, SIGSTOP)
        }, recovery: 6, restore: { kill(frozen, SIGCONT) }, maximumRequestSeconds: 2)
    }

    /// A worker that stalls for a while (frozen 2 s, under the 3 s that would declare it lost): its
    /// work in flight goes to replicas after a short deadline, it is marked degraded, requests keep
    /// their tokens and none waits out the stall.
    func testASlowWorkerDoesNotHoldTheClusterItsWorkIsHedged() throws {
        var stalled: Int32 = 0
        let stall = 2.0
        let started = Date()
        try assertRequestsSurvive({ cluster in
            stalled = cluster.workers[2].process.processIdentifier
            kill(stalled, SIGSTOP)
            let health = Harness.http("GET", cluster.httpURL + "/health", timeout: 5)
            Thread.sleep(forTimeInterval: 0.5)
            let degraded = Harness.http("GET", cluster.httpURL + "/health", timeout: 5)
            XCTAssertEqual(health.status, 200)
            let entry = (degraded.body["workers"] as? [[String: Any]])?.first { $0["name"] as? String == "worker-3" }
            XCTAssertNotNil(entry?["degraded"], "the stalled worker must show as degraded: \(degraded.body)")
            Thread.sleep(forTimeInterval: stall - 0.5)
            kill(stalled, SIGCONT)
        }, recovery: 2, expectLog: "is degraded", maximumRequestSeconds: stall / 2)
        XCTAssertGreaterThan(Date().timeIntervalSince(started), stall)
    }

    /// A worker that answers with NaN, infinities or the wrong shape: its results are never added,
    /// its work goes to replicas, it is marked faulty, and every request keeps its tokens.
    func testARogueWorkersWrongAnswersAreDiscardedAndRedone() throws {
        let fixture = Harness.fixture("mixtral")
        let expected = try XCTUnwrap(JSONSerialization.jsonObject(
            with: Data(contentsOf: fixture.appendingPathComponent("expected.json"))) as? [String: Any])
        let prompt = try XCTUnwrap(expected["prompt_tokens"] as? [Int])
        let greedy = try XCTUnwrap(expected["greedy_tokens"] as? [Int])
        let proto = try Harness.pythonProto()
        for mode in ["nan", "inf", "shape"] {
            let cluster = try LoopbackCluster(model: fixture, workers: 0, minWorkers: 3, precision: "f32",
                                              coordinatorArguments: ["--replicas", "2"])
            defer { cluster.stop() }
            let deadline = Date().addingTimeInterval(30)
            while !cluster.coordinator.log.contains("model fingerprint"), Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
            let fingerprint = try XCTUnwrap(cluster.coordinator.log.range(of: #"model fingerprint [^)]+"#, options: .regularExpression)
                .map { String(cluster.coordinator.log[$0].dropFirst("model fingerprint ".count)) })
            let rogue = try ChildProcess(URL(fileURLWithPath: "/usr/bin/env"), [
                "python3", Harness.root.appendingPathComponent("Tests/PythonClient/rogue_worker.py").path, "--proto-dir", proto.path,
                "--endpoint", cluster.zmqEndpoint, "--name", "rogue", "--fingerprint", fingerprint, "--mode", mode,
            ], name: "rogue")
            defer { rogue.kill() }
            try cluster.addWorker(name: "worker-1")
            try cluster.addWorker(name: "worker-2")
            try cluster.waitHealthy()
            for _ in 0..<3 {
                let (status, body) = Harness.http("POST", cluster.httpURL + "/v1/completions", json: [
                    "prompt": prompt, "max_tokens": greedy.count, "temperature": 0, "ignore_eos": true, "return_token_ids": true,
                ])
                XCTAssertEqual(status, 200, "\(mode): \(body)")
                XCTAssertEqual((body["choices"] as? [[String: Any]])?.first?["token_ids"] as? [Int], greedy, "\(mode): tokens changed")
            }
            XCTAssertTrue(rogue.log.contains("wrongly"), "\(mode): the rogue worker never got work:\n\(rogue.log)")
            XCTAssertTrue(cluster.coordinator.log.contains("worker 'rogue' is faulty, its results discarded"), cluster.coordinator.log)
            let health = Harness.http("GET", cluster.httpURL + "/health")
            XCTAssertEqual(health.status, 200)
            let entry = (health.body["workers"] as? [[String: Any]])?.first { $0["name"] as? String == "rogue" }
            XCTAssertNotNil(entry?["faulty"] as? String, "\(mode): /health must say the rogue worker is faulty: \(health.body)")
        }
    }

    func testWorkersGetNoMoreExpertsThanTheirLimitAndTooSmallLimitsAreAClearError() throws {
        let fixture = Harness.fixture("mixtral")
        let cluster = try LoopbackCluster(model: fixture, workers: 0, minWorkers: 2, precision: "f32")
        defer { cluster.stop() }
        cluster.workers.append(try ChildProcess(cluster.binary, ["worker", "--coordinator", cluster.zmqEndpoint, "--model", fixture.path,
                                                                 "--name", "small", "--max-expert-memory", "100KiB"], name: "small"))
        try cluster.addWorker(name: "large")
        try cluster.waitHealthy()
        let workers = Harness.http("GET", cluster.httpURL + "/health").body["workers"] as? [[String: Any]] ?? []
        let held = Dictionary(uniqueKeysWithValues: workers.map { ($0["name"] as? String ?? "", $0["experts"] as? Int ?? 0) })
        XCTAssertEqual(held["small", default: 0] + held["large", default: 0], 16)
        XCTAssertLessThan(held["small", default: 99], held["large", default: 0], "\(workers)")
        XCTAssertEqual(Harness.http("POST", cluster.httpURL + "/v1/completions", json: Self.request).status, 200)

        let cramped = try LoopbackCluster(model: fixture, workers: 0, minWorkers: 2, precision: "f32",
                                          coordinatorArguments: ["--replicas", "2"])
        defer { cramped.stop() }
        for name in ["tiny-1", "tiny-2"] {
            cramped.workers.append(try ChildProcess(cramped.binary, ["worker", "--coordinator", cramped.zmqEndpoint, "--model",
                                                                     fixture.path, "--name", name, "--max-expert-memory", "100KiB"],
                                                    name: name))
        }
        cramped.coordinator.waitForExit(timeout: 30)
        XCTAssertNotEqual(cramped.coordinator.process.terminationStatus, 0)
        XCTAssertTrue(cramped.coordinator.log.contains("do not fit the workers' --max-expert-memory"), cramped.coordinator.log)
    }

    /// A second process under a live worker's name is told so and exits; a worker that died and is
    /// restarted under its name at once is welcome.
    func testASecondWorkerUnderALiveWorkersNameIsRefusedWithAMessage() throws {
        let cluster = try LoopbackCluster(model: Harness.fixture("mixtral"), workers: 1, precision: "f32")
        defer { cluster.stop() }
        try cluster.waitHealthy()
        try cluster.addWorker(name: "worker-1")
        cluster.workers[1].waitForExit(timeout: 20)
        XCTAssertNotEqual(cluster.workers[1].process.terminationStatus, 0)
        XCTAssertTrue(cluster.workers[1].log.contains("a live worker already has that name; give this one another --name"),
                      cluster.workers[1].log)
        XCTAssertTrue(cluster.coordinator.log.contains("refused a second worker named 'worker-1'"), cluster.coordinator.log)
        XCTAssertEqual(Harness.http("POST", cluster.httpURL + "/v1/completions", json: Self.request).status, 200,
                       "the first worker keeps serving")

        cluster.workers[0].kill(signal: SIGKILL)
        try cluster.addWorker(name: "worker-1")
        try cluster.waitHealthy()
        XCTAssertTrue(cluster.workers[2].process.isRunning, cluster.workers[2].log)
        XCTAssertEqual(Harness.http("POST", cluster.httpURL + "/v1/completions", json: Self.request).status, 200)
    }

    /// How long a silent worker has before it counts as lost: 3 s by default, --worker-timeout to change.
    func testTheWorkerTimeoutDecidesWhenASilentWorkerIsLost() throws {
        for (timeout, arguments) in [(3.0, [String]()), (6.0, ["--worker-timeout", "6"])] {
            let cluster = try LoopbackCluster(model: Harness.fixture("mixtral"), workers: 2, coordinatorArguments: arguments)
            defer { cluster.stop() }
            try cluster.waitHealthy()
            let frozen = cluster.workers[1].process.processIdentifier
            kill(frozen, SIGSTOP)
            defer { kill(frozen, SIGCONT) }
            let deadline = Date().addingTimeInterval(timeout + 5)
            while !cluster.coordinator.log.contains("worker 'worker-2' lost: silent for"), Date() < deadline {
                Thread.sleep(forTimeInterval: 0.1)
            }
            let silence = cluster.coordinator.log.components(separatedBy: "worker 'worker-2' lost: silent for ").dropFirst().first
                .flatMap { Double($0.prefix { $0 != " " }) }
            let measured = try XCTUnwrap(silence, cluster.coordinator.log)
            XCTAssertGreaterThanOrEqual(measured, timeout - 0.1)
            XCTAssertLessThan(measured, timeout + 1.5, "lost too late")
        }
    }

    func testTooFewWorkersForTheReplicasIsRefusedClearly() throws {
        let refused = try ChildProcess(try Harness.binary(), ["coordinator", "--model", Harness.fixture("mixtral").path,
                                                              "--min-workers", "2", "--replicas", "3"], name: "bad-replicas")
        refused.waitForExit(timeout: 10)
        XCTAssertNotEqual(refused.process.terminationStatus, 0)
        XCTAssertTrue(refused.log.contains("--replicas 3 needs at least 3 workers"), refused.log)
    }
}

/// A coordinator that restarts finds its workers again: they reconnect by themselves and keep the
/// experts they hold (the placement is deterministic for the same worker names).
final class CoordinatorRestartTests: XCTestCase {
    func testRunningWorkersRejoinARestartedCoordinatorWithoutReloading() throws {
        let cluster = try LoopbackCluster(model: Harness.fixture("mixtral"), workers: 2, precision: "f32")
        defer { cluster.stop() }
        try cluster.waitHealthy()
        let request: [String: Any] = ["prompt": [1, 2, 3], "max_tokens": 16, "temperature": 0, "ignore_eos": true,
                                      "return_token_ids": true]
        let before = Harness.http("POST", cluster.httpURL + "/v1/completions", json: request)
        XCTAssertEqual(before.status, 200)
        let workerPids = cluster.workers.map(\.process.processIdentifier)

        cluster.coordinator.kill(signal: SIGKILL)
        let port = String(cluster.httpURL.split(separator: ":").last!)
        let restarted = try ChildProcess(cluster.binary, [
            "coordinator", "--model", cluster.model.path, "--listen", cluster.zmqEndpoint, "--http", "127.0.0.1:\(port)",
            "--min-workers", "2", "--precision", "f32", "--wire-dtype", "f32",
        ], name: "restarted-coordinator")
        defer { restarted.kill(signal: SIGTERM) }
        XCTAssertEqual(Harness.poll(cluster.httpURL + "/health", timeout: 30).status, 200, restarted.log)
        let after = Harness.http("POST", cluster.httpURL + "/v1/completions", json: request)
        XCTAssertEqual(after.status, 200)
        XCTAssertEqual((after.body["choices"] as? [[String: Any]])?.first?["token_ids"] as? [Int],
                       (before.body["choices"] as? [[String: Any]])?.first?["token_ids"] as? [Int])
        XCTAssertEqual(cluster.workers.map(\.process.processIdentifier), workerPids)
        for worker in cluster.workers {
            XCTAssertTrue(worker.process.isRunning, "workers are not restarted")
            XCTAssertEqual(worker.log.components(separatedBy: "] loading ").count - 1, 1,
                           "a worker reloaded its experts:\n\(worker.log)")
        }
    }
}
