import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a coordinator, its workers and its experts' load (exit status 0 only when it serves).",
        discussion: """
        Reads GET /v1/cluster: the engine (requests running and waiting, tokens per second, KV cache use, \
        prefix cache hits) and a row per worker (address, state, experts, last heartbeat, requests, \
        round trip and compute time p50/p99, bytes each way). --experts adds the tokens routed to each \
        expert over the last minute as a heat map, a row per layer: skew shows at a glance. \
        The key for a server started with --api-key(-file) comes from --api-key or EXPERTMESH_API_KEY.

        Examples:
          expertmesh status --server http://127.0.0.1:8080
          expertmesh status --server http://10.0.0.1:8080 --experts
          expertmesh status --server http://10.0.0.1:8080 --watch 2 --experts
          expertmesh status --server http://10.0.0.1:8080 \\
              --json | jq '.workers[] | {name, state}'
        """)

    @Option(help: "Coordinator HTTP URL.")
    var server = "http://127.0.0.1:8080"

    @Option(help: "API key, if the server needs one (default: EXPERTMESH_API_KEY).")
    var apiKey: String?

    @Flag(help: "Print the /v1/cluster JSON as it is (schema in the README).")
    var json = false

    @Flag(help: "Add the expert heat map: tokens routed to each expert per layer.")
    var experts = false

    @Option(help: ArgumentHelp("Redraw every SECONDS until interrupted.", valueName: "SECONDS"))
    var watch: Double?

    func validate() throws {
        if let watch, watch < 0.2 { throw ValidationError("--watch must be at least 0.2 seconds") }
        guard let url = URL(string: server), url.scheme == "http" || url.scheme == "https" else {
            throw ValidationError("--server must be an http URL such as http://127.0.0.1:8080")
        }
    }

    func run() throws {
        try reportingErrors {
            guard let watch else {
                let (text, serving) = try snapshot()
                print(text, terminator: "")
                if !serving { throw ExitCode(1) }
                return
            }
            while true {
                // Home and clear: the table redraws in place.
                let text = (try? snapshot().text) ?? "cannot reach \(server); retrying every \(watch) s\n"
                FileHandle.standardOutput.write(Data(("\u{1B}[H\u{1B}[2J" + text).utf8))
                Thread.sleep(forTimeInterval: watch)
            }
        }
    }

    /// The report once, and whether the coordinator serves.
    func snapshot() throws -> (text: String, serving: Bool) {
        let url = URL(string: server.hasSuffix("/") ? server + "v1/cluster" : server + "/v1/cluster")!
        var request = URLRequest(url: url)
        request.timeoutInterval = 10
        if let key = apiKey ?? apiKeyFromEnvironment { request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization") }
        let (data, status) = try HTTPClient.send(request)
        if status == 401 {
            throw CommandError("\(server) needs an API key: give --api-key KEY or set EXPERTMESH_API_KEY")
        }
        guard status == 200, let cluster = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CommandError("\(url) answered HTTP \(status) without the cluster's JSON: is it an ExpertMesh coordinator "
                               + "(of this version)?")
        }
        let serving = cluster["status"] as? String == "ok"
        if json { return (String(decoding: data, as: UTF8.self) + "\n", serving) }
        var text = StatusReport.render(cluster)
        if experts { text += "\n" + StatusReport.heatMap(cluster) }
        return (text, serving)
    }
}

