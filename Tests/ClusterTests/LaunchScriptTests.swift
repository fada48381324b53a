import Foundation
import XCTest

/// An OpenSSH server on a loopback port, with its own host key and one authorised client key.
final class LoopbackSSHServer {
    let directory: URL
    let port = Harness.freePort()
    private(set) var serverPid: Int32 = 0
    /// An ssh_config naming the test hosts: `alpha` and `beta` reach this server, `closed` a port nobody listens on.
    let clientConfig: URL

    init() throws {
        let sshd = "/usr/sbin/sshd"
        guard FileManager.default.isExecutableFile(atPath: sshd) else {
            throw XCTSkip("no OpenSSH server at \(sshd): scripts/setup.sh installs Debian's openssh-server")
        }
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("ssh-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for key in ["host_key", "client_key"] {
            let made = try runTool("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", directory.appendingPathComponent(key).path])
            XCTAssertEqual(made.status, 0, made.output)
        }
        let path = directory.path
        try FileManager.default.copyItem(atPath: "\(path)/client_key.pub", toPath: "\(path)/authorized_keys")
        // sshd refuses to start without its privilege-separation directory.
        try? FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true)
        try """
            Port \(port)
            ListenAddress 127.0.0.1
            HostKey \(path)/host_key
            AuthorizedKeysFile \(path)/authorized_keys
            PidFile \(path)/sshd.pid
            StrictModes no
            UsePAM no
            PasswordAuthentication no
            PermitRootLogin prohibit-password
            """.write(toFile: "\(path)/sshd_config", atomically: false, encoding: .utf8)
        clientConfig = directory.appendingPathComponent("ssh_config")
        try """
            Host alpha beta
                HostName 127.0.0.1
                Port \(port)
            Host closed
                HostName 127.0.0.1
                Port \(Harness.freePort())
            Host *
                IdentityFile \(path)/client_key
                IdentitiesOnly yes
                StrictHostKeyChecking no
                UserKnownHostsFile /dev/null
                LogLevel ERROR
            """.write(to: clientConfig, atomically: false, encoding: .utf8)
        // sshd daemonises (it closes every inherited descriptor, which a Foundation child must keep):
        // its pid comes from the pid file, its log from -E.
        let started = try runTool(sshd, ["-f", "\(path)/sshd_config", "-E", "\(path)/sshd.log"], timeout: 10)
        let deadline = Date().addingTimeInterval(10)
        let pidFile = "\(path)/sshd.pid"
        while !(serverLog.contains("Server listening") && FileManager.default.fileExists(atPath: pidFile)), Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
        }
        guard started.status == 0, serverLog.contains("Server listening"),
              let pid = Int32((try? String(contentsOfFile: pidFile, encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines) ?? "") else {
            throw XCTSkip("sshd could not run here: \(started.output) \(serverLog)")
        }
        serverPid = pid
    }

    var serverLog: String { (try? String(contentsOfFile: directory.path + "/sshd.log", encoding: .utf8)) ?? "" }

    deinit {
        if serverPid > 0 { kill(serverPid, SIGTERM) }
        try? FileManager.default.removeItem(at: directory)
    }
}

/// scripts/launch-workers.sh against a real sshd and a real coordinator.
final class LaunchScriptTests: XCTestCase {
    let script = Harness.root.appendingPathComponent("scripts/launch-workers.sh").path
    let user = ProcessInfo.processInfo.environment["USER"] ?? NSUserName()

    func launch(_ arguments: [String]) throws -> (status: Int32, output: String) {
        try runTool(script, arguments, timeout: 120)
    }

    func testWorkersStartedOverSSHJoinServeAndStop() throws {
        let ssh = try LoopbackSSHServer()
        let model = Harness.fixture("mixtral")
        let cluster = try LoopbackCluster(model: model, workers: 0, minWorkers: 2, precision: "f32")
        defer { cluster.stop() }
        let hosts = ssh.directory.appendingPathComponent("hosts.txt")
        try """
            # two workers on two "hosts" (one sshd)
            \(user)@alpha ssh-w1 --threads 1 --precision f32
            \(user)@beta ssh-w2 --threads 1 --precision f32   # the second
            """.write(to: hosts, atomically: false, encoding: .utf8)
        let state = ssh.directory.appendingPathComponent("state").path
        let common = ["--hosts", hosts.path, "--ssh-config", ssh.clientConfig.path, "--state-dir", state, "--timeout", "20"]
        let binary = try Harness.binary().path

        let dryRun = try launch(["start"] + common + ["--coordinator", cluster.zmqEndpoint, "--model", model.path,
                                                      "--binary", binary, "--dry-run"])
        XCTAssertEqual(dryRun.status, 0, dryRun.output)
        XCTAssertTrue(dryRun.output.contains("worker --coordinator \(cluster.zmqEndpoint)"), dryRun.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: state), "--dry-run must not touch the hosts")

