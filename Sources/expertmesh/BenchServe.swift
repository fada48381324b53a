import ArgumentParser
import Foundation
import MeshModels
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

struct BenchServe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-serve",
        abstract: "Load a running server (serve or coordinator) with concurrent streaming requests and measure it.",
        discussion: """
        For each concurrency level, that many clients send streaming completions (random prompt \
        token ids, greedy, ignore_eos so every request yields --max-tokens tokens) until \
        --requests have been answered. Prints requests/s, output tokens/s, time to first token \
        and inter-token latency (p50, p99) and the prefix-cache hit rate (from /health). \
        --api llama-server loads llama.cpp's llama-server the same way, through its own /completion \
        endpoint (token-id prompts, n_predict, ignore_eos, return_tokens), for a side-by-side figure.

        Examples:
          expertmesh serve --model bench-models/mixtral-640m-bf16 \\
              --http 127.0.0.1:8080 &
          expertmesh bench-serve --server http://127.0.0.1:8080 \\
              --concurrency 1,4,16,64 --prompt-tokens 128 --max-tokens 128
          expertmesh bench-serve --server http://127.0.0.1:8080 --concurrency 16 \\
              --shared-prefix 96 --json
          llama-server -m model-bf16.gguf -np 16 -c 8192 --port 8081 &
          expertmesh bench-serve --server http://127.0.0.1:8081 --api llama-server \\
              --concurrency 1,4,16
        """)

    @Option(help: "Server URL.")
    var server: String

    @Option(help: "Comma-separated numbers of concurrent clients.")
    var concurrency = "1,4,16,64"

    @Option(help: "Prompt length in tokens.")
    var promptTokens = 128

    @Option(help: "Tokens generated per request.")
    var maxTokens = 128

    @Option(help: "Leading prompt tokens shared by every request (exercises the prefix cache).")
    var sharedPrefix = 0

    @Option(help: "Requests per concurrency level. Default: twice the concurrency, at least 8.")
    var requests: Int?

    @Option(help: "Prompt token ids are drawn from 1 ..< this (keep it within the model's vocabulary).")
    var vocab = 300

    @Option(help: "Seed of the random prompts. Default: a new one each run, so a server's prefix cache holds none of them.")
    var seed: UInt64?

    @Flag(help: "Print one JSON object per level.")
    var json = false

    @Option(help: ArgumentHelp("The server's API: expertmesh (OpenAI's /v1/completions) or llama-server (llama.cpp's /completion).",
                               valueName: "expertmesh|llama-server"))
    var api = ServerAPI.expertmesh

    func validate() throws {
        _ = try levels()
        guard promptTokens >= 1, maxTokens >= 1 else { throw ValidationError("--prompt-tokens and --max-tokens must be at least 1") }
        guard (0...promptTokens).contains(sharedPrefix) else { throw ValidationError("--shared-prefix must be between 0 and --prompt-tokens") }
        if let requests, requests < 1 { throw ValidationError("--requests must be at least 1") }
        guard vocab >= 2 else { throw ValidationError("--vocab must be at least 2") }
    }

    enum ServerAPI: String, ExpressibleByArgument, Sendable {
        case expertmesh
        case llamaServer = "llama-server"

        var path: String { self == .expertmesh ? "/v1/completions" : "/completion" }

        func body(prompt: [Int], maxTokens: Int) -> [String: Any] {
            switch self {
            case .expertmesh:
                return ["prompt": prompt, "max_tokens": maxTokens, "temperature": 0, "stream": true, "ignore_eos": true,
                        "return_token_ids": true]
            case .llamaServer:
                return ["prompt": prompt, "n_predict": maxTokens, "temperature": 0, "stream": true, "ignore_eos": true,
                        "return_tokens": true]
            }
        }

        /// The tokens one streamed chunk carries.
        func tokens(in chunk: [String: Any]) -> Int {
            switch self {
            case .expertmesh:
                return ((chunk["choices"] as? [[String: Any]])?.first?["token_ids"] as? [Int])?.count ?? 0
            case .llamaServer:
                return (chunk["tokens"] as? [Int])?.count ?? 0
            }
        }
    }

    private func levels() throws -> [Int] {
        let values = concurrency.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ ($0 ?? 0) >= 1 }) else {
            throw ValidationError("--concurrency must be comma-separated positive integers, e.g. 1,4,16,64")
        }
        return values.map { $0! }
    }

    func run() throws {
        try reportingErrors {
            let client = try StreamingHTTPClient(url: server)
            var random = SeededGenerator(seed: seed ?? UInt64.random(in: 0...UInt64.max))
            let prefix = (0..<sharedPrefix).map { _ in 1 + Int(random.next() % UInt64(vocab - 1)) }
            // Warm-up: pages the weights in and checks the server answers.
            _ = try runLevel(client, concurrency: 1, count: 1, prefix: prefix, random: &random)
            if !json {
                print("concurrency  requests   req/s  out tok/s  TTFT p50  TTFT p99  ITL p50  ITL p99  prefix hit")
            }
            for level in try levels() {
                let before = try healthCounters()
                let result = try runLevel(client, concurrency: level, count: requests ?? max(8, 2 * level), prefix: prefix, random: &random)
                let after = try healthCounters()
                let queried = after.queried - before.queried
                let hitRate = queried > 0 ? Double(after.hits - before.hits) / Double(queried) : 0
                if json {
                    print(jsonText(result.report(concurrency: level, prefixHitRate: hitRate)))
                } else {
                    print(result.line(concurrency: level, prefixHitRate: hitRate))
                }
            }
        }
    }

    private func healthCounters() throws -> (queried: Int, hits: Int) {
        var request = URLRequest(url: URL(string: server.hasSuffix("/") ? server + "health" : server + "/health")!)
        request.timeoutInterval = 10
        let (data, _) = try HTTPClient.send(request)
        let engine = (try? JSONSerialization.jsonObject(with: data) as? [String: Any])?["engine"] as? [String: Any]
        return (engine?["prefix_cache_queried_tokens"] as? Int ?? 0, engine?["prefix_cache_hit_tokens"] as? Int ?? 0)
    }

    private func runLevel(_ client: StreamingHTTPClient, concurrency: Int, count: Int, prefix: [Int],
                          random: inout SeededGenerator) throws -> LevelResult {
        let api = self.api
        let bodies: [Data] = (0..<count).map { _ in
            let prompt = prefix + (prefix.count..<promptTokens).map { _ in 1 + Int(random.next() % UInt64(vocab - 1)) }
            return (try? JSONSerialization.data(withJSONObject: api.body(prompt: prompt, maxTokens: maxTokens))) ?? Data()
        }
        let results = LevelResult()
        let start = ContinuousClock.now
        // One thread per client (concurrentPerform would cap them at the core count).
        let finished = DispatchGroup()
        for worker in 0..<concurrency {
            finished.enter()
            Thread {
                var index = worker
                while index < count {
                    results.record(Self.timeOne(client, api: api, body: bodies[index]))
                    index += concurrency
                }
                finished.leave()
            }.start()
        }
        finished.wait()
        results.wallSeconds = (ContinuousClock.now - start).seconds
        if let failure = results.failures.first {
            throw CommandError("\(results.failures.count) of \(count) requests failed; first: \(failure)")
        }
        return results
    }

    /// One streamed request: time to first token, the gaps between tokens, the token count.
    private static func timeOne(_ client: StreamingHTTPClient, api: ServerAPI,
                                body: Data) -> Result<(ttft: Double, gaps: [Double], tokens: Int), CommandError> {
        let sent = ContinuousClock.now
        var arrivals: [ContinuousClock.Instant] = []
        var problem: String?
        do {
            let status = try client.post(api.path, body: body) { payload, time in
                guard payload != "[DONE]" else { return }
                let object = (try? JSONSerialization.jsonObject(with: Data(payload.utf8))) as? [String: Any]
                if let error = object?["error"] { problem = "\(error)"; return }
                arrivals += Array(repeating: time, count: object.map(api.tokens) ?? 0)
            }
            if status != 200 { problem = "HTTP \(status): \(problem ?? "")" }
        } catch {
            problem = "\(error)"
        }
        if let problem { return .failure(CommandError(problem)) }
        guard let first = arrivals.first else { return .failure(CommandError("no token arrived")) }
        let gaps = zip(arrivals.dropFirst(), arrivals).map { ($0 - $1).seconds }
        return .success(((first - sent).seconds, gaps, arrivals.count))
    }
}

