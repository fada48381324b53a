import ArgumentParser
import Foundation
import MeshCoordinator
import MeshModels
import MeshTensors
import MeshTransport

struct StageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stage",
        abstract: "Run a later pipeline stage: a share of the layers' attention, KV cache and experts, for stage 0.",
        discussion: """
        With `expertmesh coordinator --stages N`, the layers are split over N coordinator hosts. Stage 0 (the \
        coordinator) keeps the API and the scheduler; this command runs stage K (1 ≤ K < N): it holds the attention \
        weights and KV cache of its share of the layers, places their experts on its own workers (they connect to \
        --listen), joins stage 0 at --join, and runs every micro-batch of hidden states it is sent through its layers. \
        It needs its own copy of the model directory (it reads only its layers). If stage 0 goes away it reconnects; \
        while it is gone, stage 0 refuses requests with 503.

        Examples:
          expertmesh stage --model DIR --stage 1/4 --join tcp://10.0.0.1:5556 \\
              --listen tcp://10.0.0.2:5555 --min-workers 8 --insecure
          expertmesh stage --model DIR --stage 1/2 --join tcp://127.0.0.1:5556 \\
              --listen tcp://127.0.0.1:5565 --spawn-workers 2
          expertmesh stage --model DIR --stage 3/4 --join tcp://10.0.0.1:5556 \\
              --listen tcp://10.0.0.4:5555 --curve-secret-key keys/stage3.key_secret \\
              --authorized-keys keys/workers --coordinator-key keys/coordinator.key
        """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: ArgumentHelp("This stage and the pipeline's length, as K/N with 1 ≤ K < N.", valueName: "K/N"))
    var stage: String

    @Option(help: ArgumentHelp("Stage 0's --stage-listen endpoint.", valueName: "tcp://HOST:PORT"))
    var join: String

    @Option(help: ArgumentHelp("ZeroMQ endpoint this stage's workers connect to.", valueName: "tcp://HOST:PORT"))
    var listen = "tcp://127.0.0.1:5565"

    @Option(help: "Name stage 0 knows this stage by (logs, /health). Default: host name and process id.")
    var name: String?

    @Option(help: "Workers to wait for before assigning this stage's experts. Default: 1, or --spawn-workers.")
    var minWorkers: Int?

    @Option(help: ArgumentHelp("Place every expert of this stage on this many distinct workers.", valueName: "R"))
    var replicas = 1

    @Flag(help: "Run this stage's shared experts and dense FFN layers on its workers, as slices (see coordinator --help).")
    var offloadDense = false

    @Option(help: ArgumentHelp("""
        Run micro-batches as two that take turns, one computing while the other's tokens are with the workers \
        (see coordinator --help).
        """, valueName: "off|on|auto"))
    var overlapExchanges = MicroBatchOverlap.off

    @Option(help: ArgumentHelp("""
        Start this many worker processes on this machine with the stage, for trials (see coordinator --help).
        """, valueName: "N"))
    var spawnWorkers = 0

    @OptionGroup var spawnedWeights: ExpertWeightOption

    @OptionGroup var curve: CoordinatorCurveOptions

    @OptionGroup var busyPoll: BusyPollOption

    @Option(help: ArgumentHelp("Stage 0's public key file: CURVE to stage 0 with this stage's --curve-secret-key.",
                               valueName: "FILE"))
    var coordinatorKey: String?

    @OptionGroup var plainTCP: InsecureOption

    @Option(help: ArgumentHelp("Dtype of the activations sent to this stage's workers.", valueName: "bf16|f16|f32"))
    var wireDtype = "bf16"

    @Option(help: ArgumentHelp("Dtype of the partial sums its workers return.", valueName: "f32|bf16|f16"))
    var replyDtype = "f32"

    @Option(help: "Seconds to wait for workers at start-up.")
    var startTimeout: Double = 600

    @OptionGroup var compute: ComputeOptions

    @OptionGroup var dense: DenseWeightOption

    @OptionGroup var logs: LogOptions

    /// K and N of --stage.
    private var position: (index: Int, count: Int)? {
        let parts = stage.split(separator: "/").map { Int($0) }
        guard parts.count == 2, let index = parts[0], let count = parts[1], index >= 1, index < count else { return nil }
        return (index, count)
    }

    func validate() throws {
        guard position != nil else {
            throw ValidationError("--stage must be K/N with 1 ≤ K < N (stage 0 is the coordinator), got '\(stage)'")
        }
        if let minWorkers, minWorkers < 1 { throw ValidationError("--min-workers must be at least 1") }
        guard (0...256).contains(spawnWorkers) else { throw ValidationError("--spawn-workers must be 0 to 256") }
        guard replicas >= 1, replicas <= (minWorkers ?? max(1, spawnWorkers)) else {
            throw ValidationError("--replicas \(replicas) needs at least \(replicas) workers: raise --min-workers (or --spawn-workers)")
        }
        if spawnWorkers > 0, curve.curveSecretKey != nil {
            throw ValidationError("--spawn-workers starts keyless workers on this machine: it does not combine with CURVE keys")
        }
        guard (coordinatorKey == nil) == (curve.curveSecretKey == nil) else {
            throw ValidationError("--coordinator-key goes with --curve-secret-key and --authorized-keys: give all three, or none")
        }
        _ = try plainTCP.check(listen, option: "--listen", keyed: curve.curveSecretKey != nil,
                               role: "can join as a worker and read every activation")
        _ = try plainTCP.check(join, option: "--join", keyed: coordinatorKey != nil,
                               role: "on the path can read the hidden states and pose as stage 0")
        guard DType(name: wireDtype) != nil else { throw ValidationError("--wire-dtype must be f32, bf16 or f16, got '\(wireDtype)'") }
        guard DType(name: replyDtype) != nil else { throw ValidationError("--reply-dtype must be f32, bf16 or f16, got '\(replyDtype)'") }
    }

    func run() throws {
        let (index, count) = position!
        let stageName = name ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())"
        let stop = StopSignal()
        let logger = logs.logger("stage \(index)/\(count)")
        logger.info("\(compute.apply(decodeDefault: .tiles))")
        try reportingErrors {
            var options = StageOptions(modelDirectory: modelOptions.directory, join: join, stage: index, stageCount: count,
                                       name: stageName, listen: listen)
            options.minimumWorkers = minWorkers ?? max(1, spawnWorkers)
            options.replicas = replicas
            options.offloadDense = offloadDense
            options.overlapExchanges = overlapExchanges
            options.busyPoll = busyPoll.seconds
            options.wireDType = DType(name: wireDtype)!
            options.replyDType = DType(name: replyDtype)!
            options.denseFormat = dense.dense
            options.startTimeout = startTimeout
            options.security = try curve.security(logger: logger)
            options.coordinatorKey = try coordinatorKey.map { try CurveCertificate.read($0).publicKey }
            var spawned: SpawnedWorkers?
            defer { spawned?.stop() }
            try StageService(options: options, logger: logger).run(listening: { endpoint in
                guard spawnWorkers > 0 else { return }
                let threads = compute.threads == nil ? ["--threads", String(max(1, Parallel.coreCount / spawnWorkers))] : []
                spawned = try SpawnedWorkers(count: spawnWorkers, endpoint: endpoint, model: modelOptions.directory,
                                             arguments: compute.arguments + threads
                                                + ["--weights-dtype", spawnedWeights.experts.rawValue] + logs.arguments,
                                             logger: logger)
            }, shouldStop: { stop.isStopped })
        }
    }
}