        let started = try launch(["start"] + common + ["--coordinator", cluster.zmqEndpoint, "--model", model.path, "--binary", binary])
        XCTAssertEqual(started.status, 0, started.output)
        XCTAssertEqual(started.output.components(separatedBy: "started (pid").count - 1, 2, started.output)
        let pids = try ["ssh-w1", "ssh-w2"].map { name in
            try XCTUnwrap(Int32(String(contentsOfFile: "\(state)/\(name).pid", encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)))
        }

        // The ssh sessions are over; the workers outlived them, joined and serve.
        try cluster.waitHealthy()
        let expected = try XCTUnwrap(JSONSerialization.jsonObject(
            with: Data(contentsOf: model.appendingPathComponent("expected.json"))) as? [String: Any])
        let greedy = try XCTUnwrap(expected["greedy_tokens"] as? [Int])
        let (status, body) = Harness.http("POST", cluster.httpURL + "/v1/completions", json: [
            "prompt": try XCTUnwrap(expected["prompt_tokens"] as? [Int]), "max_tokens": greedy.count,
            "temperature": 0, "ignore_eos": true, "return_token_ids": true,
        ])
        XCTAssertEqual(status, 200, "\(body)")
        XCTAssertEqual((body["choices"] as? [[String: Any]])?.first?["token_ids"] as? [Int], greedy)

        let status2 = try launch(["status"] + common + ["--server", cluster.httpURL])
        XCTAssertEqual(status2.status, 0, status2.output)
        XCTAssertEqual(status2.output.components(separatedBy: "coordinator: ready,").count - 1, 2, status2.output)
        let again = try launch(["start"] + common + ["--coordinator", cluster.zmqEndpoint, "--model", model.path, "--binary", binary])
        XCTAssertEqual(again.output.components(separatedBy: "already running").count - 1, 2, again.output)

        let logs = try launch(["logs"] + common + ["--lines", "50"])
        XCTAssertEqual(logs.status, 0, logs.output)
        XCTAssertTrue(logs.output.contains("[worker ssh-w1] connecting to \(cluster.zmqEndpoint)"), logs.output)
        XCTAssertTrue(logs.output.contains("[worker ssh-w2] connecting to \(cluster.zmqEndpoint)"), logs.output)

        let stopped = try launch(["stop"] + common)
        XCTAssertEqual(stopped.status, 0, stopped.output)
        XCTAssertEqual(stopped.output.components(separatedBy: "stopped (pid").count - 1, 2, stopped.output)
        XCTAssertEqual(pids.filter(SpawnedWorkersTests.isAlive), [], "workers left running after stop")
        let after = try launch(["status"] + common)
        XCTAssertEqual(after.status, 1, "status must fail when workers are down: \(after.output)")
        XCTAssertEqual(after.output.components(separatedBy: "not running").count - 1, 2, after.output)
    }

    func testEachHostsProblemIsReportedOnItsOwnLine() throws {
        let ssh = try LoopbackSSHServer()
        let model = Harness.fixture("mixtral")
        // A copy that differs from the reference (one more file), on "beta" through its line's --model.
        let otherCopy = ssh.directory.appendingPathComponent("other-copy")
        try FileManager.default.copyItem(at: model, to: otherCopy)
        try Data("{}".utf8).write(to: otherCopy.appendingPathComponent("extra.json"))
        let hosts = ssh.directory.appendingPathComponent("hosts.txt")
        try """
            \(user)@closed unreachable
            \(user)@beta different-copy --model \(otherCopy.path)
            \(user)@alpha missing-model --model /nonexistent/model
            """.write(to: hosts, atomically: false, encoding: .utf8)
        let common = ["--hosts", hosts.path, "--ssh-config", ssh.clientConfig.path, "--timeout", "20",
                      "--state-dir", ssh.directory.appendingPathComponent("state").path,
                      "--coordinator", "tcp://127.0.0.1:\(Harness.freePort())", "--model", model.path]
        let result = try launch(["start"] + common + ["--binary", try Harness.binary().path])
        XCTAssertEqual(result.status, 1, result.output)
        func line(_ name: String) -> String { result.output.split(separator: "\n").first { $0.hasPrefix(name) }.map(String.init) ?? "" }
        XCTAssertTrue(line("unreachable").contains("unreachable over ssh"), result.output)
        XCTAssertTrue(line("different-copy").contains("differs from the local one"), result.output)
        XCTAssertTrue(line("missing-model").contains("the model directory /nonexistent/model is missing here"), result.output)

        let noBinary = try launch(["start"] + common + ["--binary", "/nonexistent/expertmesh"])
        XCTAssertEqual(noBinary.status, 1)
        XCTAssertTrue(noBinary.output.contains("the binary /nonexistent/expertmesh is missing here"), noBinary.output)

        let usage = try launch(["restart", "--hosts", hosts.path])
        XCTAssertEqual(usage.status, 2)
        XCTAssertTrue(usage.output.contains("unknown action 'restart'"), usage.output)
        let help = try launch(["--help"])
        XCTAssertEqual(help.status, 0)
        XCTAssertTrue(help.output.contains("Examples:"), help.output)
    }
}
