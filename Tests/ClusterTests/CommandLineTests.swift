import Foundation
import MeshModels
import MeshTensors
import XCTest

/// The expertmesh command line as a user runs it: outputs, files and error messages.
final class CommandLineTests: XCTestCase {
    struct Run {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    func run(_ arguments: [String]) throws -> Run {
        let process = Process()
        let out = Pipe(), err = Pipe()
        process.executableURL = try Harness.binary()
        process.arguments = arguments
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
    }

    func testLogitsOutWritesTransformersShapedNpy() throws {
        let fixture = Harness.fixture("llama4_text")
        let expected = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: fixture.appendingPathComponent("expected.json"))) as? [String: Any])
        let prompt = try XCTUnwrap(expected["prompt_tokens"] as? [Int])
        let greedy = try XCTUnwrap(expected["greedy_tokens"] as? [Int])
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("logits-\(UUID().uuidString).npy")
        let result = try run(["generate", "--model", fixture.path, "--tokens", prompt.map(String.init).joined(separator: ","),
                              "--max-tokens", String(greedy.count), "--ignore-eos", "--json", "--logits-out", file.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(json["tokens"] as? [Int], greedy)
        XCTAssertEqual(json["prompt_tokens"] as? [Int], prompt)
        let ours = try Npy.decode(Data(contentsOf: file))
        let reference = try Npy.decode(Data(contentsOf: fixture.appendingPathComponent("logits.npy")))
        XCTAssertEqual(ours.shape, [prompt.count + greedy.count - 1, 320])
        XCTAssertEqual(ours.shape, reference.shape)
        XCTAssertLessThan(zip(ours.values, reference.values).map { abs($0 - $1) }.max() ?? 1, 1e-4)
    }

    func testSeededSamplingIsReproducibleAndTextRoundTrips() throws {
        let model = Harness.fixture("mixtral").path
        let arguments = ["generate", "--model", model, "--prompt", "Hello world", "--max-tokens", "8", "--temperature", "0.9",
                         "--top-k", "50", "--top-p", "0.95", "--seed", "42", "--ignore-eos", "--json"]
        let first = try run(arguments), second = try run(arguments)
        XCTAssertEqual(first.status, 0, first.stderr)
        let a = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(first.stdout.utf8)) as? [String: Any])
        let b = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(second.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(a["tokens"] as? [Int], b["tokens"] as? [Int])
        XCTAssertEqual((a["tokens"] as? [Int])?.count, 8)
        let ids = (try run(["tokenize", "--model", model, "--text", "Hello world"])).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual(a["prompt_tokens"] as? [Int], ids.split(separator: ",").compactMap { Int($0) })
        let text = try run(["detokenize", "--model", model, "--ids", ids, "--skip-special"])
        XCTAssertEqual(text.stdout, "Hello world\n")
    }

    func testBadInputGivesOneClearLineAndNonZeroExit() throws {
        let broken = FileManager.default.temporaryDirectory.appendingPathComponent("broken-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: Harness.fixture("qwen3_moe"), to: broken)
        var config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: broken.appendingPathComponent("config.json"))) as? [String: Any])
        config["model_type"] = "bert"
        try JSONSerialization.data(withJSONObject: config).write(to: broken.appendingPathComponent("config.json"))
        let cases: [([String], String)] = [
            (["generate", "--model", broken.path, "--tokens", "1,2"], "error: unknown model_type 'bert'; supported: " + ArchitectureRegistry.supportedModelTypes.joined(separator: ", ")),
            (["generate", "--model", "/nonexistent", "--tokens", "1,2"], "error: cannot read /nonexistent/config.json"),
            (["generate", "--model", Harness.fixture("qwen3_moe").path, "--prompt", "hi"], "has no tokenizer.json: pass the prompt as --tokens"),
            (["generate", "--model", Harness.fixture("qwen3_moe").path, "--tokens", "1,99999"], "prompt token 99999 is outside the vocabulary (0..<320)"),
        ]
        for (arguments, message) in cases {
            let result = try run(arguments)
            XCTAssertNotEqual(result.status, 0, "\(arguments)")
            XCTAssertTrue(result.stderr.contains(message), "\(arguments): \(result.stderr)")
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, "one line: \(result.stderr)")
        }
        let usage = try run(["generate", "--model", broken.path])
        XCTAssertNotEqual(usage.status, 0)
        XCTAssertTrue(usage.stderr.contains("give exactly one of --prompt TEXT or --tokens 5,17,42"), usage.stderr)
    }

    func testComputeAndBenchOptionsRefuseBadValuesClearly() throws {
        let model = Harness.fixture("qwen3_moe").path
        let generate = ["generate", "--model", model, "--tokens", "1,2"]
        let cases: [([String], String)] = [
            (generate + ["--precision", "fp8"], "The value 'fp8' is invalid for '--precision <bf16|f32>'"),
            (generate + ["--kernels", "neon"], "The value 'neon' is invalid for '--kernels"),
            (generate + ["--decode-kernels", "fast"], "The value 'fast' is invalid for '--decode-kernels <dot|tiles>'"),
            (generate + ["--weights-dtype", "int4"], "The value 'int4' is invalid for '--weights-dtype <file|mapped|int8>'"),
            (generate + ["--threads", "0"], "--threads must be at least 1"),
            (["bench", "--model", model, "--gguf", "peer.gguf"], "--gguf needs --llama-bench PATH"),
            (["bench", "--model", model, "--llama-bench", "/nonexistent/llama-bench", "--gguf", "peer.gguf"],
             "--llama-bench /nonexistent/llama-bench is not an executable file"),
            (["coordinator", "--model", model, "--reply-dtype", "int8"], "--reply-dtype must be f32, bf16 or f16, got 'int8'"),
            (["worker", "--model", model, "--coordinator", "tcp://127.0.0.1:5555", "--busy-poll", "200000"],
             "--busy-poll must be 0 to 100000 microseconds"),
            (["coordinator", "--model", model, "--overlap-exchanges", "sometimes"],
             "The value 'sometimes' is invalid for '--overlap-exchanges <off|on|auto>'"),
        ]
        for (arguments, message) in cases {
            let result = try run(arguments)
            XCTAssertNotEqual(result.status, 0, "\(arguments)")
            XCTAssertTrue(result.stderr.contains(message), "\(arguments): \(result.stderr)")
        }
    }

    /// `bench-exchange` with two real workers: a line per token count, whose wake-up counts (read from
    /// /proc for this process and each worker, and for the raw round trip's peers) are those of threads
    /// that really blocked: every side of an 8-token exchange waits at least once.
    func testBenchExchangeTimesAndCountsWakeupsOnEachSide() throws {
        let result = try run(["bench-exchange", "--model", Harness.fixture("mixtral").path, "--workers", "2",
                              "--tokens", "1,8", "--repeats", "5", "--decode-tokens", "4"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        let rows = lines.filter { $0.trimmingCharacters(in: .whitespaces).hasPrefix("8 ") }
        XCTAssertEqual(rows.count, 1, result.stdout)
        // After the seven timing columns.
        let wakeups = try XCTUnwrap(rows.first?.split(separator: " ").dropFirst(7).map(String.init), result.stdout)
        // "4.0, 3.8 + 3.8 (raw: 2.4, 3.0 + 2.6)" → the six counts.
        let counts = wakeups.compactMap { Double($0.trimmingCharacters(in: CharacterSet(charactersIn: ",()"))) }
        XCTAssertEqual(counts.count, 6, "\(wakeups)")
        for count in counts { XCTAssertGreaterThanOrEqual(count, 1, "a side that waited was never woken: \(rows)") }
        XCTAssertTrue(lines.contains { $0.hasPrefix("decode, 3 alternations:") && $0.contains("same tokens: yes") }, result.stdout)
    }

    func testPlanSizesAClusterFromConfigAlone() throws {
        let config = Harness.root.appendingPathComponent("Tests/Fixtures/configs/mixtral-8x7b.json").path
        let result = try run(["plan", "--config", config, "--workers", "4", "--worker-memory", "24GB", "--json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(report["total_parameters"] as? Int, 46_702_792_704)
        let expertBytes = try XCTUnwrap(report["expert_bytes"] as? Double)
        XCTAssertEqual(expertBytes, Double(32 * 8 * 3 * 4096 * 14336 * 2))
        XCTAssertEqual(report["workers_needed"] as? Int, 4, "90.2 GB of experts at 24 GiB per worker")
        XCTAssertEqual(try XCTUnwrap(report["bytes_per_worker"] as? Double), expertBytes / 4, accuracy: 1)
        // KV cache: 32 layers × K and V × 8 heads × 128 in f32, for 32768 positions of one sequence.
        XCTAssertEqual(report["kv_cache_bytes"] as? Double, Double(32 * 2 * 8 * 128 * 4 * 32768))
        XCTAssertEqual(try XCTUnwrap(report["coordinator_bytes"] as? Double),
                       try XCTUnwrap(report["coordinator_weight_bytes"] as? Double) + Double(32 * 2 * 8 * 128 * 4 * 32768))
        // A token goes to its 2 experts' workers: bf16 out, f32 back, plus ids and weights.
        XCTAssertEqual(report["wire_bytes_per_token_per_moe_layer"] as? Double, Double(2 * 4096 * (2 + 4) + 2 * 8))
        XCTAssertGreaterThan(report["break_even_network_bytes_per_second"] as? Double ?? 0, 0)

        // Replicas, int8, concurrency and the coordinator's memory; a model directory; text whose first
        // line keeps its form; a config file alone (DeepSeek-V3's).
        let replicated = try run(["plan", "--model", Harness.fixture("mixtral").path, "--replicas", "2", "--dtype", "int8",
                                  "--worker-memory", "1MiB", "--coordinator-memory", "1MiB", "--concurrency", "4"])
        XCTAssertEqual(replicated.status, 0, replicated.stderr)
        XCTAssertTrue(replicated.stdout.hasPrefix("mixtral: "), replicated.stdout)
        XCTAssertTrue(replicated.stdout.contains("with 2 replicas"), replicated.stdout)
        XCTAssertTrue(replicated.stdout.contains("does NOT fit in --coordinator-memory"), replicated.stdout)
        let deepseek = Harness.root.appendingPathComponent("Tests/Fixtures/configs/deepseek-v3.json").path
        let planned = try run(["plan", "--config", deepseek, "--worker-memory", "256GiB"])
        XCTAssertEqual(planned.status, 0, planned.stderr)
        XCTAssertTrue(planned.stdout.hasPrefix("deepseek_v3: 671.03B parameters, 37.55B active per token, 58 MoE layers"),
                      planned.stdout)
        XCTAssertTrue(planned.stdout.contains("workers needed at 274.9 GB each"), planned.stdout)
        // --offload-dense: DeepSeek-V3's 3 dense FFN layers and 58 shared experts (3.74B parameters)
        // leave the coordinator for the workers; the 3 dense layers gain an exchange.
        func planJSON(_ arguments: [String]) throws -> [String: Any] {
            let result = try run(["plan", "--config", deepseek, "--workers", "16", "--json"] + arguments)
            XCTAssertEqual(result.status, 0, result.stderr)
            return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        }
        let kept = try planJSON([]), offloaded = try planJSON(["--offload-dense"])
        let moved = Double(3 * 7168 * (3 * 18432 + 58 * 2048) * 2)
        XCTAssertEqual(offloaded["offloaded_dense_bytes"] as? Double, moved)
        XCTAssertEqual(try XCTUnwrap(offloaded["coordinator_weight_bytes"] as? Double),
                       try XCTUnwrap(kept["coordinator_weight_bytes"] as? Double) - moved, accuracy: 1)
        XCTAssertEqual(try XCTUnwrap(offloaded["expert_bytes"] as? Double),
                       try XCTUnwrap(kept["expert_bytes"] as? Double) + moved, accuracy: 1)
        XCTAssertEqual(kept["exchange_layers"] as? Int, 58)
        XCTAssertEqual(offloaded["exchange_layers"] as? Int, 61)
        let text = try run(["plan", "--config", deepseek, "--workers", "16", "--offload-dense"])
        XCTAssertTrue(text.stdout.contains("of dense FFN and shared-expert slices, --offload-dense"), text.stdout)
        // Host sizes given: the smallest layout that fits. Behemoth's coordinator (460 GB as planned)
        // fits 256 GB only with --offload-dense; at 100 GB nothing fits, and the plan says why.
        let behemoth = Harness.root.appendingPathComponent("Tests/Fixtures/configs/llama4-behemoth-assumed.json").path
        func proposal(_ coordinatorMemory: String) throws -> ([String: Any], String) {
            let arguments = ["plan", "--config", behemoth, "--coordinator-memory", coordinatorMemory, "--worker-memory",
                             "128GB", "--context", "8192", "--concurrency", "16"]
            let json = try run(arguments + ["--json"]), text = try run(arguments)
            let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
            return (try XCTUnwrap(object["proposed_layout"] as? [String: Any], json.stdout), text.stdout)
        }
        let fitting = try proposal("256GB")
        XCTAssertEqual(fitting.0["offload_dense"] as? Bool, true)
        XCTAssertEqual(fitting.0["fits"] as? Bool, true)
        let offloadedNeeds = try run(["plan", "--config", behemoth, "--worker-memory", "128GB", "--offload-dense", "--json"])
        let needed = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(offloadedNeeds.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(fitting.0["workers"] as? Int, needed["workers_needed"] as? Int)
        XCTAssertTrue(fitting.1.contains("smallest layout for these hosts: one coordinator, --offload-dense, "), fitting.1)
        XCTAssertEqual(fitting.0["stages"] as? Int, 1)
        // At 100 GB only pipeline stages fit it: the fewest whose largest host (stage 0, with the
        // embeddings and LM head) fits, checked against the plan of that layout and one stage fewer.
        let staged = try proposal("100GB")
        XCTAssertEqual(staged.0["fits"] as? Bool, true)
        let stages = try XCTUnwrap(staged.0["stages"] as? Int)
        XCTAssertGreaterThan(stages, 1)
        XCTAssertTrue(staged.1.contains("smallest layout for these hosts: \(stages) pipeline stages (--stages \(stages)), "
                                        + "--offload-dense"), staged.1)
        func stagePlan(_ count: Int) throws -> [String: Any] {
            let result = try run(["plan", "--config", behemoth, "--context", "8192", "--concurrency", "16", "--offload-dense",
                                  "--stages", String(count), "--json"])
            XCTAssertEqual(result.status, 0, result.stderr)
            return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        }
        let chosen = try stagePlan(stages), fewer = try stagePlan(stages - 1)
        XCTAssertLessThanOrEqual(try XCTUnwrap(chosen["coordinator_bytes"] as? Double), 100e9)
        XCTAssertGreaterThan(try XCTUnwrap(fewer["coordinator_bytes"] as? Double), 100e9)
        let hosts = try XCTUnwrap(chosen["stage_bytes"] as? [Double])
        XCTAssertEqual(hosts.count, stages)
        XCTAssertEqual(hosts.reduce(0, +), try XCTUnwrap(chosen["coordinator_weight_bytes"] as? Double)
                       + (try XCTUnwrap(chosen["kv_cache_bytes"] as? Double)), accuracy: 1)
        let layers = try XCTUnwrap(chosen["stage_layers"] as? [[Int]])
        XCTAssertEqual(layers.first?.first, 0)
        XCTAssertEqual(layers.last?.last, 101)
        XCTAssertEqual(chosen["stage_hidden_bytes_per_decode_step"] as? Double, Double(2 * (stages - 1) * 16 * 16384 * 4))
        let tooSmall = try proposal("10GB")
        XCTAssertEqual(tooSmall.0["fits"] as? Bool, false)
        XCTAssertTrue(tooSmall.1.contains("no layout fits these hosts"), tooSmall.1)
        let overSplit = try run(["plan", "--config", deepseek, "--stages", "62"])
        XCTAssertTrue(overSplit.stderr.contains("62 pipeline stages for 61 layers"), overSplit.stderr)
        let both = try run(["plan", "--config", deepseek, "--model", Harness.fixture("mixtral").path])
        XCTAssertTrue(both.stderr.contains("give --config FILE or --model DIR (one of them)"), both.stderr)
    }

    /// `perplexity` on the demo model's held-out fortunes: with exact f32 arithmetic each window's loss
    /// equals transformers' (Tests/Fixtures/demo/validation.json); int8 weights' cost is measured and bounded.
    func testPerplexityOfTheDemoModelEqualsTransformersAndMeasuresInt8() throws {
        let validation = Harness.root.appendingPathComponent("Tests/Fixtures/demo/validation.json")
        let reference = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: validation)) as? [String: Any])
        let expected = try XCTUnwrap(reference["window_losses"] as? [Double])
        let windows = 8
        func measure(_ arguments: [String]) throws -> [String: Any] {
            let result = try run(["perplexity", "--model", Harness.root.appendingPathComponent("models/demo").path,
                                  "--token-file", validation.path, "--windows", String(windows), "--json"] + arguments)
            XCTAssertEqual(result.status, 0, result.stderr)
            return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], result.stdout)
        }
        let exact = try measure(["--precision", "f32"])
        let losses = try XCTUnwrap(exact["window_losses"] as? [Double])
        XCTAssertEqual(losses.count, windows)
        for (ours, theirs) in zip(losses, expected) { XCTAssertEqual(ours, theirs, accuracy: 1e-4) }
        let base = try XCTUnwrap(exact["perplexity"] as? Double)
        var figures = [String(format: "f32 %.3f", base)]
        let variants: [(String, [String], Double)] = [("bf16", ["--precision", "bf16"], 0.02),
                                                      ("int8 experts", ["--weights-dtype", "int8"], 0.05),
                                                      ("int8 all", ["--weights-dtype", "int8", "--dense-dtype", "int8"], 0.05)]
        for (name, arguments, bound) in variants {
            if arguments.contains("int8"), !LinearWeight.q8Supported { continue }
            let perplexity = try XCTUnwrap(try measure(arguments)["perplexity"] as? Double)
            XCTAssertLessThan(abs(log(perplexity / base)), bound, "\(name): perplexity \(perplexity) vs \(base)")
            figures.append(String(format: "%@ %.3f (%+.2f%%)", name, perplexity, (perplexity / base - 1) * 100))
        }
        print("demo model perplexity over \(windows) windows of 256 held-out tokens: " + figures.joined(separator: ", "))
        // Bad input: one clear line each.
        let missing = try run(["perplexity", "--model", Harness.root.appendingPathComponent("models/demo").path,
                               "--token-file", "/nonexistent/tokens.json"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("error: cannot read --token-file /nonexistent/tokens.json"), missing.stderr)
    }

    func testEveryCommandHasHelpWithExamples() throws {
        for command in ["generate", "chat-template", "serve", "coordinator", "stage", "worker", "status", "keygen", "tokenize",
                        "detokenize", "bench", "bench-serve", "bench-exchange", "plan", "perplexity"] {
            let help = try run([command, "--help"])
            XCTAssertEqual(help.status, 0, command)
            XCTAssertTrue(help.stdout.contains("Examples:"), "\(command) --help has no examples")
            // Examples fit 80 columns: a longer one is wrapped into a line that starts at the margin.
            let examples = help.stdout.components(separatedBy: "Examples:").last!.components(separatedBy: "USAGE:")[0]
            for line in examples.split(separator: "\n") where !line.hasPrefix("  ") {
                XCTFail("\(command) --help: an example runs past 80 columns and wraps: '\(line)'")
            }
        }
    }
}
