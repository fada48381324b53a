import ArgumentParser
import Foundation
import MeshCoordinator
import MeshTensors
import MeshWorker

struct Coordinator: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the coordinator: embeddings, attention, router and LM head here; experts on workers.",
        discussion: """
        Waits until --min-workers workers are connected, assigns every expert to exactly one of them
        (balanced by bytes, printed at start), then serves the HTTP API.

        Examples:
          expertmesh coordinator --model DIR --listen tcp://0.0.0.0:5555 --http 0.0.0.0:8080 --min-workers 3
          expertmesh coordinator --model DIR --listen tcp://127.0.0.1:5555 --http 127.0.0.1:8080 --wire-dtype bf16
        """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "ZeroMQ endpoint workers connect to.")
    var listen = "tcp://0.0.0.0:5555"

    @Option(help: "HOST:PORT of the HTTP API.")
    var http = "127.0.0.1:8080"

    @Option(help: "Workers to wait for before assigning experts.")
    var minWorkers = 1

    @Option(help: "Activation dtype on the wire: f32, bf16 or f16.")
    var wireDtype = "f32"

    @Option(help: "Seconds to wait for workers at start-up.")
    var startTimeout: Double = 600

    func validate() throws {
        guard minWorkers >= 1 else { throw ValidationError("--min-workers must be at least 1") }
        guard DType(name: wireDtype) != nil else { throw ValidationError("--wire-dtype must be f32, bf16 or f16, got '\(wireDtype)'") }
        guard http.split(separator: ":").count == 2, Int(http.split(separator: ":")[1]) != nil else {
            throw ValidationError("--http must be HOST:PORT, e.g. 127.0.0.1:8080")
        }
    }

    func run() throws {
        let parts = http.split(separator: ":")
        let options = CoordinatorOptions(
            modelDirectory: modelOptions.directory, listen: listen, httpHost: String(parts[0]), httpPort: Int(parts[1])!,
            minimumWorkers: minWorkers, wireDType: DType(name: wireDtype)!, startTimeout: startTimeout)
        let stop = StopSignal()
        try reportingErrors {
            try CoordinatorService(options: options, log: logLine("coordinator")).run { stop.isStopped }
        }
    }
}

struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run an expert-shard worker: holds the experts the coordinator assigns it.",
        discussion: """
        The worker needs its own local copy of the model directory; it reads only the byte ranges of
        its assigned experts. It reconnects with backoff if the coordinator goes away.

        Examples:
          expertmesh worker --coordinator tcp://10.0.0.1:5555 --model DIR --name gpu-box-1
          expertmesh worker --coordinator tcp://127.0.0.1:5555 --model DIR --threads 2
        """)

    @Option(help: "The coordinator's ZeroMQ endpoint.")
    var coordinator: String

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "Stable worker name (its ZeroMQ routing id). Default: host name and process id.")
    var name: String?

    @Option(help: "Compute threads (OpenBLAS and kernels). Default: all cores.")
    var threads: Int?

    func validate() throws {
        guard coordinator.hasPrefix("tcp://") || coordinator.hasPrefix("ipc://") else {
            throw ValidationError("--coordinator must be a ZeroMQ endpoint such as tcp://127.0.0.1:5555")
        }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if let name, name.isEmpty || name.utf8.count > 255 { throw ValidationError("--name must be 1 to 255 bytes") }
    }

    func run() throws {
        if let threads { Parallel.setThreadCount(threads) }
        let workerName = name ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())"
        let stop = StopSignal()
        try reportingErrors {
            let worker = try Worker(options: WorkerOptions(coordinator: coordinator, modelDirectory: modelOptions.directory, name: workerName),
                                    log: logLine("worker \(workerName)"))
            try worker.run { stop.isStopped }
        }
    }
}
