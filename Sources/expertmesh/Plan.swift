import ArgumentParser
import Foundation
import MeshModels
import MeshTensors

struct Plan: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Size a cluster from a config.json alone: parameters, memory per host, workers needed, network.",
        discussion: """
        Reads only config.json (no weights), so it works before downloading a checkpoint, for every \
        supported model_type (DeepSeek-V3, GLM-4.5, DBRX, Qwen, Llama 4, Mixtral, …). Workers hold the routed experts \
        (--replicas copies of each); the coordinator everything else plus the KV cache for --context \
        positions of --concurrency sequences. The wire figures are for one decode step; the bandwidth at \
        which the exchange would take as long as the computation assumes memory-bound decoding at \
        --memory-bandwidth on every host (measure yours with `expertmesh bench`). \
        With --stages N the layers are split over N coordinator hosts (`coordinator --stages N` and \
        `expertmesh stage`): each stage host's memory is shown, and hidden states between stages. \
        Given --coordinator-memory and --worker-memory, it proposes the smallest layout that fits them \
        (--offload-dense only if the coordinator needs it, then the fewest pipeline stages, and the \
        fewest workers). \
        The first line keeps its form: "<type>: <total>B parameters, <active>B active per token, …".

        Examples:
          expertmesh plan --config Tests/Fixtures/configs/mixtral-8x22b.json \\
              --workers 4
          expertmesh plan --model /models/deepseek-v3 --worker-memory 256GiB \\
              --dtype int8 --replicas 2
          expertmesh plan --config Tests/Fixtures/configs/deepseek-v3.json \\
              --workers 16 --offload-dense
          expertmesh plan --config Tests/Fixtures/configs/llama4-maverick.json \\
              --worker-memory 64GiB \\
              --coordinator-memory 128GiB --context 32768 --concurrency 16 --json
          expertmesh plan \\
              --config Tests/Fixtures/configs/llama4-behemoth-assumed.json \\
              --coordinator-memory 256GB \\
              --worker-memory 128GB --context 8192 --concurrency 16
          expertmesh plan \\
              --config Tests/Fixtures/configs/llama4-behemoth-assumed.json \\
              --stages 4 --offload-dense --workers 32
        """)

    @Option(help: "A model's config.json (or a model directory).")
    var config: String?

    @Option(help: "A model directory (its config.json is read).")
    var model: String?

    @Option(help: "Weight dtype: bf16, f16, f32 or int8 (Q8_0: 34 bytes per 32 weights).")
    var dtype = "bf16"

    @Option(help: "Number of workers to split the experts over.")
    var workers: Int?

    @Option(help: ArgumentHelp("Memory per worker for experts, e.g. 64GiB: prints the fewest workers that hold them.",
                               valueName: "SIZE"))
    var workerMemory: String?

    @Option(help: ArgumentHelp("The coordinator's memory, e.g. 128GiB: says whether its weights and KV cache fit.",
                               valueName: "SIZE"))
    var coordinatorMemory: String?

    @Option(help: "Positions per sequence the KV cache must hold.")
    var context = 32768

    @Option(help: "Sequences served at once (KV cache, and tokens per step on the wire).")
    var concurrency = 1

    @Option(help: "Workers holding each expert.")
    var replicas = 1

    @Option(help: ArgumentHelp("Read bandwidth of each host in GB/s, for the network bandwidth figure.",
                               valueName: "GB/s"))
    var memoryBandwidth: Double = 100

    @Flag(help: "Shared experts and dense FFN layers on the workers too, as `coordinator --offload-dense` places them.")
    var offloadDense = false

    @Option(help: ArgumentHelp("Pipeline stages: coordinator hosts the layers are split over.", valueName: "N"))
    var stages = 1

    @Flag(help: "Print one JSON object.")
    var json = false

    func validate() throws {
        guard (config == nil) != (model == nil) else { throw ValidationError("give --config FILE or --model DIR (one of them)") }
        guard Self.bytesPerWeight(dtype) != nil else { throw ValidationError("--dtype must be bf16, f16, f32 or int8") }
        if let workers, workers < 1 { throw ValidationError("--workers must be at least 1") }
        for (name, value) in [("--worker-memory", workerMemory), ("--coordinator-memory", coordinatorMemory)] {
            if let value, ServingArguments.bytes(value) == nil {
                throw ValidationError("\(name) must be a size such as 64GiB, got '\(value)'")
            }
        }
        guard context >= 1, concurrency >= 1 else { throw ValidationError("--context and --concurrency must be at least 1") }
        guard replicas >= 1 else { throw ValidationError("--replicas must be at least 1") }
        if let workers, replicas > workers { throw ValidationError("--replicas \(replicas) needs at least \(replicas) --workers") }
        guard memoryBandwidth > 0 else { throw ValidationError("--memory-bandwidth must be positive") }
        guard stages >= 1 else { throw ValidationError("--stages must be at least 1") }
    }

    static func bytesPerWeight(_ dtype: String) -> Double? {
        if dtype == "int8" { return 34.0 / 32 }
        return DType(name: dtype).map { Double($0.byteSize) }
    }

    func run() throws {
        try reportingErrors {
            var url = URL(fileURLWithPath: config ?? model!)
            if model != nil || url.hasDirectoryPath || !url.lastPathComponent.hasSuffix(".json") {
                url.appendPathComponent("config.json")
            }
            let report = CapacityPlan(shape: try ModelShape.read(configFile: url), bytesPerWeight: Self.bytesPerWeight(dtype)!,
                                      workers: workers, workerMemory: workerMemory.flatMap(ServingArguments.bytes),
                                      coordinatorMemory: coordinatorMemory.flatMap(ServingArguments.bytes),
                                      context: context, concurrency: concurrency, replicas: replicas,
                                      memoryBandwidth: memoryBandwidth * 1e9, offloadDense: offloadDense, stages: stages)
            _ = try report.stageLayers
            if json {
                var object = report.json
                object["dtype"] = dtype
                print(jsonText(object))
            } else {
                print(report.text(dtype: dtype), terminator: "")
            }
        }
    }
}

