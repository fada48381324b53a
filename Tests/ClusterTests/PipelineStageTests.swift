import Foundation
import MeshEngine
import MeshModels
import MeshTensors
import MeshTransport
import MeshWire
import XCTest

/// Stage 0 (`coordinator --stages N`), N-1 `expertmesh stage` processes and workers that serve
/// every stage (`worker --coordinator E0 --coordinator E1 …`), all real processes on loopback.
final class PipelineCluster {
    let binary: URL
    let model: URL
    let stageCount: Int
    let coordinator: ChildProcess
    var stages: [Int: ChildProcess] = [:]
    var workers: [ChildProcess] = []
    let httpURL: String
    let stageEndpoint: String
    /// Where each stage's workers connect (index 0: the coordinator's).
    let workerEndpoints: [String]
    let workerCount: Int
    let stageArguments: [String]

    /// `startStages` false: the later stages are left to the caller (`stages[K]`).
    init(model: URL, stages: Int, workers: Int, coordinatorArguments: [String] = [], stageArguments: [String] = [],
         workerArguments: [String] = [], startStages: Bool = true) throws {
        binary = try Harness.binary()
        self.model = model
        stageCount = stages
        workerCount = workers
        self.stageArguments = stageArguments
        let http = Harness.freePort()
        httpURL = "http://127.0.0.1:\(http)"
        stageEndpoint = "tcp://127.0.0.1:\(Harness.freePort())"
        workerEndpoints = (0..<stages).map { _ in "tcp://127.0.0.1:\(Harness.freePort())" }
        let common = ["--model", model.path, "--min-workers", String(workers), "--wire-dtype", "f32", "--precision", "f32",
                      "--start-timeout", "120"]
        coordinator = try ChildProcess(binary, ["coordinator", "--listen", workerEndpoints[0], "--http", "127.0.0.1:\(http)",
                                                "--stages", String(stages), "--stage-listen", stageEndpoint]
                                               + common + coordinatorArguments, name: "stage0")
        if startStages { for stage in 1..<stages { try startStage(stage) } }
        for index in 1...workers {
            self.workers.append(try ChildProcess(binary, ["worker", "--model", model.path, "--name", "worker-\(index)", "--precision",
                                                     "f32"] + workerEndpoints.flatMap { ["--coordinator", $0] }
                                            + workerArguments, name: "worker-\(index)"))
        }
    }

    func startStage(_ stage: Int) throws {
        stages[stage] = try ChildProcess(binary, [
            "stage", "--stage", "\(stage)/\(stageCount)", "--join", stageEndpoint, "--listen", workerEndpoints[stage],
            "--name", "stage-\(stage)", "--model", model.path, "--min-workers", String(workerCount), "--wire-dtype", "f32",
            "--precision", "f32", "--start-timeout", "120",
        ] + stageArguments, name: "stage\(stage)")
    }

    var logs: String {
        ([coordinator] + stages.keys.sorted().map { stages[$0]! }).map { String($0.log.suffix(3000)) }.joined(separator: "\n---\n")
    }

    func waitHealthy(timeout: Double = 120) throws {
        try Harness.waitHealthy(httpURL, timeout: timeout, log: "pipeline logs:\n\(logs)")
    }

    /// The stages as /v1/cluster shows them.
    var stageRows: [[String: Any]] {
        let view = Harness.http("GET", httpURL + "/v1/cluster").body
        return (view["pipeline"] as? [String: Any])?["stages"] as? [[String: Any]] ?? []
    }

    func stop() {
        workers.forEach { $0.kill(signal: SIGTERM) }
        stages.values.forEach { $0.kill(signal: SIGTERM) }
        coordinator.kill(signal: SIGTERM)
    }
}

