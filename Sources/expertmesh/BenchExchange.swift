import ArgumentParser
import Foundation
import MeshCoordinator
import MeshEngine
import MeshModels
import MeshTensors
import MeshTransport

struct BenchExchange: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-exchange",
        abstract: "Measure the per-MoE-layer cluster exchange on loopback beside a raw ZeroMQ round trip of the same bytes.",
        discussion: """
        Starts --workers worker processes on loopback, then times dispatch + combine of one MoE layer for \
        each token count. Exchange overhead = total − the busiest worker's compute time (reported by the \
        worker); it is compared with a raw ROUTER/DEALER round trip moving the same request and reply \
        bytes to the same number of echo peers, measured in the same run. Each line also counts the \
        threads woken per exchange (voluntary context switches of every thread) in this process and in \
        each worker, and the same for the raw round trip. Finally it decodes with the cluster and with \
        the single-process engine on the same model, alternating three times.

        Examples:
          expertmesh bench-exchange --model bench-models/mixtral-1b-bf16
          expertmesh bench-exchange --model DIR --workers 3 --tokens 1,256 \\
              --repeats 100 --wire-dtype bf16
          expertmesh bench-exchange --model DIR --workers 1 --threads 1 \\
              --worker-threads 1 --busy-poll 2000
        """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "Worker processes to start.")
    var workers = 2

    @Option(help: "Comma-separated token counts per exchange.")
    var tokens = "1,256"

    @Option(help: ArgumentHelp("""
        Compute threads per worker. Default: all cores: a decode token's experts often sit on one worker \
        while the others wait, so sharing the cores out (cores ÷ workers) made cluster decode 0.65× one \
        process here, where all cores gave 0.84×.
        """))
    var workerThreads: Int?

    @Option(help: "Timed repetitions per measurement (the median is reported).")
    var repeats = 50

    @Option(help: "Activation dtype on the wire: bf16 (the coordinator's default), f16 or f32.")
    var wireDtype = "bf16"

    @OptionGroup var compute: ComputeOptions

    @OptionGroup var busyPoll: BusyPollOption

    @OptionGroup var logs: LogOptions

    @Option(help: "Tokens to decode for the cluster vs single-process comparison (0 skips it).")
    var decodeTokens = 32

    func validate() throws {
        guard workers >= 1, repeats >= 1, decodeTokens >= 0 else { throw ValidationError("--workers and --repeats must be ≥ 1, --decode-tokens ≥ 0") }
        guard DType(name: wireDtype) != nil else { throw ValidationError("--wire-dtype must be f32, bf16 or f16") }
        _ = try parseTokenList(tokens, option: "--tokens")
    }

    func run() throws {
        try reportingErrors {
            printError(compute.apply())
            let counts = try parseTokenList(tokens, option: "--tokens")
            // Dense weights held as the coordinator holds them (copied at load), for the decode comparison.
            let model = try LoadedModel(directory: modelOptions.directory, denseFormat: .file)
            guard let layer = model.spec.moeLayerIndices.first, let moe = model.spec.layers[layer].moe else {
                throw CommandError("\(modelOptions.model) has no MoE layer: bench-exchange needs a MoE model")
            }
            let cluster = try Cluster(model: model, listen: "tcp://127.0.0.1:*", wireDType: DType(name: wireDtype)!,
                                      logger: logs.logger("bench-exchange"))
            let binary = Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments[0])
            var children: [Process] = []
            defer { children.forEach { $0.terminate(); $0.waitUntilExit() } }
            for index in 0..<workers {
                let child = Process()
                child.executableURL = binary
                let threads = workerThreads ?? Parallel.coreCount
                child.arguments = ["worker", "--coordinator", cluster.endpoint, "--model", modelOptions.model, "--name", "bench-\(index)",
                                   "--threads", String(threads), "--precision", compute.precision.rawValue,
                                   "--busy-poll", String(busyPoll.busyPoll)]
                    + (compute.kernels.map { ["--kernels", $0.argumentName] } ?? [])
                child.standardError = FileHandle.nullDevice
                try child.run()
                children.append(child)
            }
            cluster.busyPoll = busyPoll.seconds
            try cluster.start(minimumWorkers: workers, timeout: 300, progress: { printError("  \($0)") })
            let backend = RemoteExpertBackend(cluster: cluster)
            var random = SeededGenerator(seed: 3)
            print("per-layer exchange, layer \(layer), \(workers) workers, wire \(wireDtype), median of \(repeats):")
            print("tokens  total ms  (dispatch ms)  worker compute ms  exchange ms  raw zmq ms  exchange/raw"
                  + "  wake-ups: coordinator, workers (raw: router, peers)")
            let workerIds = children.map(\.processIdentifier)
            for count in counts {
                let input = Matrix(rows: count, columns: model.spec.hiddenSize,
                                   values: (0..<(count * model.spec.hiddenSize)).map { _ in Float(random.next() % 2000) / 1000 - 1 })
                let routes = (0..<count).map { _ -> TokenRoute in
                    var experts: [Int] = []
                    while experts.count < moe.topK {
                        let e = Int(random.next() % UInt64(moe.expertCount))
                        if !experts.contains(e) { experts.append(e) }
                    }
                    return TokenRoute(experts: experts, weights: experts.map { _ in 1 / Float(moe.topK) })
                }
                let request = ExpertRequest(layer: layer, input: input, routes: routes, placement: moe.weightPlacement)
                let output = Matrix(rows: count, columns: model.spec.hiddenSize)
                var totals: [Double] = [], computes: [Double] = [], dispatches: [Double] = []
                var wakeups = ThreadWakeups([getpid()] + workerIds)
                for round in 0..<(repeats + 3) {
                    if round == 3 { wakeups.restart() }
                    let start = ContinuousClock.now
                    let handle = try backend.dispatch(request)
                    let sent = ContinuousClock.now
                    try backend.combine(handle, into: output)
                    if round >= 3 {
                        totals.append((ContinuousClock.now - start).seconds)
                        dispatches.append((sent - start).seconds)
                        computes.append(backend.lastExchange.maxWorkerComputeSeconds)
                    }
                }
                let woken = wakeups.perRound(repeats)
                let raw = try RawRoundTrip.measure(requests: backend.lastExchange.requestBytes,
                                                   replies: backend.lastExchange.replyBytes, repeats: repeats)
                let total = median(totals), compute = median(computes)
                let exchange = median(zip(totals, computes).map { $0 - $1 })
                print(String(format: "%6ld  %8.3f  %13.3f  %17.3f  %11.3f  %10.3f  %12.2f", count, total * 1e3, median(dispatches) * 1e3,
                             compute * 1e3, exchange * 1e3, raw.seconds * 1e3, exchange / raw.seconds)
                      + "  \(Self.wakeupList(woken)) (raw: \(Self.wakeupList(raw.wakeups)))")
            }
            if decodeTokens > 0 {
                let prompt = (0..<8).map { _ in Int(random.next() % UInt64(model.spec.vocabSize)) }
                let request = GenerationRequest(prompt: prompt, maxTokens: decodeTokens + 1)
                let cluster = Generator(Transformer(spec: model.spec, weights: model.dense, backend: backend))
                let local = try LocalEngine(directory: modelOptions.directory).generator
                let rate = { (r: GenerationResult) in Double(r.tokens.count - 1) / r.decodeSeconds }
                // Alternated, so both see the same machine: the median of each and of the runs' ratios.
                var runs: [(cluster: Double, local: Double)] = []
                var same = true
                for _ in 0..<3 {
                    let (fromCluster, fromLocal) = (try cluster.generate(request), try local.generate(request))
                    same = same && fromCluster.tokens == fromLocal.tokens
                    runs.append((rate(fromCluster), rate(fromLocal)))
                }
                print(String(format: "decode, 3 alternations: cluster %.1f tok/s, single process %.1f tok/s, cluster ÷ single %.2f "
                             + "(medians; same tokens: %@)", median(runs.map(\.cluster)), median(runs.map(\.local)),
                             median(runs.map { $0.cluster / $0.local }), same ? "yes" : "no"))
            }
        }
    }

    private func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

    /// "1.0, 3.0 + 2.9": this process's wake-ups per exchange, then each peer process's.
    static func wakeupList(_ perProcess: [Double]) -> String {
        let each = perProcess.map { String(format: "%.1f", $0) }
        return (each.first ?? "") + ", " + each.dropFirst().joined(separator: " + ")
    }
}