/// The arithmetic of `expertmesh plan`: memory per host and bytes per step for a layout.
struct CapacityPlan {
    let shape: ModelShape
    let bytesPerWeight: Double
    let workers: Int?
    let workerMemory: Int?
    let coordinatorMemory: Int?
    let context: Int
    let concurrency: Int
    let replicas: Int
    let memoryBandwidth: Double
    /// Shared experts and dense FFN layers on the workers (`--offload-dense`).
    var offloadDense = false
    /// Coordinator hosts the layers are split over (`coordinator --stages`).
    var stages = 1
    /// Activations go out in bf16 and partial sums come back in f32 (the coordinator's defaults).
    static let wireBytes = 2.0, replyBytes = 4.0
    /// The engine keeps keys and values in f32.
    static let kvBytes = 4.0

    var count: ParameterCount { shape.parameterCount }
    /// Dense FFN and shared-expert parameters on the workers (`--offload-dense`), else 0.
    var offloadedParameters: Int { offloadDense ? shape.offloadableParameters : 0 }
    var coordinatorWeightBytes: Double { Double(count.total - count.routedExperts - offloadedParameters) * bytesPerWeight }
    var kvCacheBytes: Double { Double(shape.kvValues(context: context) * concurrency) * Self.kvBytes }
    /// The largest coordinator host's weights and KV cache (the only one without stages).
    var coordinatorBytes: Double { stageBytes.max() ?? 0 }

    /// The layers of each pipeline stage (as `coordinator --stages` splits them).
    var stageLayers: [Range<Int>] {
        get throws { try ModelSpec.stageLayers(layerCount: shape.layers.count, stages: stages) }
    }

    /// Each stage host's non-expert weights: its layers' attention, norms, router and (unless
    /// offloaded) dense FFN or shared experts; stage 0 also embeddings, LM head and final norm.
    var stageWeightBytes: [Double] {
        let shares = (try? stageLayers) ?? [shape.layers.indices]
        return shares.enumerated().map { stage, layers in
            let parameters = shape.layers[layers].reduce(stage == 0 ? shape.outerParameters : 0) { sum, layer in
                let offloaded = offloadDense && shape.denseSlicing != nil ? 3 * shape.hiddenSize * layer.denseIntermediate : 0
                return sum + layer.attention + layer.norms + layer.router + layer.dense - offloaded
            }
            return Double(parameters) * bytesPerWeight
        }
    }