final class PipelineStageTests: XCTestCase {
    /// Greedy completions of `prompts`, all sent at once; token ids per prompt (nil for a failure).
    static func completeConcurrently(_ url: String, _ prompts: [[Int]], maxTokens: Int) -> [[Int]?] {
        final class Box: @unchecked Sendable { var value: [[Int]?] = [] }
        let box = Box()
        box.value = Array(repeating: nil, count: prompts.count)
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: prompts.count) { index in
            let (status, body) = Harness.http("POST", url + "/v1/completions", json: [
                "prompt": prompts[index], "max_tokens": maxTokens, "temperature": 0, "ignore_eos": true,
                "return_token_ids": true,
            ], timeout: 120)
            let tokens = (body["choices"] as? [[String: Any]])?.first?["token_ids"] as? [Int]
            lock.withLock { box.value[index] = status == 200 ? tokens : nil }
        }
        return box.value
    }

    /// Four stages of Behemoth's miniature, three workers serving all of them: tokens and logprobs
    /// equal one process, alone and for requests of mixed lengths sent together; every stage ran
    /// micro-batches.
    func testFourStagesGiveTheTokensOfOneProcess() throws {
        let name = "llama4_text-behemoth"
        let cluster = try PipelineCluster(model: Harness.fixture(name), stages: 4, workers: 3)
        defer { cluster.stop() }
        try cluster.waitHealthy()
        _ = try Harness.assertClusterEqualsSingleProcess(name, url: cluster.httpURL, log: cluster.logs)

        let local = try LocalEngine(directory: Harness.fixture(name))
        var random = SeededGenerator(seed: 7)
        let prompts = (0..<12).map { index in (0..<(1 + index * 7)).map { _ in Int(random.next() % 300) } }
        let results = Self.completeConcurrently(cluster.httpURL, prompts, maxTokens: 24)
        for (index, prompt) in prompts.enumerated() {
            let alone = try local.generator.generate(GenerationRequest(prompt: prompt, maxTokens: 24))
            XCTAssertEqual(results[index], alone.tokens, "request \(index) (\(prompt.count) prompt tokens)\n\(cluster.logs)")
        }
        let rows = cluster.stageRows
        XCTAssertEqual(rows.map { $0["layers"] as? [Int] ?? [] }, [[0, 2], [2, 4], [4, 6], [6, 8]])
        for row in rows.dropFirst() {
            XCTAssertEqual(row["state"] as? String, "serving", "\(row)")
            XCTAssertGreaterThan(row["micro_batches"] as? Int ?? 0, 0, "\(row)")
        }
        // `expertmesh status` shows the stages.
        let status = try runTool(cluster.binary.path, ["status", "--server", cluster.httpURL])
        XCTAssertEqual(status.status, 0, status.output)
        XCTAssertTrue(status.output.contains("pipeline: 4 stages, 4 steps in flight, 1 micro-batch(es) per step"), status.output)
        XCTAssertTrue(status.output.contains("stage 3: layers 6–7 · stage-3 (127.0.0.1) · serving ·"), status.output)
    }

    /// Two stages on architectures whose cache or layers differ: gpt-oss (sliding and full layers:
    /// several KV cache groups), DeepSeek-V3 (latent attention, a dense first layer), Qwen 3 MoE.
    /// Qwen 3 MoE runs a second time with `--overlap-exchanges` on both stages.
    func testTwoStagesGiveTheTokensOfOneProcessOnOtherArchitectures() throws {
        for (name, overlap) in [("gpt_oss", false), ("deepseek_v3", false), ("qwen3_moe", false), ("qwen3_moe", true)] {
            let flags = overlap ? ["--overlap-exchanges", "on"] : []
            let cluster = try PipelineCluster(model: Harness.fixture(name), stages: 2, workers: 1, coordinatorArguments: flags,
                                              stageArguments: flags)
            defer { cluster.stop() }
            try cluster.waitHealthy()
            _ = try Harness.assertClusterEqualsSingleProcess(name, url: cluster.httpURL, log: cluster.logs)
            guard overlap else { continue }
            let metrics = try String(decoding: XCTUnwrap(RawHTTP.get(cluster.httpURL, "/metrics")).body, as: UTF8.self)
            XCTAssertTrue(metrics.split(separator: "\n").contains { line in
                line.hasPrefix("expertmesh_overlapped_exchanges_total ") && (Double(line.split(separator: " ").last ?? "") ?? 0) > 0
            }, "stage 0 never overlapped two exchanges\n\(metrics)")
            XCTAssertTrue(cluster.stages[1]?.log.contains("two micro-batches that overlap") ?? false, cluster.logs)
        }
    }

    /// A stage killed while a request is inside it: that request fails with a 503 naming the
    /// stage, stage 0 stays up and refuses requests (503, /health says why) until the stage is
    /// back; then it serves again, and a prompt cached before the loss is computed afresh.
    func testAStageThatDiesFailsItsRequestsAndTheRestStaysUp() throws {
        let name = "llama4_text-behemoth"
        let cluster = try PipelineCluster(model: Harness.fixture(name), stages: 3, workers: 2)
        defer { cluster.stop() }
        try cluster.waitHealthy()
        let prompt = Array(10..<50)
        let local = try LocalEngine(directory: Harness.fixture(name))
        let alone = try local.generator.generate(GenerationRequest(prompt: prompt, maxTokens: 16))
        XCTAssertEqual(Self.completeConcurrently(cluster.httpURL, [prompt], maxTokens: 16)[0], alone.tokens)

        // Frozen, then killed: the request is in its hands when it dies.
        let stage = try XCTUnwrap(cluster.stages[2])
        kill(stage.process.processIdentifier, SIGSTOP)
        final class Box: @unchecked Sendable { var value: (Int, [String: Any]) = (0, [:]) }
        let failed = Box()
        let done = DispatchSemaphore(value: 0)
        let url = cluster.httpURL
        DispatchQueue.global().async {
            failed.value = Harness.http("POST", url + "/v1/completions", json: [
                "prompt": [1, 2, 3], "max_tokens": 8, "temperature": 0], timeout: 60)
            done.signal()
        }
        Thread.sleep(forTimeInterval: 1.5)
        XCTAssertEqual(done.wait(timeout: .now()), .timedOut, "the request finished while its stage was frozen")
        stage.kill()
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
        XCTAssertEqual(failed.value.0, 503, "\(failed.value.1)")
        XCTAssertTrue("\(failed.value.1)".contains("pipeline stage 2"), "\(failed.value.1)")

        let health = Harness.http("GET", cluster.httpURL + "/health")
        XCTAssertEqual(health.status, 503)
        XCTAssertTrue("\(health.body)".contains("pipeline stage 2 of 3"), "\(health.body)")
        let refused = Harness.http("POST", cluster.httpURL + "/v1/completions", json: ["prompt": [1], "max_tokens": 2])
        XCTAssertEqual(refused.status, 503)
        XCTAssertTrue(cluster.coordinator.process.isRunning)
        XCTAssertTrue(cluster.stages[1]?.process.isRunning == true)
        XCTAssertTrue(cluster.coordinator.log.contains("pipeline stage 2 ('stage-2') lost"), cluster.coordinator.log)

        try cluster.startStage(2)
        try cluster.waitHealthy()
        XCTAssertEqual(Self.completeConcurrently(cluster.httpURL, [prompt], maxTokens: 16)[0], alone.tokens,
                       "after the stage came back\n\(cluster.logs)")
        let hits = (Harness.http("GET", cluster.httpURL + "/v1/cluster").body["engine"] as? [String: Any])?["prefix_cache_hit_tokens"]
        XCTAssertEqual(hits as? Int, 0, "a prefix cached before the stage was lost was reused")
    }

    /// A stage frozen (SIGSTOP) while a request is in it: after `--stage-compute-timeout` the request
    /// fails with a 503 naming the stage; thawed, the stage says hello again and the pipeline serves
    /// as one process would.
    func testAFrozenStageIsLostAfterItsComputeTimeoutAndRejoinsWhenThawed() throws {
        let name = "llama4_text-behemoth"
        let cluster = try PipelineCluster(model: Harness.fixture(name), stages: 2, workers: 1,
                                          coordinatorArguments: ["--stage-compute-timeout", "2"])
        defer { cluster.stop() }
        try cluster.waitHealthy()
        let stage = try XCTUnwrap(cluster.stages[1])
        kill(stage.process.processIdentifier, SIGSTOP)
        let started = Date()
        let (status, body) = Harness.http("POST", cluster.httpURL + "/v1/completions", json: [
            "prompt": [1, 2, 3], "max_tokens": 8, "temperature": 0], timeout: 60)
        let waited = Date().timeIntervalSince(started)
        kill(stage.process.processIdentifier, SIGCONT)
        XCTAssertEqual(status, 503, "\(body)")
        XCTAssertTrue("\(body)".contains("pipeline stage 1") && "\(body)".contains("no answer"), "\(body)")
        XCTAssertGreaterThan(waited, 1.5)
        XCTAssertLessThan(waited, 20)
        try cluster.waitHealthy(timeout: 60)
        _ = try Harness.assertClusterEqualsSingleProcess(name, url: cluster.httpURL, log: cluster.logs)
    }

    /// The stage port refuses strangers precisely and stays up: a malformed header, a request
    /// before hello, another model, a stage of another pipeline length.
    func testStagePortRefusesStrangersAndStageZeroStaysHealthy() throws {
        let cluster = try PipelineCluster(model: Harness.fixture("qwen3_moe"), stages: 2, workers: 1)
        defer { cluster.stop() }
        try cluster.waitHealthy()
        let context = ZMQContext()
        let dealer = try ZMQSocket(context: context, kind: .dealer)
        defer { dealer.close() }
        try dealer.connect(cluster.stageEndpoint)
        func reply(to frames: [Data]) throws -> WireFailure? {
            try dealer.send(frames)
            while let parts = try dealer.receive(timeoutMilliseconds: 10_000) {
                let message = try WireCodec.decode(parts)
                if case .error(let failure) = message.body { return failure }
            }
            return nil
        }
        XCTAssertEqual(try reply(to: [Data([0xff, 0x01, 0x02])])?.code, .malformed)
        let forward = WireMessage(.stageForward(StageForwardHeader(requestId: 9, segments: [])))
        XCTAssertEqual(try reply(to: WireCodec.encode(forward))?.code, .notReady)
        let stranger = StageHello(modelFingerprint: "other-model", stage: 1, stageCount: 2, name: "stranger")
        let mismatch = try XCTUnwrap(try reply(to: WireCodec.encode(WireMessage(.stageHello(stranger)))))
        XCTAssertEqual(mismatch.code, .modelMismatch)
        XCTAssertTrue(mismatch.message.contains("same model"), mismatch.message)

        // A stage started for a pipeline of another length stops with the reason.
        let wrong = try ChildProcess(cluster.binary, [
            "stage", "--stage", "1/3", "--join", cluster.stageEndpoint, "--listen", "tcp://127.0.0.1:\(Harness.freePort())",
            "--model", cluster.model.path, "--spawn-workers", "1"], name: "wrong-stage")
        wrong.waitForExit(timeout: 60)
        XCTAssertNotEqual(wrong.process.terminationStatus, 0)
        XCTAssertTrue(wrong.log.contains("this pipeline has 2 stages"), wrong.log)
        XCTAssertEqual(Harness.http("GET", cluster.httpURL + "/health").status, 200)
        XCTAssertEqual(cluster.stageRows.last?["name"] as? String, "stage-1", "the stranger took the stage's place")
    }
}

