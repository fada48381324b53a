import Foundation
import MeshModels
import XCTest

/// The serving engine behind HTTP, on a coordinator with real worker processes and on `serve`:
/// many concurrent clients get exactly what they get alone; cancelled and refused requests
/// leave nothing behind.
final class ServingTests: XCTestCase {
    /// 64 requests of mixed prompt and output lengths; every fourth shares a 40-token prefix.
    static func mixedBodies(count: Int = 64, seed: UInt64 = 5) -> [[String: Any]] {
        var random = SeededGenerator(seed: seed)
        func tokens(_ n: Int) -> [Int] { (0..<n).map { _ in 1 + Int(random.next() % 300) } }
        let shared = tokens(40)
        return (0..<count).map { index in
            let prompt = index % 4 == 0 ? shared + tokens(1 + index % 13) : tokens(1 + Int(random.next() % 70))
            var body: [String: Any] = ["prompt": prompt, "max_tokens": 1 + Int(random.next() % 20), "temperature": 0,
                                       "logprobs": 2, "return_token_ids": true, "ignore_eos": true]
            if index % 6 == 1 { body["temperature"] = 0.8; body["seed"] = index }
            return body
        }
    }

    struct Outcome: Equatable {
        var tokens: [Int]
        var logprobs: [Double]
    }

    static func outcome(_ answer: RawHTTP.Answer) -> Outcome? {
        guard answer.status == 200, let choice = (answer.json["choices"] as? [[String: Any]])?.first else { return nil }
        return Outcome(tokens: choice["token_ids"] as? [Int] ?? [],
                       logprobs: (choice["logprobs"] as? [String: Any])?["token_logprobs"] as? [Double] ?? [])
    }

    /// Sends every body at once from its own thread; `hangUps` are sent and abandoned mid-way.
    static func concurrently(_ url: String, _ bodies: [[String: Any]], hangUps: [[String: Any]] = []) -> [Outcome?] {
        final class Box: @unchecked Sendable {
            let lock = NSLock()
            var outcomes: [Int: Outcome?] = [:]
        }
        let box = Box()
        let group = DispatchGroup()
        for (index, body) in bodies.map(Unchecked.init).enumerated() {
            group.enter()
            Thread {
                let outcome = outcome(RawHTTP.post(url, json: body.value))
                box.lock.lock(); box.outcomes[index] = outcome; box.lock.unlock()
                group.leave()
            }.start()
        }
        for (index, body) in hangUps.map(Unchecked.init).enumerated() {
            group.enter()
            Thread {
                let body = body.value
                // Half hang up while waiting for a whole answer, half after the first streamed bytes.
                if index % 2 == 0 {
                    RawHTTP.postAndHangUp(url, json: body, after: 0.05)
                } else {
                    RawHTTP.postAndHangUp(url, json: body.merging(["stream": true]) { $1 }, after: 0, bytes: 1)
                }
                group.leave()
            }.start()
        }
        _ = group.wait(timeout: .now() + 300)
        return bodies.indices.map { box.outcomes[$0] ?? nil }
    }

    static func engineHealth(_ url: String) -> [String: Any] {
        RawHTTP.post(url, "/health", json: [:]).json["engine"] as? [String: Any] ?? [:]
    }

    /// Waits until the engine has nothing running or waiting; returns its health.
    static func idleEngine(_ url: String, file: StaticString = #filePath, line: UInt = #line) -> [String: Any] {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            let health = Harness.http("GET", url + "/health").body["engine"] as? [String: Any] ?? [:]
            if health["running"] as? Int == 0, health["waiting"] as? Int == 0 { return health }
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTFail("the engine still has sequences 10 s after its clients finished or left", file: file, line: line)
        return [:]
    }

    func assertBatchedEqualsAlone(_ url: String, _ label: String, hangUps: [[String: Any]] = []) {
        let bodies = Self.mixedBodies()
        let alone = bodies.map { Self.outcome(RawHTTP.post(url, json: $0)) }
        let together = Self.concurrently(url, bodies, hangUps: hangUps)
        for index in bodies.indices {
            guard let single = alone[index], let batched = together[index] else {
                XCTFail("\(label) request \(index) failed: alone \(String(describing: alone[index])), batched \(String(describing: together[index]))")
                continue
            }
            XCTAssertEqual(batched.tokens, single.tokens, "\(label) request \(index): tokens differ alone and among 63 others")
            let diff = zip(batched.logprobs, single.logprobs).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThanOrEqual(diff, 1e-4, "\(label) request \(index): logprobs differ")
        }
        let health = Self.idleEngine(url)
        XCTAssertEqual(health["kv_blocks_used"] as? Int, 0, "\(label): blocks leaked: \(health)")
        XCTAssertGreaterThan(health["prefix_cache_hit_tokens"] as? Int ?? 0, 0, "\(label): the shared prefix was never reused")
    }

    func testClusterServesSixtyFourConcurrentRequestsExactlyAsAloneOnEveryArchitecture() throws {
        for fixture in LoopbackClusterTests.architectures {
            let cluster = try LoopbackCluster(model: Harness.fixture(fixture), workers: 3)
            defer { cluster.stop() }
            try cluster.waitHealthy()
            assertBatchedEqualsAlone(cluster.httpURL, fixture)
        }
    }

