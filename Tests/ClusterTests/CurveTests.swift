import Foundation
import XCTest

/// CurveZMQ on the coordinator–worker link: key files, who may join, SIGHUP.
final class CurveTests: XCTestCase {
    func keys() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keys-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("authorized"), withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
        for name in ["coordinator", "shard-1", "stranger"] {
            let made = try runTool(try Harness.binary().path, ["keygen", "--out", directory.appendingPathComponent(name).path])
            XCTAssertEqual(made.status, 0, made.output)
        }
        try FileManager.default.copyItem(at: directory.appendingPathComponent("shard-1.key"),
                                         to: directory.appendingPathComponent("authorized/shard-1.key"))
        return directory
    }

    func testKeyFilesAreCzmqCertificatesThatPyzmqReads() throws {
        let directory = try keys()
        let secret = directory.appendingPathComponent("coordinator.key_secret").path
        let mode = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: secret)[.posixPermissions] as? Int)
        XCTAssertEqual(mode & 0o777, 0o600)
        // pyzmq's reader of czmq certificates (zmq.auth.load_certificate) agrees on both keys.
        let script = """
            import sys, zmq.auth
            public, _ = zmq.auth.load_certificate(sys.argv[1] + ".key")
            public2, secret = zmq.auth.load_certificate(sys.argv[1] + ".key_secret")
            assert public == public2 and len(public) == 40 and len(secret) == 40, (public, public2, secret)
            print(public.decode(), secret.decode())
            """
        let read = try runTool("python3", ["-c", script, directory.appendingPathComponent("coordinator").path], timeout: 30)
        XCTAssertEqual(read.status, 0, read.output)
        let text = try String(contentsOfFile: secret, encoding: .utf8)
        for key in read.output.split(separator: " ").map({ $0.trimmingCharacters(in: .whitespacesAndNewlines) }) {
            XCTAssertTrue(text.contains("\"\(key)\""), "pyzmq read \(key), not in:\n\(text)")
        }
        let again = try runTool(try Harness.binary().path, ["keygen", "--out", directory.appendingPathComponent("coordinator").path])
        XCTAssertNotEqual(again.status, 0)
        XCTAssertTrue(again.output.contains("exists: pass --force"), again.output)
    }

    func testOnlyAuthorizedWorkersJoinAndSIGHUPRereadsTheKeys() throws {
        let directory = try keys()
        let path = { (name: String) in directory.appendingPathComponent(name).path }
        let cluster = try LoopbackCluster(model: Harness.fixture("mixtral"), workers: 0, minWorkers: 1, precision: "f32",
                                          coordinatorArguments: ["--curve-secret-key", path("coordinator.key_secret"),
                                                                 "--authorized-keys", path("authorized")])
        defer { cluster.stop() }
        func worker(_ name: String, key: String?) throws {
            let curve = key.map { ["--curve-secret-key", path("\($0).key_secret"), "--coordinator-key", path("coordinator.key")] } ?? []
            cluster.workers.append(try ChildProcess(cluster.binary, ["worker", "--coordinator", cluster.zmqEndpoint,
                                                                     "--model", cluster.model.path, "--name", name] + curve, name: name))
        }
        try worker("stranger", key: "stranger")
        try worker("keyless", key: nil)
        try worker("shard-1", key: "shard-1")
        try cluster.waitHealthy()
        let expected = try XCTUnwrap(JSONSerialization.jsonObject(
            with: Data(contentsOf: cluster.model.appendingPathComponent("expected.json"))) as? [String: Any])
        let greedy = try XCTUnwrap(expected["greedy_tokens"] as? [Int])
        let (status, body) = Harness.http("POST", cluster.httpURL + "/v1/completions", json: [
            "prompt": try XCTUnwrap(expected["prompt_tokens"] as? [Int]), "max_tokens": greedy.count, "temperature": 0,
            "ignore_eos": true, "return_token_ids": true,
        ])
        XCTAssertEqual(status, 200, "\(body)")
        XCTAssertEqual((body["choices"] as? [[String: Any]])?.first?["token_ids"] as? [Int], greedy)
        func joined() -> [String] {
            (Harness.http("GET", cluster.httpURL + "/health").body["workers"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        }
        XCTAssertEqual(joined(), ["shard-1"], "only the authorized worker may join")
        let strangerKey = try String(contentsOfFile: path("stranger.key"), encoding: .utf8)
            .components(separatedBy: "public-key = \"")[1].prefix(40)
        // The stranger keeps retrying; its refusal is logged when its handshake reaches the coordinator.
        let refusal = "its public key \(strangerKey) is not among the authorized keys"
        let logged = Date().addingTimeInterval(10)
        while !cluster.coordinator.log.contains(refusal), Date() < logged { Thread.sleep(forTimeInterval: 0.1) }
        XCTAssertTrue(cluster.coordinator.log.contains(refusal), cluster.coordinator.log)

        // Authorize the stranger: after SIGHUP it joins by itself (it keeps retrying).
        try FileManager.default.copyItem(atPath: path("stranger.key"), toPath: path("authorized/stranger.key"))
        kill(cluster.coordinator.process.processIdentifier, SIGHUP)
        let deadline = Date().addingTimeInterval(20)
        while !joined().contains("stranger"), Date() < deadline { Thread.sleep(forTimeInterval: 0.2) }
        XCTAssertEqual(joined(), ["shard-1", "stranger"], cluster.coordinator.log)
        XCTAssertTrue(cluster.coordinator.log.contains("SIGHUP: 2 authorized worker keys"), cluster.coordinator.log)
    }

    /// tcpdump on loopback while a coordinator (the Python one, so the activations are known
    /// bytes) sends a request to a worker: with CURVE the activations and the frame names never
    /// appear on the wire; without it they do (so the check can fail).
    func testActivationsCrossTheWireEncryptedWithCurveOnly() throws {
        guard getuid() == 0 else { throw XCTSkip("capturing loopback traffic needs root (CI runs as root)") }
        guard (try runTool("sh", ["-c", "command -v tcpdump"])).status == 0 else {
            return XCTFail("tcpdump is missing: scripts/setup.sh installs it")
        }
        let directory = try keys()
        let proto = try Harness.pythonProto()
        for curve in [false, true] {
            // A capture of a loaded machine can come out nearly empty (tcpdump dropping or not yet
            // filtering): such a capture proves nothing either way, so it is taken once more.
            for attempt in 1...2 {
                let (wire, activations, log) = try capture(curve: curve, directory: directory, proto: proto)
                if wire.count <= 2_000, attempt == 1 { continue }
                XCTAssertGreaterThan(wire.count, 2_000, "the capture is nearly empty: \(log)")
                XCTAssertEqual(wire.range(of: activations) != nil, !curve, "activations in the clear: \(!curve ? "expected" : "LEAKED")")
                XCTAssertEqual(wire.range(of: Data("activations".utf8)) != nil, !curve, "frame names in the clear")
                break
            }
        }
    }

    /// One request from the Python coordinator to a worker, captured on loopback: the bytes on the
    /// wire, the activations' first 32 bytes, and tcpdump's log.
    func capture(curve: Bool, directory: URL, proto: URL) throws -> (Data, Data, String) {
        let path = { (name: String) in directory.appendingPathComponent(name).path }
        let port = Harness.freePort()
        let capture = path("capture-\(curve).pcap")
        let tcpdump = try ChildProcess(URL(fileURLWithPath: "/usr/bin/env"),
                                       ["tcpdump", "-i", "lo", "-U", "-B", "8192", "-w", capture, "tcp port \(port)"],
                                       name: "tcpdump")
        let deadline = Date().addingTimeInterval(10)
        while !tcpdump.log.contains("listening on"), Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        let client = try ChildProcess(URL(fileURLWithPath: "/usr/bin/env"), [
            "python3", Harness.root.appendingPathComponent("Tests/PythonClient/wire_client.py").path, "--proto-dir", proto.path,
            "--model", Harness.fixture("mixtral").path, "--endpoint", "tcp://127.0.0.1:\(port)",
        ] + (curve ? ["--curve-secret-key", path("coordinator.key_secret")] : []), name: "python-coordinator")
        Thread.sleep(forTimeInterval: 0.5)
        let worker = try ChildProcess(try Harness.binary(), [
            "worker", "--coordinator", "tcp://127.0.0.1:\(port)", "--model", Harness.fixture("mixtral").path, "--name", "py-peer",
        ] + (curve ? ["--curve-secret-key", path("shard-1.key_secret"), "--coordinator-key", path("coordinator.key")] : []),
                                      name: "captured-worker")
        client.waitForExit(timeout: 120)
        worker.kill()
        Thread.sleep(forTimeInterval: 0.5)
        tcpdump.kill(signal: SIGTERM)
        XCTAssertEqual(client.process.terminationStatus, 0, client.log)
        guard client.log.contains("activations begin with ") else {
            XCTFail("no activations sent: \(client.log)")
            return (Data(), Data(), tcpdump.log)
        }
        let hex = client.log.components(separatedBy: "activations begin with ")[1].prefix(64)
        let activations = Data(try (0..<32).map { try XCTUnwrap(UInt8(hex.dropFirst(2 * $0).prefix(2), radix: 16)) })
        return (try Data(contentsOf: URL(fileURLWithPath: capture)), activations, tcpdump.log)
    }

    /// Pipeline stages with CURVE: every stage uses the coordinator's key pair (a worker has one
    /// coordinator key for all the coordinators it serves), stage 0 authorizes that key beside the
    /// workers'; a stage with another key is refused and logged, and the pipeline keeps serving.
    func testPipelineStagesJoinWithCurveAndStrangersAreRefused() throws {
        let directory = try keys()
        let path = { (name: String) in directory.appendingPathComponent(name).path }
        try FileManager.default.copyItem(at: directory.appendingPathComponent("coordinator.key"),
                                         to: directory.appendingPathComponent("authorized/coordinator.key"))
        let keyed = ["--curve-secret-key", path("coordinator.key_secret"), "--authorized-keys", path("authorized")]
        let cluster = try PipelineCluster(model: Harness.fixture("qwen3_moe"), stages: 2, workers: 1,
                                          coordinatorArguments: keyed,
                                          stageArguments: keyed + ["--coordinator-key", path("coordinator.key")],
                                          workerArguments: ["--curve-secret-key", path("shard-1.key_secret"),
                                                            "--coordinator-key", path("coordinator.key")])
        defer { cluster.stop() }
        try cluster.waitHealthy()
        _ = try Harness.assertClusterEqualsSingleProcess("qwen3_moe", url: cluster.httpURL, log: cluster.logs)

        // A stage keyed as "stranger", with a worker of its own (a stage joins once its workers are ready).
        let strangerListen = "tcp://127.0.0.1:\(Harness.freePort())"
        let stranger = try ChildProcess(cluster.binary, [
            "stage", "--stage", "1/2", "--join", cluster.stageEndpoint, "--listen", strangerListen,
            "--model", cluster.model.path, "--curve-secret-key", path("stranger.key_secret"),
            "--authorized-keys", path("authorized"), "--coordinator-key", path("coordinator.key")], name: "stranger-stage")
        defer { stranger.kill() }
        let strangersWorker = try ChildProcess(cluster.binary, [
            "worker", "--coordinator", strangerListen, "--model", cluster.model.path, "--name", "strangers-worker",
            "--curve-secret-key", path("shard-1.key_secret"), "--coordinator-key", path("stranger.key")], name: "strangers-worker")
        defer { strangersWorker.kill() }
        let strangerKey = try String(contentsOfFile: path("stranger.key"), encoding: .utf8)
            .components(separatedBy: "public-key = \"")[1].prefix(40)
        let refusal = "refused a peer (worker or pipeline stage) from 127.0.0.1: its public key \(strangerKey) is not"
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, !cluster.coordinator.log.contains(refusal) { Thread.sleep(forTimeInterval: 0.2) }
        XCTAssertTrue(cluster.coordinator.log.contains(refusal), cluster.coordinator.log)
        XCTAssertEqual(cluster.stageRows.last?["name"] as? String, "stage-1")
        XCTAssertEqual(Harness.http("GET", cluster.httpURL + "/health").status, 200)
    }

    func testPlainTCPBeyondLoopbackNeedsInsecureAndWarns() throws {
        let model = Harness.fixture("mixtral").path
        for arguments in [["coordinator", "--model", model, "--listen", "tcp://0.0.0.0:\(Harness.freePort())"],
                          ["worker", "--model", model, "--coordinator", "tcp://10.255.255.1:5555"]] {
            let refused = try ChildProcess(try Harness.binary(), arguments, name: "plain-tcp")
            refused.waitForExit(timeout: 10)
            XCTAssertNotEqual(refused.process.terminationStatus, 0)
            XCTAssertTrue(refused.log.contains("can be reached from other hosts, and without CURVE keys"), refused.log)
            XCTAssertTrue(refused.log.contains("or --insecure on a network you trust"), refused.log)
        }
        let allowed = try ChildProcess(try Harness.binary(), ["coordinator", "--model", model, "--listen",
                                                              "tcp://0.0.0.0:\(Harness.freePort())", "--insecure",
                                                              "--http", "127.0.0.1:\(Harness.freePort())"], name: "insecure")
        defer { allowed.kill(signal: SIGTERM) }
        let deadline = Date().addingTimeInterval(20)
        while !allowed.log.contains("waiting for workers"), allowed.process.isRunning, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTAssertTrue(allowed.log.contains("warning: plain TCP on tcp://0.0.0.0:"), allowed.log)
        XCTAssertTrue(allowed.process.isRunning, allowed.log)
    }

    func testHalfAKeyPairIsRefusedClearly() throws {
        let directory = try keys()
        let refused = try ChildProcess(try Harness.binary(), ["worker", "--coordinator", "tcp://127.0.0.1:1", "--model",
                                                              Harness.fixture("mixtral").path, "--curve-secret-key",
                                                              directory.appendingPathComponent("shard-1.key").path,
                                                              "--coordinator-key", directory.appendingPathComponent("coordinator.key").path],
                                       name: "public-as-secret")
        refused.waitForExit(timeout: 10)
        XCTAssertNotEqual(refused.process.terminationStatus, 0)
        XCTAssertTrue(refused.log.contains("holds no secret-key: pass the .key_secret file"), refused.log)
    }
}