/// The text `expertmesh status` prints from a `/v1/cluster` object.
enum StatusReport {
    static func render(_ cluster: [String: Any]) -> String {
        var lines: [String] = []
        let engine = cluster["engine"] as? [String: Any] ?? [:]
        let workers = cluster["workers"] as? [[String: Any]] ?? []
        let serving = cluster["status"] as? String == "ok"
        lines.append("\(cluster["model"] as? String ?? "?"): "
                     + (serving ? "serving" + (workers.isEmpty ? "" : " (every expert has a live worker)")
                                : "not serving: \(cluster["reason"] as? String ?? "?")")
                     + " · up \(duration(number(cluster["uptime_seconds"])))"
                     + " · \(workers.count) workers" + ((cluster["replicas"] as? Int).map { ", \($0) replica(s) per expert" } ?? "")
                     + ((cluster["overlap_exchanges"] as? String).map { $0 == "off" ? "" : " · steps overlap exchanges (\($0))" } ?? ""))
        lines.append(String(format: "engine: %d running, %d waiting · %.1f tokens/s in, %.1f out · KV cache %.1f%% of %d blocks"
                            + " · prefix cache hits %.1f%%",
                            Int(number(engine["running"])), Int(number(engine["waiting"])),
                            number(engine["prompt_tokens_per_second"]), number(engine["generated_tokens_per_second"]),
                            100 * number(engine["kv_cache_usage"]), Int(number(engine["kv_blocks_total"])),
                            100 * number(engine["prefix_cache_hit_rate"])))
        if let pipeline = cluster["pipeline"] as? [String: Any] { lines += pipelineLines(pipeline) }
        if workers.isEmpty {
            let layers = (cluster["experts"] as? [String: Any])?["layers"] as? [Any]
            lines.append(layers == nil ? "no workers: every expert is in this process"
                         : layers!.isEmpty ? "no workers: a dense model (no experts) is served by the coordinator alone"
                         : "no workers connected")
            return lines.joined(separator: "\n") + "\n"
        }
        let header = ["worker", "address", "state", "experts", "bytes", "heard", "requests", "round trip p50/p99",
                      "compute p50/p99", "sent/received"]
        var rows = [header]
        for worker in workers {
            rows.append([
                worker["name"] as? String ?? "?", worker["address"] as? String ?? "-", worker["state"] as? String ?? "?",
                String(Int(number(worker["experts"]))), size(number(worker["expert_bytes"])),
                String(format: "%.1f s", number(worker["heartbeat_age_seconds"])), String(Int(number(worker["requests"]))),
                percentiles(worker["round_trip_seconds"]), percentiles(worker["compute_seconds"]),
                size(number(worker["bytes_out"])) + "/" + size(number(worker["bytes_in"])),
            ])
        }
        let widths = header.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        for (index, row) in rows.enumerated() {
            var line = zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
            if index > 0 {
                let worker = workers[index - 1]
                if let why = worker["faulty"] as? String ?? worker["degraded"] as? String { line += "  (\(why))" }
            }
            lines.append(line.trimmingCharacters(in: .whitespaces))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A line per pipeline stage: its layers, host, state and the micro-batches it ran.
    static func pipelineLines(_ pipeline: [String: Any]) -> [String] {
        let stages = pipeline["stages"] as? [[String: Any]] ?? []
        var lines = ["pipeline: \(stages.count) stages, \(Int(number(pipeline["steps_in_flight"]))) steps in flight, "
                     + "\(Int(number(pipeline["micro_batches_per_step"]))) micro-batch(es) per step"]
        for stage in stages {
            let layers = stage["layers"] as? [Int] ?? []
            let span = layers.count == 2 ? "layers \(layers[0])–\(layers[1] - 1)" : "layers ?"
            var line = "  stage \(Int(number(stage["stage"]))): \(span) · \(stage["name"] as? String ?? "-")"
            if let address = stage["address"] as? String { line += " (\(address))" }
            line += " · \(stage["state"] as? String ?? "?")"
            if stage["micro_batches"] != nil {
                line += String(format: " · %d micro-batches, %.1f s busy, %d workers", Int(number(stage["micro_batches"])),
                               number(stage["busy_seconds"]), Int(number(stage["workers"])))
            }
            lines.append(line)
        }
        return lines
    }

    /// A row per MoE layer, a character per expert, darker for more tokens routed to it lately
    /// (relative to the layer's busiest expert); since start when nothing was routed lately.
    static func heatMap(_ cluster: [String: Any]) -> String {
        let experts = cluster["experts"] as? [String: Any] ?? [:]
        let layers = experts["layers"] as? [[String: Any]] ?? []
        guard !layers.isEmpty else { return "expert load: not measured here (no workers)\n" }
        let recent = layers.contains { ($0["tokens"] as? [Int] ?? []).contains { $0 > 0 } }
        let key = recent ? "tokens" : "total_tokens"
        let shades = Array(" ░▒▓█")
        var lines = ["expert load, tokens routed " + (recent ? "in the last \(Int(number(experts["window_seconds"]))) s" : "since start")
                     + " (each layer relative to its busiest expert: ' ' none … '█' most):"]
        let width = layers.map { ($0[key] as? [Int] ?? []).count }.max() ?? 0
        let ruler = (0..<width).map { $0 % 10 == 0 ? String($0 / 10 % 10) : " " }.joined()
        lines.append("layer |" + ruler + "|  busiest       skew (max/mean)")
        for layer in layers {
            let counts = layer[key] as? [Int] ?? []
            let most = counts.max() ?? 0
            let cells = counts.map { count -> Character in
                guard count > 0, most > 0 else { return shades[0] }
                return shades[max(1, Int((Double(count) / Double(most) * Double(shades.count - 1)).rounded()))]
            }
            let total = counts.reduce(0, +)
            let mean = counts.isEmpty ? 0 : Double(total) / Double(counts.count)
            let busiest = counts.firstIndex(of: most).map { "e\($0): \(most)" } ?? "-"
            lines.append(String(format: "%5d |%@|  %@%@", Int(number(layer["layer"])), String(cells),
                                busiest.padding(toLength: 14, withPad: " ", startingAt: 0),
                                mean > 0 ? String(format: "%.2f", Double(most) / mean) : "-"))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Bytes in the largest unit that keeps a digit before the point.
    static func size(_ bytes: Double) -> String {
        if bytes < 1e3 { return "\(Int(bytes)) B" }
        if bytes < 1e6 { return String(format: "%.1f kB", bytes / 1e3) }
        if bytes < 1e9 { return String(format: "%.1f MB", bytes / 1e6) }
        return String(format: "%.2f GB", bytes / 1e9)
    }

    static func number(_ value: Any?) -> Double { (value as? NSNumber)?.doubleValue ?? 0 }

    static func percentiles(_ value: Any?) -> String {
        let object = value as? [String: Any] ?? [:]
        let format = { (seconds: Any?) in
            (seconds as? NSNumber).map { String(format: "%.2f", $0.doubleValue * 1000) } ?? "-"
        }
        return "\(format(object["p50"]))/\(format(object["p99"])) ms"
    }

    static func duration(_ seconds: Double) -> String {
        let whole = Int(seconds)
        if whole < 60 { return "\(whole) s" }
        if whole < 3600 { return "\(whole / 60) min \(whole % 60) s" }
        return "\(whole / 3600) h \(whole % 3600 / 60) min"
    }
}