    func testClientsThatHangUpAreCancelledAndFreeTheirBlocks() throws {
        let cluster = try LoopbackCluster(model: Harness.fixture("mixtral"), workers: 3)
        defer { cluster.stop() }
        try cluster.waitHealthy()
        // 16 long requests whose clients leave early, among the 64 that wait for their answers.
        let hangUps: [[String: Any]] = (0..<16).map { ["prompt": [3, 1, 4, 1, 5, 9, $0 + 2], "max_tokens": 240, "ignore_eos": true] }
        assertBatchedEqualsAlone(cluster.httpURL, "with hang-ups", hangUps: hangUps)
        let health = Self.idleEngine(cluster.httpURL)
        // Had they run to the end, the 16 abandoned requests alone would have made 3840 tokens.
        let generated = health["generated_tokens"] as? Int ?? .max
        let answered = Self.mixedBodies().reduce(0) { $0 + ($1["max_tokens"] as! Int) } * 2
        XCTAssertLessThan(generated - answered, 16 * 240 / 2, "abandoned requests ran on: \(health)")
        XCTAssertTrue(cluster.coordinator.process.isRunning)
    }

    func testSmallPoolPreemptsAndEveryRequestStillCompletesCorrectly() throws {
        // 24 blocks of 16 positions; 16 requests of up to 90 tokens each need far more together.
        let cluster = try LoopbackCluster(model: Harness.fixture("llama4"), workers: 2,
                                          coordinatorArguments: ["--kv-cache-memory", "\(24 * Self.blockBytes("llama4"))"])
        defer { cluster.stop() }
        try cluster.waitHealthy()
        let bodies: [[String: Any]] = (0..<16).map {
            ["prompt": Array(repeating: 7 + $0, count: 5 + $0), "max_tokens": 60 + 2 * $0, "temperature": 0,
             "return_token_ids": true, "ignore_eos": true, "logprobs": 1]
        }
        let alone = bodies.map { Self.outcome(RawHTTP.post(cluster.httpURL, json: $0)) }
        let together = Self.concurrently(cluster.httpURL, bodies)
        XCTAssertEqual(together, alone)
        XCTAssertFalse(alone.contains(nil))
        let health = Self.idleEngine(cluster.httpURL)
        XCTAssertGreaterThan(health["preemptions"] as? Int ?? 0, 0, "the pool never ran dry: \(health)")
        XCTAssertEqual(health["kv_blocks_used"] as? Int, 0)
    }

    /// Bytes of one KV cache block of a fixture (layers × keys and values × 16 positions × kv width × f32).
    static func blockBytes(_ fixture: String) -> Int {
        let url = Harness.fixture(fixture).appendingPathComponent("config.json")
        var config = (try? JSONSerialization.jsonObject(with: Data(contentsOf: url))) as? [String: Any] ?? [:]
        if let text = config["text_config"] as? [String: Any] { config = text }
        let heads = config["num_attention_heads"] as! Int
        let headDim = config["head_dim"] as? Int ?? (config["hidden_size"] as! Int) / heads
        let width = (config["num_key_value_heads"] as? Int ?? heads) * headDim
        return (config["num_hidden_layers"] as! Int) * 2 * 16 * width * 4
    }

    func testFullQueueAnswers429AndImpossibleRequests400WhileServing() throws {
        let cluster = try LoopbackCluster(model: Harness.fixture("mixtral"), workers: 1,
                                          coordinatorArguments: ["--max-running", "1", "--max-waiting", "2",
                                                                 "--kv-cache-memory", "\(8 * Self.blockBytes("mixtral"))"])
        defer { cluster.stop() }
        try cluster.waitHealthy()
        let impossible = RawHTTP.post(cluster.httpURL, json: ["prompt": Array(repeating: 1, count: 100), "max_tokens": 100])
        XCTAssertEqual(impossible.status, 400)
        XCTAssertTrue("\(impossible.json)".contains("--kv-cache-memory"), "\(impossible.json)")
        final class Box: @unchecked Sendable {
            let lock = NSLock()
            var answers: [RawHTTP.Answer] = []
        }
        let box = Box()
        let group = DispatchGroup()
        let url = cluster.httpURL
        for index in 0..<12 {
            group.enter()
            Thread {
                let answer = RawHTTP.post(url, json: ["prompt": [1, 2, index], "max_tokens": 100, "ignore_eos": true])
                box.lock.lock(); box.answers.append(answer); box.lock.unlock()
                group.leave()
            }.start()
        }
        XCTAssertEqual(group.wait(timeout: .now() + 120), .success)
        let busy = box.answers.filter { $0.status == 429 }
        XCTAssertFalse(busy.isEmpty, "12 requests against 1 running + 2 waiting: some must be refused")
        XCTAssertTrue(busy.allSatisfy { $0.headers.contains("Retry-After: 1") })
        XCTAssertTrue(busy.allSatisfy { "\($0.json)".contains("busy") }, "\(busy.first?.json ?? [:])")
        XCTAssertEqual(box.answers.filter { $0.status == 200 }.count + busy.count, 12)
        XCTAssertEqual(Harness.http("GET", cluster.httpURL + "/health").status, 200)
        XCTAssertEqual(RawHTTP.post(cluster.httpURL, json: ["prompt": [1, 2], "max_tokens": 2]).status, 200)
    }

    func testServeAloneGivesTheClusterTokens() throws {
        let binary = try Harness.binary()
        let port = Harness.freePort()
        let serve = try ChildProcess(binary, ["serve", "--model", Harness.fixture("qwen3_moe").path, "--http", "127.0.0.1:\(port)"], name: "serve")
        defer { serve.kill(signal: SIGTERM) }
        let url = "http://127.0.0.1:\(port)"
        let deadline = Date().addingTimeInterval(30)
        while Harness.http("GET", url + "/health", timeout: 2).status != 200, Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        assertBatchedEqualsAlone(url, "serve")
        XCTAssertTrue(serve.log.contains("KV cache:"), serve.log)
    }
}

/// Hands a value to another thread where the test knows there is no race.
struct Unchecked<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
