import ArgumentParser
import Foundation
import MeshModels
import MeshTensors

struct Plan: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Size a cluster from a config.json alone: parameters, bytes per process, workers needed.",
        discussion: """
        Reads only config.json (no weights), so it works before downloading a checkpoint. Weights are
        counted in --dtype; workers hold the routed experts, the coordinator everything else.

        Examples:
          expertmesh plan --config Tests/Fixtures/configs/mixtral-8x22b.json --workers 4
          expertmesh plan --config Tests/Fixtures/configs/llama4-maverick.json --worker-memory-gb 64 --json
        """)

    @Option(help: "A model's config.json (or a model directory).")
    var config: String

    @Option(help: "Weight dtype: bf16, f16 or f32.")
    var dtype = "bf16"

    @Option(help: "Number of workers to split the experts over.")
    var workers: Int?

    @Option(help: "Memory per worker in GB: prints how many workers the experts need.")
    var workerMemoryGb: Double?

    @Flag(help: "Print one JSON object.")
    var json = false

    func validate() throws {
        guard DType(name: dtype) != nil else { throw ValidationError("--dtype must be bf16, f16 or f32") }
        if let workers, workers < 1 { throw ValidationError("--workers must be at least 1") }
        if let workerMemoryGb, !(workerMemoryGb > 0) { throw ValidationError("--worker-memory-gb must be positive") }
    }

    func run() throws {
        try reportingErrors {
            var url = URL(fileURLWithPath: config)
            if url.hasDirectoryPath || !url.lastPathComponent.hasSuffix(".json") { url.appendPathComponent("config.json") }
            let spec = try ModelSpec.decode(configFile: url)
            let count = spec.parameterCount
            let bytes = DType(name: dtype)!.byteSize
            let expertBytes = Double(count.routedExperts * bytes)
            let coordinatorBytes = Double((count.total - count.routedExperts) * bytes)
            let needed = workerMemoryGb.map { Int((expertBytes / ($0 * 1e9)).rounded(.up)) }
            var report: [String: Any] = [
                "model_type": spec.modelType, "dtype": dtype, "total_parameters": count.total, "active_parameters": count.active,
                "routed_expert_parameters": count.routedExperts, "coordinator_bytes": coordinatorBytes, "expert_bytes": expertBytes,
                "moe_layers": spec.moeLayerIndices.count,
            ]
            if let workers { report["bytes_per_worker"] = expertBytes / Double(workers) }
            if let needed { report["workers_needed"] = needed }
            if json { print(jsonText(report)); return }
            print(String(format: "%@: %.2fB parameters, %.2fB active per token, %d MoE layers", spec.modelType,
                         Double(count.total) / 1e9, Double(count.active) / 1e9, spec.moeLayerIndices.count))
            print(String(format: "coordinator (%@): %.1f GB of non-expert weights", dtype, coordinatorBytes / 1e9))
            print(String(format: "experts (%@): %.1f GB in all", dtype, expertBytes / 1e9))
            if let workers { print(String(format: "with %d workers: %.1f GB of experts each", workers, expertBytes / Double(workers) / 1e9)) }
            if let needed, let workerMemoryGb {
                print(String(format: "workers needed at %.0f GB each (experts only, no headroom): %d", workerMemoryGb, needed))
            }
        }
    }
}
