import ArgumentParser
import Foundation
import MeshModels
import MeshTensors

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure prefill and decode speed beside this machine's GEMM throughput and memory bandwidth.",
        discussion: """
        Decode is reported as a fraction of the bandwidth bound (weight bytes read per token ÷ measured
        read bandwidth); prefill as a fraction of measured sgemm throughput. Limits are measured in the
        same run, so the ratios hold on a noisy machine.

        Examples:
          python3 scripts/make-bench-model.py --out bench-models/mixtral-1b-bf16
          expertmesh bench --model bench-models/mixtral-1b-bf16 --prompt-tokens 128 --decode-tokens 64
        """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "Prompt length for the prefill measurement.")
    var promptTokens = 128

    @Option(help: "Tokens to decode for the decode measurement.")
    var decodeTokens = 32

    @Option(help: "Repetitions; the best run is reported.")
    var repeats = 3

    @Flag(help: "Print one JSON object.")
    var json = false

    func validate() throws {
        guard promptTokens >= 1, decodeTokens >= 2, repeats >= 1 else {
            throw ValidationError("--prompt-tokens ≥ 1, --decode-tokens ≥ 2 and --repeats ≥ 1 are required")
        }
    }

    func run() throws {
        try reportingErrors {
            printError("loading \(modelOptions.model) …")
            let engine = try LocalEngine(directory: modelOptions.directory)
            let spec = engine.spec
            let budget = WeightBudget(engine.model)
            var random = SeededGenerator(seed: 1)
            let prompt = (0..<promptTokens).map { _ in Int(random.next() % UInt64(spec.vocabSize)) }

            var bestPrefill = 0.0, bestDecode = 0.0
            for run in 1...repeats {
                printError("run \(run)/\(repeats): prefill \(promptTokens) tokens, decode \(decodeTokens) …")
                let result = try engine.generator.generate(GenerationRequest(prompt: prompt, maxTokens: decodeTokens))
                bestPrefill = max(bestPrefill, Double(promptTokens) / result.prefillSeconds)
                bestDecode = max(bestDecode, Double(result.tokens.count - 1) / result.decodeSeconds)
            }
            printError("measuring sgemm throughput and memory bandwidth …")
            let gemm = MachineLimits.gemmGigaflops(m: promptTokens, n: spec.moeLayerIndices.isEmpty ? spec.hiddenSize * 4 : spec.layers[spec.moeLayerIndices[0]].moe!.intermediateSize, k: spec.hiddenSize)
            let bandwidth = MachineLimits.readBandwidthGBps()
            let decodeBound = bandwidth * 1e9 / Double(budget.bytesPerDecodedToken)
            let prefillGflops = bestPrefill * Double(budget.flopsPerToken) / 1e9
            let report: [String: Any] = [
                "model": modelOptions.model, "dtype": budget.dtype,
                "prompt_tokens": promptTokens, "decode_tokens": decodeTokens,
                "prefill_tokens_per_second": bestPrefill, "decode_tokens_per_second": bestDecode,
                "sgemm_gflops": gemm, "read_bandwidth_gbps": bandwidth,
                "bytes_per_decoded_token": budget.bytesPerDecodedToken, "flops_per_token": budget.flopsPerToken,
                "decode_fraction_of_bandwidth_bound": bestDecode / decodeBound,
                "prefill_fraction_of_gemm": prefillGflops / gemm,
            ]
            if json { print(jsonText(report)); return }
            print(String(format: """
                model          %@ (%@, %.0f M weight bytes read per decoded token)
                prefill        %.1f tok/s = %.1f GFLOP/s = %.0f%% of sgemm (%.1f GFLOP/s measured)
                decode         %.1f tok/s = %.0f%% of the bandwidth bound %.1f tok/s (%.1f GB/s measured)
                """, modelOptions.model, budget.dtype, Double(budget.bytesPerDecodedToken) / 1e6,
                bestPrefill, prefillGflops, 100 * prefillGflops / gemm, gemm,
                bestDecode, 100 * bestDecode / decodeBound, decodeBound, bandwidth))
        }
    }
}

/// What one token costs: weight bytes read when decoding, and matmul FLOPs.
struct WeightBudget {
    let bytesPerDecodedToken: Int
    let flopsPerToken: Int
    let dtype: String

    init(_ model: LoadedModel) {
        let spec = model.spec
        var expertBytes = 0, expertElements = 0
        for layer in spec.layers {
            guard let moe = layer.moe else { continue }
            // top-k routed experts of 3 matrices [I, H].
            expertElements += moe.topK * 3 * moe.intermediateSize * spec.hiddenSize
        }
        let elementSize = model.dense.lmHead.dtype.byteSize
        expertBytes = expertElements * elementSize
        bytesPerDecodedToken = model.dense.bytesPerToken + expertBytes
        let denseElements = model.dense.bytesPerToken / elementSize
        flopsPerToken = 2 * (denseElements + expertElements)
        dtype = model.dense.lmHead.dtype.displayName
    }
}
