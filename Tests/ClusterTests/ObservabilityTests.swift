import Foundation
import XCTest

/// `/v1/cluster`, `/metrics` (read by Prometheus's own parser), `expertmesh status` and the
/// dashboard (in headless Chromium) against a running cluster: each must agree with what it served.
final class ObservabilityTests: XCTestCase {
    static var request: [String: Any] { ["prompt": [1, 2, 3], "max_tokens": 8, "temperature": 0, "ignore_eos": true] }
    static let requests = 4
    /// Tokens each request sends through every MoE layer: 3 prompt tokens and 7 generated ones fed back.
    static let tokensPerRequest = 10

    var topK = 0, layers = 0, experts = 0

    override func setUpWithError() throws {
        let config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf:
            Harness.fixture("mixtral").appendingPathComponent("config.json"))) as? [String: Any])
        topK = try XCTUnwrap(config["num_experts_per_tok"] as? Int)
        layers = try XCTUnwrap(config["num_hidden_layers"] as? Int)
        experts = try XCTUnwrap(config["num_local_experts"] as? Int)
    }

    /// A cluster of 2 workers (each expert on both) that has answered `requests` requests, and its
    /// /v1/cluster once it shows them (the engine thread refreshes it 4 times a second).
    func servedCluster(arguments: [String] = []) throws -> (LoopbackCluster, [String: Any]) {
        let cluster = try LoopbackCluster(model: Harness.fixture("mixtral"), workers: 2, precision: "f32",
                                          coordinatorArguments: ["--replicas", "2"] + arguments)
        try cluster.waitHealthy()
        for _ in 0..<Self.requests {
            XCTAssertEqual(Harness.http("POST", cluster.httpURL + "/v1/completions", json: Self.request,
                                        headers: ["Authorization": "Bearer secret"]).status, 200)
        }
        let expected = Self.requests * Self.tokensPerRequest * topK * layers
        var view: [String: Any] = [:]
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            view = Harness.http("GET", cluster.httpURL + "/v1/cluster", headers: ["Authorization": "Bearer secret"]).body
            let counted = ((view["experts"] as? [String: Any])?["layers"] as? [[String: Any]] ?? [])
                .flatMap { $0["total_tokens"] as? [Int] ?? [] }.reduce(0, +)
            if counted == expected { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return (cluster, view)
    }

    func testClusterJSONMetricsAndStatusAgreeWithWhatWasServed() throws {
        let (cluster, view) = try servedCluster(arguments: ["--api-key", "secret"])
        defer { cluster.stop() }
        XCTAssertEqual(view["object"] as? String, "cluster")
        XCTAssertEqual(view["status"] as? String, "ok")
        XCTAssertEqual(view["replicas"] as? Int, 2)
        let engine = try XCTUnwrap(view["engine"] as? [String: Any])
        XCTAssertEqual(engine["generated_tokens"] as? Int, Self.requests * 8)
        XCTAssertEqual(engine["prompt_tokens"] as? Int, Self.requests * 3)
        let workers = try XCTUnwrap(view["workers"] as? [[String: Any]])
        XCTAssertEqual(workers.compactMap { $0["name"] as? String }, ["worker-1", "worker-2"])
        var answered = 0
        for worker in workers {
            XCTAssertEqual(worker["state"] as? String, "ready", "\(worker)")
            XCTAssertEqual(worker["address"] as? String, "127.0.0.1", "\(worker)")
            XCTAssertEqual(worker["experts"] as? Int, layers * experts, "every expert on both workers")
            XCTAssertLessThan(worker["heartbeat_age_seconds"] as? Double ?? 99, 3)
            let requests = try XCTUnwrap(worker["requests"] as? Int)
            answered += requests
            // Equal replicas share single-token exchanges by turns: neither sits idle.
            XCTAssertGreaterThan(requests, 0, "\(worker)")
            let roundTrip = try XCTUnwrap(worker["round_trip_seconds"] as? [String: Any])
            XCTAssertGreaterThan(roundTrip["p50"] as? Double ?? 0, 0)
            XCTAssertGreaterThanOrEqual(roundTrip["p99"] as? Double ?? 0, roundTrip["p50"] as? Double ?? 0)
            XCTAssertGreaterThan(worker["bytes_out"] as? Int ?? 0, 0)
            XCTAssertGreaterThan(worker["bytes_in"] as? Int ?? 0, 0)
        }
        // Each MoE layer of each step sends to one replica or both (a prompt's tokens are shared out).
        let steps = try XCTUnwrap(engine["steps"] as? Int)
        XCTAssertTrue((steps * layers...2 * steps * layers).contains(answered), "\(answered) requests in \(steps) steps: \(workers)")
        let table = try XCTUnwrap((view["experts"] as? [String: Any])?["layers"] as? [[String: Any]])
        XCTAssertEqual(table.count, layers)
        for layer in table {
            XCTAssertEqual((layer["total_tokens"] as? [Int])?.reduce(0, +), Self.requests * Self.tokensPerRequest * topK)
            XCTAssertEqual(layer["tokens"] as? [Int], layer["total_tokens"] as? [Int], "all within the last minute")
            XCTAssertEqual((layer["workers"] as? [[String]])?.map { Set($0) },
                           [Set<String>](repeating: ["worker-1", "worker-2"], count: experts))
        }

        // Prometheus's own text parser reads /metrics.
        let scrape = try runPython("metrics_samples.py", [cluster.httpURL + "/metrics", "--key", "secret"])
        XCTAssertEqual(scrape.status, 0, scrape.output)
        let metrics = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(scrape.output.utf8)) as? [String: Any])
        XCTAssertTrue((metrics["content_type"] as? String ?? "").hasPrefix("text/plain; version=0.0.4"), "\(metrics)")
        let samples = (metrics["families"] as? [String: [String: Any]] ?? [:]).values
            .flatMap { $0["samples"] as? [[Any]] ?? [] }
            .map { (name: $0[0] as? String ?? "", labels: $0[1] as? [String: String] ?? [:], value: $0[2] as? Double ?? -1) }
        func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
            samples.first { $0.name == name && $0.labels == labels }?.value
        }
        XCTAssertEqual(value("expertmesh_requests_total", ["outcome": "length"]), Double(Self.requests))
        XCTAssertEqual(value("expertmesh_generated_tokens_total"), Double(Self.requests * 8))
        XCTAssertEqual(value("expertmesh_prompt_tokens_total"), Double(Self.requests * 3))
        XCTAssertEqual(value("expertmesh_time_to_first_token_seconds_count"), Double(Self.requests))
        XCTAssertEqual(value("expertmesh_inter_token_latency_seconds_count"), Double(Self.requests * 7))
        XCTAssertEqual(value("expertmesh_request_duration_seconds_count"), Double(Self.requests))
        XCTAssertEqual(value("expertmesh_request_duration_seconds_bucket", ["le": "+Inf"]), Double(Self.requests))
        XCTAssertEqual(value("expertmesh_running_sequences"), 0)
        XCTAssertEqual(value("expertmesh_kv_blocks_total"), (engine["kv_blocks_total"] as? Int).map(Double.init))
        for layer in 0..<layers {
            let routed = samples.filter { $0.name == "expertmesh_expert_routed_tokens_total" && $0.labels["layer"] == String(layer) }
            XCTAssertEqual(routed.map(\.value).reduce(0, +), Double(Self.requests * Self.tokensPerRequest * topK), "layer \(layer)")
        }
        for worker in ["worker-1", "worker-2"] {
            XCTAssertEqual(value("expertmesh_worker_up", ["worker": worker]), 1)
            XCTAssertEqual(value("expertmesh_worker_state", ["worker": worker, "state": "ready"]), 1)
            XCTAssertEqual(value("expertmesh_worker_state", ["worker": worker, "state": "lost"]), 0)
            XCTAssertGreaterThan(value("expertmesh_worker_sent_bytes_total", ["worker": worker]) ?? 0, 0)
        }
        let roundTrips = samples.filter { $0.name == "expertmesh_worker_round_trip_seconds_count" }.map(\.value).reduce(0, +)
        XCTAssertEqual(roundTrips, Double(answered))

        // `expertmesh status`: the same, as text, a heat map, JSON, and redrawn with --watch.
        let binary = cluster.binary.path
        let environment = ProcessInfo.processInfo.environment.merging(["EXPERTMESH_API_KEY": "secret"]) { $1 }
        let status = try ChildProcess(cluster.binary, ["status", "--server", cluster.httpURL, "--experts"], name: "status",
                                      environment: environment)
        status.waitForExit(timeout: 20)
        XCTAssertEqual(status.process.terminationStatus, 0, status.log)
        for text in ["serving (every expert has a live worker)", "2 replica(s) per expert", "worker-1", "worker-2",
                     "127.0.0.1", "ready", "round trip p50/p99", "tokens routed in the last 60 s"] {
            XCTAssertTrue(status.log.contains(text), "status lacks '\(text)':\n\(status.log)")
        }
        let mapRows = status.log.split(separator: "\n").filter { $0.range(of: #"^\s+\d+ \|"#, options: .regularExpression) != nil }
        XCTAssertEqual(mapRows.count, layers, status.log)
        let json = try runTool(binary, ["status", "--server", cluster.httpURL, "--json", "--api-key", "secret"])
        XCTAssertEqual(json.status, 0)
        XCTAssertEqual((try? JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any])?["object"] as? String,
                       "cluster", json.output)
        let keyless = try runTool("env", ["-u", "EXPERTMESH_API_KEY", binary, "status", "--server", cluster.httpURL])
        XCTAssertNotEqual(keyless.status, 0)
        XCTAssertTrue(keyless.output.contains("needs an API key: give --api-key KEY"), keyless.output)
        let watching = try ChildProcess(cluster.binary, ["status", "--server", cluster.httpURL, "--watch", "0.3"], name: "watch",
                                        environment: environment)
        Thread.sleep(forTimeInterval: 1.5)
        watching.kill(signal: SIGINT)
        XCTAssertGreaterThanOrEqual(watching.log.components(separatedBy: "\u{1B}[2J").count - 1, 3, watching.log)
        XCTAssertTrue(watching.log.contains("worker-2"), watching.log)
    }

    /// With API keys, /v1/cluster and /metrics need one (unless --open-metrics); /health and the
    /// dashboard page do not. `serve` has the same routes, with no workers.
    func testMetricsAndClusterNeedTheKeyUnlessMetricsAreOpened() throws {
        let closed = try ServeProcess(model: Harness.fixture("mixtral"), arguments: ["--api-key", "secret"])
        XCTAssertEqual(Harness.http("GET", closed.url + "/v1/cluster").status, 401)
        let cluster = Harness.http("GET", closed.url + "/v1/cluster", headers: ["Authorization": "Bearer secret"])
        XCTAssertEqual(cluster.status, 200)
        XCTAssertEqual((cluster.body["workers"] as? [Any])?.count, 0, "serve has no workers")
        XCTAssertEqual(Harness.http("GET", closed.url + "/health").status, 200)
        XCTAssertEqual(RawHTTP.get(closed.url, "/")?.status, 200)
        let refused = try runPython("metrics_samples.py", [closed.url + "/metrics"])
        XCTAssertEqual(refused.status, 2, refused.output)
        XCTAssertTrue(refused.output.contains("401"), refused.output)
        XCTAssertEqual(try runPython("metrics_samples.py", [closed.url + "/metrics", "--key", "secret"]).status, 0)

        let open = try ServeProcess(model: Harness.fixture("mixtral"), arguments: ["--api-key", "secret", "--open-metrics"])
        let scraped = try runPython("metrics_samples.py", [open.url + "/metrics"])
        XCTAssertEqual(scraped.status, 0, scraped.output)
        XCTAssertTrue(scraped.output.contains("expertmesh_kv_blocks_total"), scraped.output)
        XCTAssertEqual(Harness.http("GET", open.url + "/v1/cluster").status, 401, "only /metrics is opened")
        let status = try runTool(try Harness.binary().path, ["status", "--server", open.url, "--api-key", "secret", "--experts"])
        XCTAssertEqual(status.status, 0, status.output)
        XCTAssertTrue(status.output.contains("no workers: every expert is in this process"), status.output)
    }

    // MARK: logs

    /// `--log-format json`: every line an object with time, level, component, message and the
    /// event's metadata as fields; `--log-level` hides what is less severe.
    func testLogsAreJSONWithMetadataAndHonourTheLevel() throws {
        let cluster = try LoopbackCluster(model: Harness.fixture("mixtral"), workers: 1, precision: "f32",
                                          coordinatorArguments: ["--log-format", "json"], workerArguments: ["--log-format", "json"])
        defer { cluster.stop() }
        try cluster.waitHealthy()
        for process in [cluster.coordinator, cluster.workers[0]] {
            let lines = process.log.split(separator: "\n")
            XCTAssertGreaterThan(lines.count, 3, process.log)
            for line in lines {
                let object = try XCTUnwrap(try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not JSON: \(line)")
                for field in ["time", "level", "component", "message"] { XCTAssertNotNil(object[field], "\(line)") }
            }
        }
        let connected = cluster.coordinator.log.split(separator: "\n")
            .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .first { ($0["message"] as? String)?.contains("worker 'worker-1' connected") == true }
        XCTAssertEqual(connected?["worker"] as? String, "worker-1", cluster.coordinator.log)
        XCTAssertEqual(connected?["address"] as? String, "127.0.0.1")
        XCTAssertEqual(connected?["level"] as? String, "info")
        XCTAssertEqual(connected?["component"] as? String, "coordinator")

        let quiet = try ServeProcess(model: Harness.fixture("mixtral"), arguments: ["--log-level", "warning"])
        let verbose = try ServeProcess(model: Harness.fixture("mixtral"))
        XCTAssertFalse(quiet.child.log.contains("HTTP API on"), quiet.child.log)
        XCTAssertTrue(verbose.child.log.contains("[serve] HTTP API on"), verbose.child.log)
    }

    // MARK: dashboard

    /// Headless Chromium with the page's console on stderr.
    func chromium(_ arguments: [String], timeout: Double = 60) throws -> (status: Int32, output: String) {
        let found = try runTool("sh", ["-c", "command -v chromium"], timeout: 10)
        guard found.status == 0 else {
            XCTFail("chromium is missing: scripts/setup.sh installs Debian's chromium")
            throw XCTSkip("no chromium")
        }
        let profile = FileManager.default.temporaryDirectory.appendingPathComponent("chromium-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: profile) }
        return try runTool("chromium", ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                                        "--user-data-dir=\(profile.path)", "--enable-logging=stderr", "--v=0",
                                        "--virtual-time-budget=5000"] + arguments, timeout: timeout)
    }

    /// Console messages and uncaught errors, as Chromium logs them.
    static func consoleLines(_ output: String) -> [Substring] {
        output.split(separator: "\n").filter { $0.contains(":CONSOLE") || $0.contains("Uncaught") }
    }

    func testDashboardRendersWorkersAndTheHeatMapInChromium() throws {
        // The console check can fail: a page with an error is caught.
        let broken = try chromium(["--dump-dom", "data:text/html,<script>console.error('broken page'); missing()</script>"])
        XCTAssertFalse(Self.consoleLines(broken.output).isEmpty, "the console check sees nothing:\n\(broken.output)")

        let (cluster, _) = try servedCluster(arguments: ["--api-key", "secret"])
        defer { cluster.stop() }
        // With keys, the page holds no data until the viewer types one in (the 401 of /v1/cluster is
        // the only console line allowed).
        let keyed = try chromium(["--dump-dom", cluster.httpURL + "/"])
        XCTAssertEqual(Self.consoleLines(keyed.output).filter { !$0.contains("401") }, [], keyed.output)
        XCTAssertTrue(keyed.output.contains("This server needs an API key"), keyed.output)

        let (open, _) = try servedCluster()
        defer { open.stop() }
        let page = try chromium(["--dump-dom", open.httpURL + "/"])
        XCTAssertEqual(Self.consoleLines(page.output), [], "console errors:\n\(page.output)")
        let dom = page.output
        XCTAssertEqual(dom.components(separatedBy: "<tr class=\"worker\">").count - 1, 2, dom)
        for text in ["worker-1", "worker-2", "127.0.0.1", "state-ready", "serving"] {
            XCTAssertTrue(dom.contains(text), "the page lacks '\(text)':\n\(dom)")
        }
        XCTAssertEqual(dom.components(separatedBy: "<tr class=\"layer\">").count - 1, layers, dom)
        XCTAssertEqual(dom.components(separatedBy: "class=\"cell\"").count - 1, layers * experts, dom)
        XCTAssertTrue(dom.contains("data-tokens=\"") && dom.range(of: #"data-tokens="[1-9]"#, options: .regularExpression) != nil,
                      "the heat map shows no routed tokens:\n\(dom)")

        let artifacts = Harness.root.appendingPathComponent(".build/test-artifacts")
        try FileManager.default.createDirectory(at: artifacts, withIntermediateDirectories: true)
        let screenshot = artifacts.appendingPathComponent("dashboard.png")
        try? FileManager.default.removeItem(at: screenshot)
        let shot = try chromium(["--screenshot=\(screenshot.path)", "--window-size=1280,900", open.httpURL + "/"])
        XCTAssertEqual(Self.consoleLines(shot.output), [], shot.output)
        let png = try Data(contentsOf: screenshot)
        XCTAssertEqual(Array(png.prefix(4)), [0x89, 0x50, 0x4E, 0x47], "not a PNG")
        XCTAssertGreaterThan(png.count, 20_000, "a nearly empty screenshot")
        print("dashboard screenshot: \(screenshot.path) (\(png.count) bytes)")
    }
}