    /// Each stage host's KV cache for `context` positions of `concurrency` sequences.
    var stageKVCacheBytes: [Double] {
        ((try? stageLayers) ?? [shape.layers.indices]).map {
            Double(shape.kvValues(context: context, layers: $0) * concurrency) * Self.kvBytes
        }
    }

    var stageBytes: [Double] { zip(stageWeightBytes, stageKVCacheBytes).map { $0 + $1 } }

    /// Hidden states a decode step moves between stages: each of the later stages gets them from
    /// stage 0 and returns them (f32, `concurrency` tokens).
    var stageHiddenBytesPerStep: Double {
        Double(2 * (stages - 1) * concurrency * shape.hiddenSize) * 4
    }
    /// Routed experts, and the dense slices when offloaded: what the workers hold once.
    var expertBytes: Double { Double(count.routedExperts + offloadedParameters) * bytesPerWeight }
    var placedExpertBytes: Double { expertBytes * Double(replicas) }
    /// The fewest workers whose memory holds every expert `replicas` times (and at least `replicas`).
    var workersNeeded: Int? {
        workerMemory.map { max(replicas, Int((placedExpertBytes / Double($0)).rounded(.up))) }
    }
    /// Workers the wire figures assume: as given, else the fewest that fit, else as many as top-k.
    var workerCount: Int { workers ?? workersNeeded ?? max(replicas, shape.layers.map(\.topK).max() ?? 1) }

    /// The dense slices of `layer` on the workers (0 unless `--offload-dense`).
    func offloadedSlices(_ layer: ModelShape.Layer) -> Int { offloadDense ? shape.denseSlices(layer) : 0 }

    /// Layers with an exchange: MoE layers, and with `--offload-dense` dense FFN layers too.
    var exchangeLayers: [ModelShape.Layer] { shape.layers.filter { $0.experts > 0 || offloadedSlices($0) > 0 } }

    /// One decode step of `concurrency` tokens: bytes on the wire over all exchange layers. A token
    /// goes once to each worker holding one of its experts or slices (at most top-k + slices, at
    /// most the workers), with their ids and weights, and a partial sum comes back from each.
    var wireBytesPerStep: Double {
        exchangeLayers.reduce(0.0) { sum, layer in
            let routed = layer.topK + offloadedSlices(layer)
            let destinations = Double(min(routed, workerCount))
            let perToken = destinations * Double(shape.hiddenSize) * (Self.wireBytes + Self.replyBytes) + Double(routed) * 8
            return sum + perToken * Double(concurrency)
        }
    }

    var wireBytesPerTokenPerLayer: Double {
        exchangeLayers.isEmpty ? 0 : wireBytesPerStep / Double(exchangeLayers.count * concurrency)
    }

    /// Seconds a memory-bound decode step computes: the coordinator reads its weights and the KV
    /// cache; each exchange layer's busiest worker reads the experts its tokens use (spread evenly), or
    /// its share of the dense slices (`--offload-dense`), whichever is more.
    var computeSecondsPerStep: Double {
        let coordinator = (coordinatorWeightBytes + kvCacheBytes) / memoryBandwidth
        let experts = exchangeLayers.reduce(0.0) { sum, layer in
            let touched = Double(min(layer.experts, layer.topK * concurrency))
            let perWorker = layer.experts == 0 ? 0 : (touched / Double(min(workerCount, layer.experts))).rounded(.up)
            // Every slice is read every step, spread over the workers.
            let slices = offloadedSlices(layer)
            let sliceBytes = slices == 0 ? 0 : Double(3 * shape.hiddenSize * layer.denseIntermediate) * bytesPerWeight
                * (Double(slices) / Double(min(workerCount, slices))).rounded(.up) / Double(slices)
            // Slices and routed experts of a layer are read in parallel when they sit on different workers.
            return sum + max(perWorker * Double(layer.expertParameters) * bytesPerWeight, sliceBytes) / memoryBandwidth
        }
        return coordinator + experts
    }

