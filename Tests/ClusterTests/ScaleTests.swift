import Foundation
import XCTest

/// Behemoth's topology at cluster scale, simulated on this machine: the miniature Behemoth fixture
/// (8 MoE layers of 16 experts, top-1 plus a shared expert, chunked attention, every 4th layer
/// NoPE; made by transformers) served by one coordinator and 32 or 64 worker processes, the shared
/// experts offloaded to the workers as well (`--offload-dense`).
final class ScaleTests: XCTestCase {
    static let fixture = "llama4_text-behemoth"

    /// 32 workers: tokens equal one process; at most one message per worker per layer and step
    /// (never one per expert); start-up time, memory per process and time per step reported.
    func testThirtyTwoWorkersServeBehemothsTopologyAsOneProcessWould() throws {
        let started = Date()
        let cluster = try LoopbackCluster(model: Harness.fixture(Self.fixture), workers: 32, precision: "f32",
                                          coordinatorArguments: ["--offload-dense"])
        defer { cluster.stop() }
        try cluster.waitHealthy(timeout: 120)
        let startup = Date().timeIntervalSince(started)
        let difference = try Harness.assertClusterEqualsSingleProcess(Self.fixture, cluster)

        let tokens = 32
        let (before, after, seconds) = Self.decode(cluster.httpURL, tokens: tokens)
        let steps = after.steps - before.steps
        XCTAssertEqual(steps, tokens, "one step reads the prompt, one more per token but the last")
        let messages = after.requests.map { name, count in (name, count - (before.requests[name] ?? 0)) }
        for (worker, count) in messages {
            XCTAssertLessThanOrEqual(count, steps * 8, "\(worker): more than one message per layer and step")
        }
        let total = messages.reduce(0) { $0 + $1.1 }
        // A decoding token goes to its expert's worker and its layer's shared slice's worker.
        XCTAssertGreaterThanOrEqual(total, steps * 8)
        XCTAssertLessThanOrEqual(total, 16 * 8 + (steps - 1) * 8 * 2, "the prompt step, then ≤ 2 messages a layer")
        let memory = ([cluster.coordinator] + cluster.workers).map { Self.residentMegabytes($0.process.processIdentifier) }
        let workerMemory = memory.dropFirst()
        print(String(format: "32 workers: healthy %.1f s after launch; %d tokens in %.2f s (%.1f ms a step over %d steps); "
                     + "%.1f messages per step (8 layers, top-1 + 1 shared slice); resident MB: coordinator %.0f, "
                     + "workers %.0f–%.0f; max logprob diff %.1e",
                     startup, tokens, seconds, seconds / Double(steps) * 1e3, steps, Double(total) / Double(steps),
                     memory[0], workerMemory.min() ?? 0, workerMemory.max() ?? 0, difference))
    }

    /// Four pipeline stages (stage 0 and three `expertmesh stage` processes, two layers each) and 32
    /// workers serving all of them, shared experts offloaded: tokens equal one process; stage 0's
    /// per-step messages stay one per worker with tokens per layer; every stage runs each step.
    func testFourStagesAndThirtyTwoWorkersServeBehemothsTopology() throws {
        let started = Date()
        let cluster = try PipelineCluster(model: Harness.fixture(Self.fixture), stages: 4, workers: 32,
                                          coordinatorArguments: ["--offload-dense"], stageArguments: ["--offload-dense"])
        defer { cluster.stop() }
        try cluster.waitHealthy(timeout: 180)
        let startup = Date().timeIntervalSince(started)
        let difference = try Harness.assertClusterEqualsSingleProcess(Self.fixture, url: cluster.httpURL, log: cluster.logs)

        let stagesBefore = cluster.stageRows.map { $0["micro_batches"] as? Int ?? 0 }
        let tokens = 32
        let (before, after, seconds) = Self.decode(cluster.httpURL, tokens: tokens)
        let steps = after.steps - before.steps
        XCTAssertEqual(steps, tokens)
        // Stage 0 runs layers 0 and 1: a decoding token goes to its expert's worker and its layer's
        // shared slice's worker (the prompt's 4 tokens to at most 4 experts' and the slice's).
        let total = after.requests.reduce(0) { $0 + $1.value - (before.requests[$1.key] ?? 0) }
        XCTAssertGreaterThanOrEqual(total, steps * 2)
        XCTAssertLessThanOrEqual(total, 4 * 2 * 2 + (steps - 1) * 2 * 2, "more than one message per worker and layer")
        let stageSteps = zip(cluster.stageRows.map { $0["micro_batches"] as? Int ?? 0 }, stagesBefore).map { $0 - $1 }
        XCTAssertEqual(Array(stageSteps.dropFirst()), [steps, steps, steps], "each later stage runs every step once")
        let processes = [cluster.coordinator] + (1..<4).map { cluster.stages[$0]! } + cluster.workers
        let memory = processes.map { Self.residentMegabytes($0.process.processIdentifier) }
        let workerMemory = memory.dropFirst(4)
        print(String(format: "4 stages, 32 workers: healthy %.1f s after launch; %d tokens in %.2f s (%.1f ms a step); "
                     + "stage 0: %.1f messages per step (2 layers); resident MB: stages %@, workers %.0f–%.0f; "
                     + "max logprob diff %.1e",
                     startup, tokens, seconds, seconds / Double(steps) * 1e3, Double(total) / Double(steps),
                     memory.prefix(4).map { String(format: "%.0f", $0) }.joined(separator: "/"),
                     workerMemory.min() ?? 0, workerMemory.max() ?? 0, difference))
    }

    /// A greedy completion of `tokens` tokens after a 4-token prompt: the counts before and after,
    /// and the seconds it took.
    static func decode(_ url: String, tokens: Int) -> (before: (steps: Int, requests: [String: Int]),
                                                       after: (steps: Int, requests: [String: Int]), seconds: Double) {
        let before = counts(url)
        let start = Date()
        let (status, body) = Harness.http("POST", url + "/v1/completions", json: [
            "prompt": [1, 2, 3, 4], "max_tokens": tokens, "temperature": 0, "ignore_eos": true])
        XCTAssertEqual(status, 200, "\(body)")
        let seconds = Date().timeIntervalSince(start)
        return (before, counts(url), seconds)
    }

    /// The engine's step count and each worker's requests, from /v1/cluster (rebuilt every 0.25 s).
    static func counts(_ url: String) -> (steps: Int, requests: [String: Int]) {
        Thread.sleep(forTimeInterval: 0.6)
        let view = Harness.http("GET", url + "/v1/cluster").body
        let steps = (view["engine"] as? [String: Any])?["steps"] as? Int ?? 0
        let rows = view["workers"] as? [[String: Any]] ?? []
        return (steps, Dictionary(uniqueKeysWithValues: rows.compactMap { row in
            (row["name"] as? String).map { ($0, row["requests"] as? Int ?? 0) }
        }))
    }

    static func residentMegabytes(_ pid: Int32) -> Double {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return (Double(line.split(separator: " ").dropFirst().first ?? "") ?? 0) / 1024
    }
}