/// The floor for an exchange: ROUTER → N echo peers (separate processes, like workers) and
/// back with the same byte counts, no protobuf and no compute.
enum RawRoundTrip {
    /// The median round trip, and the wake-ups per round trip of this process and of each peer.
    static func measure(requests: [Int], replies: [Int], repeats: Int) throws -> (seconds: Double, wakeups: [Double]) {
        let context = ZMQContext()
        let router = try ZMQSocket(context: context, kind: .router)
        try router.bind("tcp://127.0.0.1:*")
        let binary = Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments[0])
        var peers: [Process] = []
        defer { peers.forEach { $0.terminate(); $0.waitUntilExit() } }
        for (index, replySize) in replies.enumerated() {
            let peer = Process()
            peer.executableURL = binary
            peer.arguments = ["bench-echo", "--connect", router.lastEndpoint, "--name", "echo-\(index)", "--reply-bytes", String(replySize)]
            try peer.run()
            peers.append(peer)
        }
        var identities: [Data] = []
        while identities.count < replies.count {
            guard let message = try router.receive(timeoutMilliseconds: 10_000) else { throw CommandError("echo peers did not connect within 10 s") }
            identities.append(message[0])
        }
        identities.sort { String(decoding: $0, as: UTF8.self) < String(decoding: $1, as: UTF8.self) }
        let payloads = requests.map { Data(count: $0) }
        var times: [Double] = []
        var wakeups = ThreadWakeups([getpid()] + peers.map(\.processIdentifier))
        for round in 0..<(repeats + 3) {
            if round == 3 { wakeups.restart() }
            let start = ContinuousClock.now
            for (identity, payload) in zip(identities, payloads) { try router.send([identity, Data(count: 64), payload]) }
            for _ in identities { _ = try router.receive() }
            if round >= 3 { times.append((ContinuousClock.now - start).seconds) }
        }
        let woken = wakeups.perRound(repeats)
        for identity in identities { try router.send([identity, Data()]) }
        router.close()
        return (times.sorted()[times.count / 2], woken)
    }
}

/// The echo peer of `bench-exchange`'s raw round trip (internal; not listed in --help).
struct BenchEcho: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-echo", abstract: "Echo peer for bench-exchange's raw ZeroMQ round trip.",
        discussion: "Examples:\n  expertmesh bench-echo --connect tcp://127.0.0.1:5555 --name echo-0 --reply-bytes 4096",
        shouldDisplay: false)

    @Option(help: "ROUTER endpoint to connect to.")
    var connect: String

    @Option(help: "Routing id.")
    var name: String

    @Option(help: "Bytes of each reply's payload frame.")
    var replyBytes: Int

    func run() throws {
        let context = ZMQContext()
        let dealer = try ZMQSocket(context: context, kind: .dealer)
        try dealer.setRoutingId(Array(name.utf8))
        try dealer.connect(connect)
        try dealer.send([Data("hello".utf8)])
        let payload = Data(count: max(0, replyBytes))
        // A message of several frames is a request; a single empty frame ends the run.
        while let message = try dealer.receive(timeoutMilliseconds: 30_000), message.count > 1 {
            try dealer.send([Data(count: 16), payload])
        }
        dealer.close()
    }
}