    /// The network bandwidth (bytes/s) at which the exchange takes as long as the computation.
    var breakEvenBandwidth: Double { wireBytesPerStep / computeSecondsPerStep }

    var json: [String: Any] {
        var object: [String: Any] = [
            "model_type": shape.modelType, "total_parameters": count.total, "active_parameters": count.active,
            "routed_expert_parameters": count.routedExperts, "moe_layers": shape.moeLayerCount,
            "coordinator_weight_bytes": coordinatorWeightBytes, "kv_cache_bytes": kvCacheBytes,
            "kv_cache_bytes_per_token": Double(shape.kvValuesPerToken) * Self.kvBytes,
            "coordinator_bytes": coordinatorBytes, "expert_bytes": expertBytes, "replicas": replicas,
            "placed_expert_bytes": placedExpertBytes, "context": context, "concurrency": concurrency,
            "wire_workers": workerCount, "wire_bytes_per_token_per_moe_layer": wireBytesPerTokenPerLayer,
            "wire_bytes_per_decode_step": wireBytesPerStep, "compute_seconds_per_decode_step": computeSecondsPerStep,
            "memory_bandwidth_bytes_per_second": memoryBandwidth, "break_even_network_bytes_per_second": breakEvenBandwidth,
            "offload_dense": offloadDense, "offloaded_dense_bytes": Double(offloadedParameters) * bytesPerWeight,
            "exchange_layers": exchangeLayers.count,
        ]
        if let workers { object["bytes_per_worker"] = placedExpertBytes / Double(workers) }
        if let workersNeeded { object["workers_needed"] = workersNeeded }
        if let coordinatorMemory { object["coordinator_fits"] = coordinatorBytes <= Double(coordinatorMemory) }
        object["stages"] = stages
        object["stage_layers"] = ((try? stageLayers) ?? []).map { [$0.lowerBound, $0.upperBound] }
        object["stage_bytes"] = stageBytes
        object["stage_hidden_bytes_per_decode_step"] = stageHiddenBytesPerStep
        if let proposal {
            var layout: [String: Any] = ["offload_dense": proposal.offloadDense, "fits": proposal.fits, "stages": proposal.stages]
            if let workers = proposal.workers { layout["workers"] = workers }
            object["proposed_layout"] = layout
        }
        return object
    }

    /// The smallest layout that fits the hosts given (`--coordinator-memory`, `--worker-memory`): the
    /// coordinator as planned; else with `--offload-dense`; else that split over the fewest pipeline
    /// stages whose largest host fits; and the fewest workers that then hold the experts (and
    /// slices) `replicas` times. Nil without both sizes.
    var proposal: (offloadDense: Bool, stages: Int, workers: Int?, fits: Bool)? {
        guard let coordinatorMemory, workerMemory != nil, shape.moeLayerCount > 0 else { return nil }
        let limit = Double(coordinatorMemory)
        var candidates = [self]
        var offloaded = self
        offloaded.offloadDense = shape.offloadableParameters > 0
        for count in 1...shape.layers.count {
            offloaded.stages = count
            candidates.append(offloaded)
        }
        let chosen = candidates.first { $0.coordinatorBytes <= limit } ?? candidates[candidates.count - 1]
        return (chosen.offloadDense, chosen.stages, chosen.workersNeeded, chosen.coordinatorBytes <= limit)
    }

