import ArgumentParser
import Foundation
import MeshCoordinator
import MeshModels
import MeshServer
import MeshTensors
import MeshWorker

extension MicroBatchOverlap: ExpressibleByArgument {}

struct Coordinator: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the coordinator: embeddings, attention, router and LM head here; experts on workers.",
        discussion: """
        Waits until --min-workers workers are connected, assigns every expert to --replicas of them \
        (balanced per layer by the load --expert-load measured in earlier runs, and by bytes; printed at
        start), then serves the HTTP API with continuous batching:
        every step carries all running requests' tokens, one exchange per worker per MoE layer.

        Examples:
          expertmesh coordinator --model DIR --listen tcp://0.0.0.0:5555 \\
              --http 0.0.0.0:8080 --min-workers 3 \\
              --curve-secret-key keys/coordinator.key_secret \\
              --authorized-keys keys/workers
          expertmesh coordinator --model DIR --listen tcp://10.0.0.1:5555 \\
              --min-workers 3 --insecure
          expertmesh coordinator --model DIR --listen tcp://127.0.0.1:5555 \\
              --http 127.0.0.1:8080 --wire-dtype bf16
          expertmesh coordinator --model DIR --min-workers 2 --max-running 32 \\
              --kv-cache-memory 4GiB
          expertmesh coordinator --model DIR --min-workers 2 --precision f32 \\
              --dense-dtype int8
          expertmesh coordinator --model models/demo --http 127.0.0.1:8080 \\
              --spawn-workers 3
          expertmesh coordinator --model DIR --min-workers 4 --replicas 2 \\
              --expert-load /var/lib/expertmesh/load.json
          expertmesh coordinator --model DIR --min-workers 8 --replicas 2 \\
              --offload-dense
          expertmesh coordinator --model DIR --min-workers 8 --stages 4 \\
              --stage-listen tcp://10.0.0.1:5556 --insecure
        """)

    @OptionGroup var modelOptions: ModelOptions

    @OptionGroup var serving: ServingArguments

    @OptionGroup var api: APIArguments

    @Option(help: ArgumentHelp("""
        ZeroMQ endpoint workers connect to. An address other hosts can reach needs CURVE keys, or --insecure.
        """, valueName: "tcp://HOST:PORT"))
    var listen = "tcp://127.0.0.1:5555"

    @Option(help: "Workers to wait for before assigning experts. Default: 1, or the number --spawn-workers starts.")
    var minWorkers: Int?

    @Option(help: ArgumentHelp("""
        Place every expert on this many distinct workers. Each exchange sends a token to the least loaded live \
        replica, and work in flight on a worker that is lost goes to another replica: requests complete with the \
        tokens they would have had. Needs at least this many workers.
        """, valueName: "R"))
    var replicas = 1

    @Option(help: ArgumentHelp("""
        Seconds a lost worker may take to come back before its experts are loaded by the surviving workers \
        (from their own model copies), or 'never'. A worker that joins meanwhile takes over a lost one's experts at once.
        """, valueName: "SECONDS|never"))
    var reassignAfter = "10"

    @Flag(help: ArgumentHelp("""
        Run shared experts and dense FFN layers on the workers too: each is cut along its intermediate dimension \
        into slices as wide as one routed expert, placed, replicated and failed over like experts; every token \
        goes to every slice of its layer. The coordinator keeps attention, norms, router and LM head only.
        """))
    var offloadDense = false

    @Option(help: ArgumentHelp("""
        Cut steps in two micro-batches that take turns: while one's tokens are with the workers, the \
        coordinator computes the other's attention, router and shared experts, so network time hides behind \
        compute. It pays with slow links and fine-grained experts (the halves rarely share one); it costs \
        where both halves read the same experts and dense weights twice. on: every step of two rows or more; \
        auto: each kind of step (by size, decode or with prompt rows) is timed both ways and runs the faster, \
        trying the other every 16th step. Results are unchanged either way.
        """, valueName: "off|on|auto"))
    var overlapExchanges = MicroBatchOverlap.off

    @Option(help: ArgumentHelp("""
        Split the layers over this many coordinator hosts (pipeline stages). This one is stage 0: it keeps the API, \
        the tokenizer, the scheduler, embeddings, LM head and the first share of the layers; stages 1…N-1 \
        (`expertmesh stage --stage K/N --join <--stage-listen>`) each hold the attention weights and KV cache of \
        their share and place its experts on their own workers. Requests wait (503) until every stage is ready.
        """, valueName: "N"))
    var stages = 1

    @Option(help: ArgumentHelp("ZeroMQ endpoint later pipeline stages connect to (with --stages).",
                               valueName: "tcp://HOST:PORT"))
    var stageListen = "tcp://127.0.0.1:5556"

    @Option(help: ArgumentHelp("""
        Steps in flight at once with --stages, each over other running requests, so that every stage has one to \
        run (one step at a time leaves all stages but one idle). Default: one per stage.
        """, valueName: "S"))
    var stepsInFlight: Int?

    @Option(help: ArgumentHelp("""
        Micro-batches each step is cut into with --stages, so stages work at once on parts of one step (helps \
        long prompts; decode steps read every weight once per micro-batch). Default: 1.
        """, valueName: "M"))
    var microBatches: Int?

    @Option(help: ArgumentHelp("""
        Seconds a later pipeline stage may take to answer a step before it counts as lost (its requests fail with \
        503; it rejoins when it answers again). A stage whose process or link dies is lost at once.
        """, valueName: "SECONDS"))
    var stageComputeTimeout: Double = 60

    @Option(help: "Seconds a request waits for experts no live worker holds (while they are moved) before it fails with 503.")
    var unservedTimeout: Double = 30

    @Option(help: ArgumentHelp("""
        Seconds of silence after which a worker counts as lost (workers heartbeat every second, also while \
        computing; at least 2). A worker whose connection drops is lost at once.
        """, valueName: "SECONDS"))
    var workerTimeout: Double = 3

    @Option(help: ArgumentHelp("""
        JSON file of the tokens routed to each expert: read at start to place experts by that load (busy experts \
        spread over workers, per layer), written at stop and every 5 minutes with this run's counts added. \
        Created if missing. Moving a lost worker's experts always goes by the load measured while serving.
        """, valueName: "FILE"))
    var expertLoad: String?

    @Option(help: ArgumentHelp("""
        Start this many worker processes on this machine with the coordinator (named local-1 …), and stop them \
        with it: a cluster on one machine for trials. They share the cores (--threads each: all cores divided \
        among them, unless --threads is given) and take --precision and --kernels from here.
        """, valueName: "N"))
    var spawnWorkers = 0

    @OptionGroup var spawnedWeights: ExpertWeightOption

    @OptionGroup var curve: CoordinatorCurveOptions

    @OptionGroup var busyPoll: BusyPollOption

    @OptionGroup var plainTCP: InsecureOption

    @Option(help: ArgumentHelp("""
        Dtype of the activations sent to workers: bf16 (half of f32's bytes; lossless for bf16 weights under \
        --precision bf16, whose kernels round activations to bf16 anyway), f16 or f32 (results identical to one \
        process).
        """, valueName: "bf16|f16|f32"))
    var wireDtype = "bf16"

    @Option(help: ArgumentHelp("Dtype of the partial sums workers return (f32 keeps the combine exact).",
                               valueName: "f32|bf16|f16"))
    var replyDtype = "f32"

    @Option(help: "Seconds to wait for workers at start-up.")
    var startTimeout: Double = 600

    @OptionGroup var compute: ComputeOptions

    @OptionGroup var dense: DenseWeightOption

    @OptionGroup var logs: LogOptions

    func validate() throws {
        if let minWorkers, minWorkers < 1 { throw ValidationError("--min-workers must be at least 1") }
        _ = try plainTCP.check(listen, option: "--listen", keyed: curve.curveSecretKey != nil,
                               role: "can join as a worker and read every activation")
        guard reassignAfter == "never" || (Double(reassignAfter) ?? -1) >= 0 else {
            throw ValidationError("--reassign-after must be a number of seconds or 'never', got '\(reassignAfter)'")
        }
        guard unservedTimeout >= 0 else { throw ValidationError("--unserved-timeout must be at least 0") }
        guard workerTimeout >= 2 else { throw ValidationError("--worker-timeout must be at least 2 seconds (2 heartbeats)") }
        guard replicas >= 1 else { throw ValidationError("--replicas must be at least 1") }
        if replicas > (minWorkers ?? max(1, spawnWorkers)) {
            throw ValidationError("--replicas \(replicas) needs at least \(replicas) workers: raise --min-workers (or --spawn-workers)")
        }
        if spawnWorkers > 0, curve.curveSecretKey != nil {
            throw ValidationError("--spawn-workers starts keyless workers on this machine: it does not combine with CURVE keys")
        }
        guard (0...256).contains(spawnWorkers) else { throw ValidationError("--spawn-workers must be 0 to 256") }
        if spawnedWeights.experts != .file, spawnWorkers == 0 {
            throw ValidationError("--weights-dtype applies to spawned workers only: add --spawn-workers N, or give it to each worker")
        }
        guard DType(name: wireDtype) != nil else { throw ValidationError("--wire-dtype must be f32, bf16 or f16, got '\(wireDtype)'") }
        guard DType(name: replyDtype) != nil else { throw ValidationError("--reply-dtype must be f32, bf16 or f16, got '\(replyDtype)'") }
        guard stages >= 1 else { throw ValidationError("--stages must be at least 1") }
        if let microBatches, microBatches < 1 { throw ValidationError("--micro-batches must be at least 1") }
        if let stepsInFlight, stepsInFlight < 1 { throw ValidationError("--steps-in-flight must be at least 1") }
        guard stageComputeTimeout > 0 else { throw ValidationError("--stage-compute-timeout must be positive") }
        if stages > 1 {
            _ = try plainTCP.check(stageListen, option: "--stage-listen", keyed: curve.curveSecretKey != nil,
                                   role: "can join as a pipeline stage and read every hidden state")
        }
    }

    func run() throws {
        var options = CoordinatorOptions(
            modelDirectory: modelOptions.directory, listen: listen, api: try api.options(),
            minimumWorkers: minWorkers ?? max(1, spawnWorkers), wireDType: DType(name: wireDtype)!,
            replyDType: DType(name: replyDtype)!, startTimeout: startTimeout, serving: serving.options,
            denseFormat: dense.dense)
        options.replicas = replicas
        options.offloadDense = offloadDense
        options.overlapExchanges = overlapExchanges
        options.busyPoll = busyPoll.seconds
        options.stages = stages
        options.stageListen = stageListen
        options.microBatches = microBatches
        options.stepsInFlight = stepsInFlight
        options.stageComputeTimeout = stageComputeTimeout
        options.reassignAfter = Double(reassignAfter)
        options.unservedTimeout = unservedTimeout
        options.workerTimeout = workerTimeout
        options.expertLoadFile = expertLoad.map { URL(fileURLWithPath: $0) }
        let logger = logs.logger("coordinator")
        logger.info("\(compute.apply(decodeDefault: .tiles))")
        if let warning = try? plainTCP.check(listen, option: "--listen", keyed: curve.curveSecretKey != nil,
                                             role: "can join as a worker and read every activation") {
            logger.warning("\(warning)")
        }
        try reportingErrors {
            options.security = try curve.security(logger: logger)
            var spawned: SpawnedWorkers?
            defer { spawned?.stop() }
            try CoordinatorService(options: options, logger: logger).run(listening: { endpoint in
                guard spawnWorkers > 0 else { return }
                spawned = try SpawnedWorkers(count: spawnWorkers, endpoint: endpoint, model: modelOptions.directory,
                                             arguments: spawnedWorkerArguments, logger: logger)
            })
        }
    }

    /// Compute options for spawned workers: this command's, with the cores shared among them.
    private var spawnedWorkerArguments: [String] {
        let threads = compute.threads == nil ? ["--threads", String(max(1, Parallel.coreCount / spawnWorkers))] : []
        return compute.arguments + threads + ["--weights-dtype", spawnedWeights.experts.rawValue] + logs.arguments
    }
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the HTTP API from this process alone, with every expert local.",
        discussion: """
        The same engine as the coordinator (continuous batching, paged KV cache, prefix sharing), \
        for one machine that holds the whole model, and the baseline a cluster is measured against.

        Examples:
          expertmesh serve --model DIR --http 127.0.0.1:8080
          expertmesh serve --model DIR --http 0.0.0.0:8080 --max-batch-tokens 1024 \\
              --kv-cache-memory 8GiB
          expertmesh serve --model DIR --http [::]:8080 --api-key "$KEY" \\
              --served-model-name mixtral
          expertmesh serve --model DIR --weights-dtype int8 --dense-dtype int8 \\
              --threads 8
          curl -s localhost:8080/v1/completions \\
              -d '{"prompt": "Hello", "max_tokens": 16}'
          curl -s localhost:8080/v1/chat/completions \\
              -d '{"messages": [{"role": "user", "content": "Hi"}]}'
        """)

    @OptionGroup var modelOptions: ModelOptions

    @OptionGroup var serving: ServingArguments

    @OptionGroup var api: APIArguments

    @OptionGroup var compute: ComputeOptions

    @OptionGroup var experts: ExpertWeightOption

    @OptionGroup var dense: DenseWeightOption

    @OptionGroup var logs: LogOptions

    func run() throws {
        let options = try api.options()
        let logger = logs.logger("serve")
        logger.info("\(compute.apply(decodeDefault: .tiles))")
        try reportingErrors {
            try ServeService(modelDirectory: modelOptions.directory, weights: WeightFormats(experts: experts.experts, dense: dense.dense),
                             api: options, serving: serving.options, logger: logger).run()
        }
    }
}

struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run an expert-shard worker: holds the experts the coordinator assigns it.",
        discussion: """
        The worker needs its own local copy of the model directory; it reads only the byte ranges of \
        its assigned experts. It reconnects with backoff if the coordinator goes away.

        Examples:
          expertmesh worker --coordinator tcp://10.0.0.1:5555 --model DIR \\
              --name gpu-box-1 --curve-secret-key keys/gpu-box-1.key_secret \\
              --coordinator-key keys/coordinator.key
          expertmesh worker --coordinator tcp://127.0.0.1:5555 --model DIR --threads 2
          expertmesh worker --coordinator tcp://10.0.0.1:5555 --model DIR \\
              --weights-dtype int8 --insecure
          expertmesh worker --coordinator tcp://10.0.0.1:5555 --model DIR \\
              --health 0.0.0.0:8081 --insecure
          expertmesh worker --coordinator tcp://10.0.0.1:5555 \\
              --coordinator tcp://10.0.0.2:5555 --model DIR --insecure
        """)

    @Option(help: ArgumentHelp("""
        The coordinator's ZeroMQ endpoint. Repeat it to serve several coordinators of the same model (each \
        with its own requests and KV cache) from one pool of workers: the worker holds the union of their \
        assignments and answers each on its own connection.
        """, valueName: "tcp://HOST:PORT"))
    var coordinator: [String]

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "Stable worker name (its ZeroMQ routing id). Default: host name and process id.")
    var name: String?

    @OptionGroup var compute: ComputeOptions

    @OptionGroup var weights: ExpertWeightOption

    @Option(help: ArgumentHelp("""
        Serve GET /health (200 once the worker holds its experts and hears its coordinator, or every one of them \
        when --coordinator is repeated; else 503) and \
        GET /health/live (200 unless its serving loop is stuck) on this address, for orchestrators' probes.
        """, valueName: "HOST:PORT"))
    var health: String?

    @OptionGroup var curve: WorkerCurveOptions

    @OptionGroup var busyPoll: BusyPollOption

    @OptionGroup var plainTCP: InsecureOption

    @OptionGroup var logs: LogOptions

    @Option(help: ArgumentHelp("""
        The most expert bytes (as the checkpoint stores them) the coordinator may place here, e.g. 48GiB, \
        including experts moved here from a lost worker. Default: no limit.
        """, valueName: "SIZE"))
    var maxExpertMemory: String?

    @Flag(help: .hidden)
    var exitWithParent = false

    func validate() throws {
        guard !coordinator.isEmpty else {
            throw ValidationError("--coordinator is required: the coordinator's ZeroMQ endpoint")
        }
        for endpoint in coordinator where !(endpoint.hasPrefix("tcp://") || endpoint.hasPrefix("ipc://")) {
            throw ValidationError("--coordinator must be a ZeroMQ endpoint such as tcp://127.0.0.1:5555, got '\(endpoint)'")
        }
        guard Set(coordinator).count == coordinator.count else {
            throw ValidationError("--coordinator names an endpoint twice")
        }
        if let name, name.isEmpty || name.utf8.count > 255 { throw ValidationError("--name must be 1 to 255 bytes") }
        if let health { _ = try parseHostPort(health, option: "--health") }
        if let maxExpertMemory, ServingArguments.bytes(maxExpertMemory) == nil {
            throw ValidationError("--max-expert-memory must be a size such as 48GiB, got '\(maxExpertMemory)'")
        }
        for endpoint in coordinator {
            _ = try plainTCP.check(endpoint, option: "--coordinator", keyed: curve.curveSecretKey != nil,
                                   role: "on the path can read the activations and pose as the coordinator")
        }
    }

    func run() throws {
        let workerName = name ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())"
        let stop = StopSignal()
        // A worker that `coordinator --spawn-workers` started ends with it, even if it was killed outright.
        let parent = getppid()
        let exitWithParent = self.exitWithParent
        let parentGone: @Sendable () -> Bool = { exitWithParent && getppid() != parent }
        let logger = logs.logger("worker \(workerName)")
        logger.info("\(compute.apply())")
        for endpoint in coordinator {
            if let warning = try? plainTCP.check(endpoint, option: "--coordinator", keyed: curve.curveSecretKey != nil,
                                                 role: "on the path can read the activations and pose as the coordinator") {
                logger.warning("\(warning)")
            }
        }
        try reportingErrors {
            var options = WorkerOptions(coordinators: coordinator, modelDirectory: modelOptions.directory, name: workerName,
                                        expertFormat: weights.experts)
            options.curve = try curve.curve()
            options.capacityBytes = maxExpertMemory.flatMap { ServingArguments.bytes($0) }.map { UInt64($0) } ?? 0
            options.busyPoll = busyPoll.seconds
            let worker = try Worker(options: options, logger: logger)
            if let health {
                let (host, port) = try parseHostPort(health, option: "--health")
                let bound = try HealthEndpoint(host: host, port: port, logger: logger,
                                               report: worker.health.report(name: workerName)).start()
                logger.info("health on http://\(host.contains(":") ? "[\(host)]" : host):\(bound)/health and /health/live")
            }
            try worker.run { stop.isStopped || parentGone() }
        }
    }
}