/// A stage process driven from a ROUTER socket in the test, as stage 0 would: its hidden states
/// equal this process's layers, and a malformed micro-batch gets a precise error.
final class StageProtocolTests: XCTestCase {
    func testStageRunsItsLayersAndRefusesMalformedMicroBatches() throws {
        let fixture = Harness.fixture("llama4_text-behemoth")
        let context = ZMQContext()
        let peer = try RouterPeer(context: context)
        defer { peer.socket.close() }
        let stage = try ChildProcess(try Harness.binary(), [
            "stage", "--stage", "2/4", "--join", peer.endpoint, "--listen", "tcp://127.0.0.1:\(Harness.freePort())",
            "--model", fixture.path, "--spawn-workers", "1", "--wire-dtype", "f32", "--precision", "f32"], name: "stage")
        defer { stage.kill() }
        func receive() throws -> WireMessage { try peer.receive(timeout: 60_000, log: stage.log) }
        func send(_ message: WireMessage) throws { try peer.send(message) }

        guard case .stageHello(let hello) = try receive().body else { return XCTFail("expected a stage hello") }
        XCTAssertEqual([hello.stage, hello.stageCount], [2, 4])
        try send(WireMessage(.stageAssignment(StageAssignment(layers: 4..<6, kvCacheBlocks: 8, heartbeatIntervalMilliseconds: 1000))))
        guard case .stageReady = try receive().body else { return XCTFail("expected ready") }

        let local = try LocalEngine(directory: fixture)
        let spec = local.spec
        var batch = ForwardBatch()
        batch.append(ArraySlice(repeating: 0, count: 5), start: 0, blockTables: spec.cacheGroups.map { _ in [3] },
                     promptLength: 5)
        let x = Matrix(rows: 5, columns: spec.hiddenSize, values: (0..<(5 * spec.hiddenSize)).map { sin(Float($0)) })
        let header = StageForwardHeader(requestId: 1, batch: batch)
        func forward(_ header: StageForwardHeader, _ tensor: WireTensor) throws -> WireMessage {
            try send(WireMessage(.stageForward(header), tensors: [tensor]))
            return try receive()
        }
        // Malformed: a block the cache does not have, a shape the segments do not say, a NaN.
        var badBlock = header
        badBlock.segments[0].blockTables = spec.cacheGroups.map { _ in [8] }
        var nan = WireTensor(name: "hidden", matrix: x, dtype: .f32)
        nan.bytes.replaceSubrange(0..<4, with: withUnsafeBytes(of: Float.nan) { Data($0) })
        let cases: [(StageForwardHeader, WireTensor, String)] = [
            (badBlock, WireTensor(name: "hidden", matrix: x, dtype: .f32), "each below 8"),
            (header, WireTensor(name: "hidden", matrix: Matrix(rows: 4, columns: spec.hiddenSize), dtype: .f32), "shape"),
            (header, nan, "NaN"),
        ]
        for (id, (bad, tensor, words)) in cases.enumerated() {
            var numbered = bad
            numbered.requestId = UInt64(10 + id)
            guard case .error(let failure) = try forward(numbered, tensor).body else { return XCTFail("case \(id) was not refused") }
            XCTAssertEqual(failure.requestId, UInt64(10 + id))
            XCTAssertEqual(failure.code, .malformed)
            XCTAssertTrue(failure.message.contains(words), failure.message)
        }

        let answer = try forward(header, WireTensor(name: "hidden", matrix: x, dtype: .f32))
        guard case .stageReply(let reply) = answer.body else { return XCTFail("no reply to a valid micro-batch: \(answer.body)") }
        XCTAssertEqual(reply.requestId, 1)
        // The same layers in this process, on the same input.
        let base = local.generator.transformer
        let expected = Matrix(rows: 5, columns: spec.hiddenSize, values: (0..<(5 * spec.hiddenSize)).map { sin(Float($0)) })
        try Transformer(spec: spec, weights: base.weights, backend: base.backend, heldLayers: 4..<6)
            .runLayers(expected, batch: batch, cache: try PagedKVCache(spec: spec, blockCount: 8, layers: 4..<6))
        let remote = answer.tensors[0].matrix()
        XCTAssertEqual(remote.rows, 5)
        let difference = (0..<(5 * spec.hiddenSize)).map { abs(remote.data[$0] - expected.data[$0]) }.max() ?? .infinity
        XCTAssertLessThan(difference, 1e-5, "the stage's layers differ from this process's")
        XCTAssertGreaterThan((0..<(5 * spec.hiddenSize)).map { abs(remote.data[$0] - x.data[$0]) }.max() ?? 0, 0.01,
                             "the stage returned its input")
    }
}
