import Foundation
import MeshEngine
import MeshModels
import MeshTensors
import XCTest

/// Coordinator + 3 workers as real processes on loopback: results equal the in-process engine.
final class LoopbackClusterTests: XCTestCase {
    static let architectures = Harness.fixtures(withExperts: true)

    func prompt(_ fixture: String) throws -> [Int] {
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: Harness.fixture(fixture).appendingPathComponent("expected.json"))) as? [String: Any]
        return try XCTUnwrap(expected?["prompt_tokens"] as? [Int])
    }

    /// Every architecture with the processes' default precision (bf16 weights in bf16 dot products),
    /// the bf16 checkpoint once more with --precision f32, once with bf16 activations on the
    /// wire (lossless there, as the kernels round activations to bf16 anyway), and once with
    /// generated tokens on the dot-product kernels (under AMX: their role travels to the workers).
    func testClusterEqualsSingleProcessForEveryArchitecture() throws {
        let runs = Self.architectures.map { ($0, MatmulKernels.Precision.bf16, "f32", MatmulKernels.DecodeKernels.tiles) }
            + [("mixtral-bf16", .f32, "f32", .tiles), ("mixtral-bf16", .bf16, "bf16", .tiles), ("mixtral-bf16", .bf16, "bf16", .dot)]
        let saved = (MatmulKernels.current, MatmulKernels.decodeKernels)
        defer { MatmulKernels.use(saved.0); MatmulKernels.decodeKernels = saved.1 }
        for (fixture, precision, wire, decode) in runs {
            let variant = MatmulKernels.use(precision)
            MatmulKernels.decodeKernels = decode
            let cluster = try LoopbackCluster(model: Harness.fixture(fixture), workers: 3, wireDType: wire,
                                              precision: precision.rawValue, coordinatorArguments: ["--decode-kernels", decode.rawValue])
            defer { cluster.stop() }
            try cluster.waitHealthy()
            let difference = try Harness.assertClusterEqualsSingleProcess(fixture, cluster)
            print("\(fixture) (\(variant.name), \(wire) wire, decode \(decode)): cluster == single process; "
                  + "max logprob diff \(difference)")
        }
    }

    /// `--offload-dense`: shared experts and dense FFN layers run on the workers as expert-wide
    /// slices, placed like experts (each worker's count includes them); results equal one process.
    func testOffloadedDenseLayersAndSharedExpertsEqualSingleProcess() throws {
        let fixtures = Self.architectures.filter { name in
            let spec = try? ModelSpec.decode(configFile: Harness.fixture(name).appendingPathComponent("config.json"))
            return spec.flatMap { spec in DenseSlices(spec: spec).map { !$0.keys(spec).isEmpty } } ?? false
        }
        XCTAssertTrue(Set(["glm4_moe", "deepseek_v3", "qwen2_moe", "llama4"]).isSubset(of: fixtures), "\(fixtures)")
        for fixture in fixtures {
            let spec = try ModelSpec.decode(configFile: Harness.fixture(fixture).appendingPathComponent("config.json"))
            let slices = try XCTUnwrap(DenseSlices(spec: spec)).keys(spec).count
            let routed = spec.layers.compactMap(\.moe).reduce(0) { $0 + $1.expertCount }
            let cluster = try LoopbackCluster(model: Harness.fixture(fixture), workers: 3, precision: "f32",
                                              coordinatorArguments: ["--offload-dense"])
            defer { cluster.stop() }
            try cluster.waitHealthy()
            XCTAssertTrue(cluster.coordinator.log.contains("as \(slices) slices of up to"), cluster.coordinator.log)
            let workers = Harness.http("GET", cluster.httpURL + "/health").body["workers"] as? [[String: Any]] ?? []
            XCTAssertEqual(workers.compactMap { $0["experts"] as? Int }.reduce(0, +), routed + slices,
                           "\(fixture): the workers hold every routed expert and every slice: \(workers)")
            let difference = try Harness.assertClusterEqualsSingleProcess(fixture, cluster)
            // The slices did the work: tokens were routed to the first slice of every such layer.
            let metrics = try String(decoding: XCTUnwrap(RawHTTP.get(cluster.httpURL, "/metrics")).body, as: UTF8.self)
            for layer in spec.layers.indices {
                guard let firstId = DenseSlices(spec: spec)?.slices(of: spec.layers[layer])?.firstId else { continue }
                let counted = metrics.split(separator: "\n").contains { line in
                    line.hasPrefix("expertmesh_expert_routed_tokens_total{") && line.contains("layer=\"\(layer)\"")
                        && line.contains("expert=\"\(firstId)\"") && (Double(line.split(separator: " ").last ?? "") ?? 0) > 0
                }
                XCTAssertTrue(counted, "\(fixture): no token was routed to layer \(layer)'s slice \(firstId)")
            }
            print("\(fixture) --offload-dense (\(slices) slices): cluster == single process; max logprob diff \(difference)")
        }
    }

    /// `--overlap-exchanges on`: every step runs as two micro-batches, one's tokens with the workers while
    /// the other computes. A prompt cut in two, and concurrent requests of several lengths, give what one
    /// process gives (a shared expert with its gate, a dense first layer, and its slices on the workers);
    /// so does `auto`, which times steps both ways.
    func testOverlappedExchangesEqualSingleProcess() throws {
        let runs: [(String, String, [String])] = [("mixtral", "on", []), ("qwen2_moe", "on", []),
                                                  ("deepseek_v3", "on", ["--offload-dense"]), ("mixtral", "auto", [])]
        for (fixture, mode, extra) in runs {
            // The last run's coordinator and workers also poll for messages without sleeping.
            let busy = mode == "auto" ? ["--busy-poll", "500"] : []
            let cluster = try LoopbackCluster(model: Harness.fixture(fixture), workers: 2, precision: "f32",
                                              coordinatorArguments: ["--overlap-exchanges", mode] + extra + busy,
                                              workerArguments: busy)
            defer { cluster.stop() }
            try cluster.waitHealthy()
            let difference = try Harness.assertClusterEqualsSingleProcess(fixture, cluster)

            let local = try LocalEngine(directory: Harness.fixture(fixture))
            let prompts = (0..<6).map { index in (0..<(3 + 5 * index)).map { (index * 31 + $0 * 7) % local.spec.vocabSize } }
            let expected = try prompts.map { try local.generator.generate(GenerationRequest(prompt: $0, maxTokens: 8)).tokens }
            let (answers, url) = (Answers(count: prompts.count), cluster.httpURL)
            DispatchQueue.concurrentPerform(iterations: prompts.count) { index in
                let (status, body) = Harness.http("POST", url + "/v1/completions", json: [
                    "prompt": prompts[index], "max_tokens": 8, "temperature": 0, "return_token_ids": true,
                    "ignore_eos": true])
                answers.set(index, status == 200 ? (body["choices"] as? [[String: Any]])?.first?["token_ids"] as? [Int] : nil)
            }
            XCTAssertEqual(answers.values, expected.map { Optional($0) }, "\(fixture): concurrent requests\n\(cluster.coordinator.log)")

            let metrics = try String(decoding: XCTUnwrap(RawHTTP.get(cluster.httpURL, "/metrics")).body, as: UTF8.self)
            let overlapped = metrics.split(separator: "\n").first { $0.hasPrefix("expertmesh_overlapped_exchanges_total ") }
                .flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
            XCTAssertGreaterThan(overlapped, 0, "\(fixture): no exchange was sent while another was in flight\n\(metrics)")
            XCTAssertEqual(Harness.http("GET", cluster.httpURL + "/v1/cluster").body["overlap_exchanges"] as? String, mode)
            let status = try runTool(Harness.binary().path, ["status", "--server", cluster.httpURL])
            XCTAssertTrue(status.output.contains("steps overlap exchanges (\(mode))"), status.output)
            print("\(fixture) --overlap-exchanges \(mode) \(extra): cluster == single process (max logprob diff \(difference)); "
                  + "\(Int(overlapped)) exchanges overlapped another")
        }
    }

    /// Results of concurrent requests, by request.
    final class Answers: @unchecked Sendable {
        private let lock = NSLock()
        private var stored: [[Int]?]
        init(count: Int) { stored = Array(repeating: nil, count: count) }
        func set(_ index: Int, _ value: [Int]?) { lock.withLock { stored[index] = value } }
        var values: [[Int]?] { lock.withLock { stored } }
    }

    /// Workers holding int8 (Q8_0) experts give exactly what one process with int8 experts gives
    /// (with the processes' default kernels: under AMX, prompt tokens through the tiles).
    func testInt8WorkersEqualSingleProcessWithInt8Experts() throws {
        try XCTSkipUnless(LinearWeight.q8Supported, "this CPU has no int8 kernels")
        let saved = (MatmulKernels.current, MatmulKernels.decodeKernels)
        defer { MatmulKernels.use(saved.0); MatmulKernels.decodeKernels = saved.1 }
        MatmulKernels.use(.bf16)
        MatmulKernels.decodeKernels = .tiles
        for fixture in ["mixtral", "llama4"] {
            let tokens = try prompt(fixture)
            let engine = try LocalEngine(directory: Harness.fixture(fixture), formats: WeightFormats(experts: .int8))
            let local = try engine.generator.generate(GenerationRequest(prompt: tokens, maxTokens: 6, logprobs: 1))
            let cluster = try LoopbackCluster(model: Harness.fixture(fixture), workers: 2, workerArguments: ["--weights-dtype", "int8"])
            defer { cluster.stop() }
            try cluster.waitHealthy()
            let (status, body) = Harness.http("POST", cluster.httpURL + "/v1/completions", json: [
                "prompt": tokens, "max_tokens": 6, "temperature": 0, "logprobs": 1, "return_token_ids": true, "ignore_eos": true])
            XCTAssertEqual(status, 200, "\(body)")
            let choice = try XCTUnwrap((body["choices"] as? [[String: Any]])?.first)
            XCTAssertEqual(choice["token_ids"] as? [Int], local.tokens, "\(fixture): int8 workers differ from one int8 process")
            let remote = try XCTUnwrap((choice["logprobs"] as? [String: Any])?["token_logprobs"] as? [Double])
            let diff = zip(remote, local.logprobs.map { Double($0.logprob) }).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThan(diff, 1e-4, "\(fixture): logprobs differ")
            XCTAssertTrue(cluster.workers[0].log.contains("(int8)"), cluster.workers[0].log)
        }
    }

    /// A dense model (llama, mistral, qwen2, qwen3) is served by the coordinator alone, at once, even
    /// when --min-workers asks for workers; its results equal transformers' and the local engine's.
    /// A worker started with it refuses clearly.
    func testDenseModelsAreServedByTheCoordinatorAlone() throws {
        let dense = Harness.fixtures(withExperts: false)
        XCTAssertEqual(Set(dense), ["llama", "mistral", "qwen2", "qwen3"])
        for fixture in dense {
            let cluster = try LoopbackCluster(model: Harness.fixture(fixture), workers: 0, minWorkers: 2)
            defer { cluster.stop() }
            try cluster.waitHealthy(timeout: 30)
            XCTAssertTrue(cluster.coordinator.log.contains("dense model (no experts): serving it alone"), cluster.coordinator.log)
            let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: Harness.fixture(fixture)
                .appendingPathComponent("expected.json"))) as? [String: Any]
            let tokens = try XCTUnwrap(expected?["prompt_tokens"] as? [Int])
            let (status, body) = Harness.http("POST", cluster.httpURL + "/v1/completions", json: [
                "prompt": tokens, "max_tokens": 6, "temperature": 0, "logprobs": 1, "return_token_ids": true, "ignore_eos": true])
            XCTAssertEqual(status, 200, "\(fixture): \(body)")
            let choice = try XCTUnwrap((body["choices"] as? [[String: Any]])?.first, fixture)
            XCTAssertEqual(choice["token_ids"] as? [Int], expected?["greedy_tokens"] as? [Int], "\(fixture): differs from transformers")
            let local = try LocalEngine(directory: Harness.fixture(fixture)).generator
                .generate(GenerationRequest(prompt: tokens, maxTokens: 6, logprobs: 1))
            let remote = try XCTUnwrap((choice["logprobs"] as? [String: Any])?["token_logprobs"] as? [Double])
            let diff = zip(remote, local.logprobs.map { Double($0.logprob) }).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThan(diff, 1e-4, "\(fixture): logprobs differ from the local engine")
        }
        let worker = try ChildProcess(try Harness.binary(), ["worker", "--coordinator", "tcp://127.0.0.1:\(Harness.freePort())",
                                                             "--model", Harness.fixture("llama").path], name: "worker")
        worker.waitForExit(timeout: 20)
        XCTAssertNotEqual(worker.process.terminationStatus, 0)
        XCTAssertTrue(worker.log.contains("dense llama model: it has no experts for a worker to hold"), worker.log)
    }

    func testBF16AndF16WireStayCloseToF32() throws {
        let tokens = try prompt("mixtral-fused")
        let engine = try LocalEngine(directory: Harness.fixture("mixtral-fused"))
        let local = try engine.generator.generate(GenerationRequest(prompt: tokens, maxTokens: 1, promptLogprobs: 1))
        for (dtype, reply) in [("bf16", "f32"), ("f16", "f32"), ("bf16", "bf16")] {
            let cluster = try LoopbackCluster(model: Harness.fixture("mixtral-fused"), workers: 2, wireDType: dtype,
                                              coordinatorArguments: ["--reply-dtype", reply])
            defer { cluster.stop() }
            try cluster.waitHealthy()
            let (status, body) = Harness.http("POST", cluster.httpURL + "/v1/completions", json: [
                "prompt": tokens, "max_tokens": 1, "temperature": 0, "prompt_logprobs": 1])
            XCTAssertEqual(status, 200, "\(body)")
            let remote = try XCTUnwrap(((body["choices"] as? [[String: Any]])?.first?["prompt_logprobs"]) as? [Any])
            var maxDiff = 0.0
            for (position, entry) in local.promptLogprobs.enumerated() {
                let map = try XCTUnwrap(remote[position + 1] as? [String: [String: Any]])
                let value = try XCTUnwrap(map[String(entry.token)]?["logprob"] as? Double)
                maxDiff = max(maxDiff, abs(value - Double(entry.logprob)))
            }
            print("\(dtype) activations, \(reply) partial sums: max prompt logprob diff vs f32 single process \(maxDiff)")
            XCTAssertGreaterThan(maxDiff, 0, "\(dtype) activations must actually be narrowed")
            XCTAssertLessThan(maxDiff, dtype == "bf16" ? (reply == "bf16" ? 0.15 : 0.1) : 0.02)
        }
    }

    func testConcurrentRequestsAllSucceedWithTheSameGreedyResult() throws {
        let cluster = try LoopbackCluster(model: Harness.fixture("qwen3_moe"), workers: 2)
        defer { cluster.stop() }
        try cluster.waitHealthy()
        final class Results: @unchecked Sendable {
            let lock = NSLock()
            var tokens: [[Int]] = []
        }
        let results = Results()
        let group = DispatchGroup()
        let url = cluster.httpURL
        for _ in 0..<6 {
            group.enter()
            Thread {
                let (status, body) = Harness.http("POST", url + "/v1/completions", json: [
                    "prompt": [5, 6, 7, 8], "max_tokens": 8, "temperature": 0, "return_token_ids": true, "ignore_eos": true])
                let ids = status == 200 ? ((body["choices"] as? [[String: Any]])?.first?["token_ids"] as? [Int] ?? []) : []
                results.lock.lock(); results.tokens.append(ids); results.lock.unlock()
                group.leave()
            }.start()
        }
        XCTAssertEqual(group.wait(timeout: .now() + 60), .success)
        XCTAssertEqual(results.tokens.count, 6)
        XCTAssertEqual(Set(results.tokens.map { $0.description }).count, 1, "\(results.tokens)")
        XCTAssertEqual(results.tokens.first?.count, 8)
    }

    func testWorkerWithADifferentModelIsRefusedAndExits() throws {
        let cluster = try LoopbackCluster(model: Harness.fixture("mixtral"), workers: 1)
        defer { cluster.stop() }
        try cluster.waitHealthy()
        let stranger = try ChildProcess(cluster.binary, ["worker", "--coordinator", cluster.zmqEndpoint,
                                                         "--model", Harness.fixture("mixtral-fused").path, "--name", "stranger"], name: "stranger")
        stranger.waitForExit(timeout: 20)
        XCTAssertEqual(stranger.process.terminationStatus, 1)
        XCTAssertTrue(stranger.log.contains("model mismatch: worker 'stranger' has mixtral-"), stranger.log)
        XCTAssertTrue(stranger.log.contains("give the worker a copy of the same model"), stranger.log)
        XCTAssertEqual(Harness.http("GET", cluster.httpURL + "/health").status, 200)
    }

    func testHealthIs503UntilEveryExpertIsServed() throws {
        let cluster = try LoopbackCluster(model: Harness.fixture("mixtral"), workers: 1, minWorkers: 2)
        defer { cluster.stop() }
        Thread.sleep(forTimeInterval: 1.5)
        let (status, body) = Harness.http("GET", cluster.httpURL + "/health")
        XCTAssertEqual(status, 503)
        XCTAssertTrue((body["reason"] as? String ?? "").contains("waiting for workers"), "\(body)")
        let (refused, error) = Harness.http("POST", cluster.httpURL + "/v1/completions", json: ["prompt": [1, 2], "max_tokens": 2])
        XCTAssertEqual(refused, 503, "\(error)")
        let before = try ChildProcess(cluster.binary, ["status", "--server", cluster.httpURL], name: "status")
        before.waitForExit(timeout: 20)
        XCTAssertEqual(before.process.terminationStatus, 1)
        XCTAssertTrue(before.log.contains("not serving: waiting for workers: 1/2 connected"), before.log)
        try cluster.addWorker(name: "late-worker")
        try cluster.waitHealthy()
        let after = try ChildProcess(cluster.binary, ["status", "--server", cluster.httpURL], name: "status")
        after.waitForExit(timeout: 20)
        XCTAssertEqual(after.process.terminationStatus, 0)
        XCTAssertTrue(after.log.contains("serving (every expert has a live worker)") && after.log.contains("late-worker"), after.log)
        let workers = Harness.http("GET", cluster.httpURL + "/health").body["workers"] as? [[String: Any]] ?? []
        XCTAssertEqual(workers.compactMap { $0["name"] as? String }, ["late-worker", "worker-1"])
        XCTAssertEqual(workers.compactMap { $0["experts"] as? Int }.reduce(0, +), 16, "2 layers x 8 experts, each on one worker")
    }

    /// With experts never moved and no wait for them (FailoverTests covers both), a lost worker's
    /// experts are simply unserved.
    static let failFast = ["--reassign-after", "never", "--unserved-timeout", "0"]

    func testWorkerKilledDuringGenerationFailsThatRequestWithin5Seconds() throws {
        let cluster = try LoopbackCluster(model: Harness.fixture("mixtral"), workers: 2, coordinatorArguments: Self.failFast)
        defer { cluster.stop() }
        try cluster.waitHealthy()
        final class Box: @unchecked Sendable { var status = 0; var body: [String: Any] = [:] }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        let url = cluster.httpURL
        Thread {
            // Requests back to back until one fails: the one in flight when the worker dies.
            repeat {
                (box.status, box.body) = Harness.http("POST", url + "/v1/completions", json: ["prompt": [1, 2, 3], "max_tokens": 200, "ignore_eos": true])
            } while box.status == 200
            done.signal()
        }.start()
        Thread.sleep(forTimeInterval: 0.5)
        let killed = Date()
        cluster.workers[1].kill(signal: SIGKILL)
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success, "the in-flight request must fail, not hang")
        XCTAssertLessThan(Date().timeIntervalSince(killed), 5)
        XCTAssertEqual(box.status, 503, "\(box.body)")
        let message = ((box.body["error"] as? [String: Any])?["message"] as? String) ?? ""
        XCTAssertTrue(message.contains("worker-2"), message)
        XCTAssertTrue(cluster.coordinator.process.isRunning)
    }

    func testKilledWorkerTurnsHealthTo503AndRequestsFailCleanly() throws {
        let cluster = try LoopbackCluster(model: Harness.fixture("mixtral"), workers: 2, coordinatorArguments: Self.failFast)
        defer { cluster.stop() }
        try cluster.waitHealthy()
        cluster.workers[0].kill(signal: SIGKILL)
        let deadline = Date().addingTimeInterval(15)
        var status = 200
        while Date() < deadline, status == 200 {
            _ = Harness.http("POST", cluster.httpURL + "/v1/completions", json: ["prompt": [1, 2, 3], "max_tokens": 2, "temperature": 0])
            status = Harness.http("GET", cluster.httpURL + "/health").status
            Thread.sleep(forTimeInterval: 0.2)
        }
        XCTAssertEqual(status, 503, "health should report the lost worker")
        let (code, body) = Harness.http("POST", cluster.httpURL + "/v1/completions", json: ["prompt": [1, 2, 3], "max_tokens": 2])
        XCTAssertEqual(code, 503, "\(body)")
        XCTAssertTrue(cluster.coordinator.process.isRunning, "the coordinator must stay up")
        // The worker rejoins under the same name and the cluster serves again.
        try cluster.addWorker(name: "worker-1")
        try cluster.waitHealthy()
        XCTAssertEqual(Harness.http("POST", cluster.httpURL + "/v1/completions", json: ["prompt": [1, 2, 3], "max_tokens": 2]).status, 200)
    }

    func testBadRequestsGetPreciseErrorsAndTheServerStaysUp() throws {
        let cluster = try LoopbackCluster(model: Harness.fixture("mixtral"), workers: 1)
        defer { cluster.stop() }
        try cluster.waitHealthy()
        let cases: [(Any, String)] = [
            (["max_tokens": 2], "'prompt' is required"),
            (["prompt": [1, 2], "max_tokens": 0], "'max_tokens' must be at least 1"),
            (["prompt": [1, 99999]], "outside the vocabulary"),
            (["prompt": [1], "top_p": 2], "top_p must be in (0, 1]"),
            (["prompt": [1], "logprobs": 50], "'logprobs' must be between 0 and 20"),
            (["prompt": [1], "n": 2], "'n' must be 1"),
            (["prompt": [1, 2], "max_tokens": 255], "prompt (2 tokens) + max_tokens (255) exceeds the model's context length of 256 tokens"),
        ]
        for (json, text) in cases {
            let (status, body) = Harness.http("POST", cluster.httpURL + "/v1/completions", json: json)
            XCTAssertEqual(status, 400, "\(json)")
            let message = (body["error"] as? [String: Any])?["message"] as? String ?? ""
            XCTAssertTrue(message.contains(text), "\(message)")
        }
        XCTAssertEqual(Harness.http("POST", cluster.httpURL + "/v1/completions", json: ["prompt": [1, 2], "max_tokens": 2]).status, 200)
    }

    func testGenerateClientPrintsTheSameJSONAsLocalMode() throws {
        let cluster = try LoopbackCluster(model: Harness.fixture("mixtral"), workers: 2)
        defer { cluster.stop() }
        try cluster.waitHealthy()
        func run(_ arguments: [String]) throws -> [String: Any] {
            let process = Process()
            let pipe = Pipe()
            process.executableURL = cluster.binary
            process.arguments = arguments
            process.standardOutput = pipe
            try process.run()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        }
        let common = ["--prompt", "The quick brown fox", "--max-tokens", "5", "--temperature", "0", "--ignore-eos", "--json"]
        let remote = try run(["generate", "--server", cluster.httpURL] + common)
        let local = try run(["generate", "--model", cluster.model.path] + common)
        XCTAssertEqual(remote["tokens"] as? [Int], local["tokens"] as? [Int])
        XCTAssertEqual(remote["prompt_tokens"] as? [Int], local["prompt_tokens"] as? [Int])
        XCTAssertEqual(remote["text"] as? String, local["text"] as? String)
    }
}