    func text(dtype: String) -> String {
        let gb = { (bytes: Double) in String(format: "%.1f GB", bytes / 1e9) }
        var lines = [String(format: "%@: %.2fB parameters, %.2fB active per token, %d MoE layers", shape.modelType,
                            Double(count.total) / 1e9, Double(count.active) / 1e9, shape.moeLayerCount)]
        lines.append("coordinator\(stages > 1 ? "s, \(stages) pipeline stages" : ""): \(gb(coordinatorWeightBytes + kvCacheBytes))"
                     + " = \(gb(coordinatorWeightBytes)) of non-expert weights (\(dtype))"
                     + " + \(gb(kvCacheBytes)) of KV cache (\(context) positions × \(concurrency) sequences, "
                     + String(format: "%.0f kB per token in f32", Double(shape.kvValuesPerToken) * Self.kvBytes / 1e3)
                     + (shape.kvValues(context: context) < shape.kvValuesPerToken * context
                        ? "; sliding or chunked layers keep only their window)" : ")"))
        if stages > 1, let shares = try? stageLayers {
            for (stage, layers) in shares.enumerated() {
                lines.append("  stage \(stage) (layers \(layers.span)\(stage == 0 ? ", embeddings, LM head" : "")): "
                             + "\(gb(stageBytes[stage])) = \(gb(stageWeightBytes[stage])) of weights + "
                             + "\(gb(stageKVCacheBytes[stage])) of KV cache")
            }
            lines.append(String(format: "  hidden states between stages: %.1f kB per decode step (f32, through stage 0)",
                                stageHiddenBytesPerStep / 1e3))
        }
        if let coordinatorMemory {
            lines.append(coordinatorBytes <= Double(coordinatorMemory)
                ? "  fits in --coordinator-memory \(gb(Double(coordinatorMemory)))"
                : "  does NOT fit in --coordinator-memory \(gb(Double(coordinatorMemory))): lower --context or --concurrency, "
                  + "use --dtype int8, or a bigger host")
        }
        guard shape.moeLayerCount > 0 else {
            lines.append("dense model: no experts, so no workers; the coordinator (or `expertmesh serve`) runs it alone")
            return lines.joined(separator: "\n") + "\n"
        }
        lines.append("experts (\(dtype)): \(gb(expertBytes)) in all"
                     + (offloadDense ? " (with \(gb(Double(offloadedParameters) * bytesPerWeight)) of dense FFN and shared-expert "
                        + "slices, --offload-dense)" : "")
                     + (replicas > 1 ? ", \(gb(placedExpertBytes)) with \(replicas) replicas" : ""))
        if let workers { lines.append("with \(workers) workers: \(gb(placedExpertBytes / Double(workers))) of experts each") }
        if let workersNeeded, let workerMemory {
            lines.append("workers needed at \(gb(Double(workerMemory))) each (experts only, no headroom): \(workersNeeded)")
        }
        if let proposal {
            let hosts = proposal.stages > 1 ? "\(proposal.stages) pipeline stages (--stages \(proposal.stages))" : "one coordinator"
            let flags = (proposal.offloadDense ? "--offload-dense, " : "") + "\(proposal.workers ?? 0) workers"
                + (replicas > 1 ? " with --replicas \(replicas)" : "")
            lines.append(proposal.fits
                ? "smallest layout for these hosts: \(hosts), \(flags)"
                : "no layout fits these hosts: even one layer per pipeline stage with --offload-dense leaves a stage "
                  + "larger than --coordinator-memory (stage 0 keeps embeddings and LM head); lower --context or "
                  + "--concurrency, use --dtype int8, or bigger coordinator hosts")
        }
        let destinations = exchangeLayers.map { $0.topK + offloadedSlices($0) }.max() ?? 1
        lines.append(String(format: "wire: %.1f kB per token per exchange layer (to and from up to %d worker(s)); "
                            + "%.2f MB per decode step of %d token(s)", wireBytesPerTokenPerLayer / 1e3,
                            min(destinations, workerCount), wireBytesPerStep / 1e6, concurrency))
        let bits = breakEvenBandwidth * 8
        let rate = bits >= 1e9 ? String(format: "%.1f Gbit/s", bits / 1e9) : String(format: "%.1f Mbit/s", bits / 1e6)
        lines.append(String(format: "network: at %@ the exchange takes as long as a decode step computes "
                            + "(%.1f ms at %.0f GB/s of memory bandwidth per host); each 0.1 ms of round trip adds "
                            + "%.1f ms per step (%d layers with an exchange)", rate, computeSecondsPerStep * 1e3,
                            memoryBandwidth / 1e9, 0.1 * Double(exchangeLayers.count), exchangeLayers.count))
        return lines.joined(separator: "\n") + "\n"
    }
}