/// What one concurrency level measured (filled from several client threads).
final class LevelResult: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var ttfts: [Double] = []
    private(set) var gaps: [Double] = []
    private(set) var tokens = 0
    private(set) var completed = 0
    private(set) var failures: [CommandError] = []
    var wallSeconds = 0.0

    func record(_ outcome: Result<(ttft: Double, gaps: [Double], tokens: Int), CommandError>) {
        lock.lock()
        defer { lock.unlock() }
        switch outcome {
        case .success(let one):
            ttfts.append(one.ttft)
            gaps += one.gaps
            tokens += one.tokens
            completed += 1
        case .failure(let error):
            failures.append(error)
        }
    }

    static func percentile(_ values: [Double], _ p: Double) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        return sorted[min(sorted.count - 1, Int((p / 100 * Double(sorted.count - 1)).rounded()))]
    }

    func report(concurrency: Int, prefixHitRate: Double) -> [String: Any] {
        ["concurrency": concurrency, "requests": completed, "seconds": wallSeconds,
         "requests_per_second": Double(completed) / wallSeconds, "output_tokens_per_second": Double(tokens) / wallSeconds,
         "ttft_p50_ms": Self.percentile(ttfts, 50) * 1000, "ttft_p99_ms": Self.percentile(ttfts, 99) * 1000,
         "itl_p50_ms": Self.percentile(gaps, 50) * 1000, "itl_p99_ms": Self.percentile(gaps, 99) * 1000,
         "prefix_cache_hit_rate": prefixHitRate]
    }

    func line(concurrency: Int, prefixHitRate: Double) -> String {
        String(format: "%11d  %8d  %6.2f  %9.1f  %6.0f ms  %6.0f ms  %4.0f ms  %4.0f ms  %9.1f%%", concurrency, completed,
               Double(completed) / wallSeconds, Double(tokens) / wallSeconds,
               Self.percentile(ttfts, 50) * 1000, Self.percentile(ttfts, 99) * 1000,
               Self.percentile(gaps, 50) * 1000, Self.percentile(gaps, 99) * 1000, 100 * prefixHitRate)
    }
}
