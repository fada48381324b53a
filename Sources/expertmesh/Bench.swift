import ArgumentParser
import Foundation
import MeshEngine
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

    @Option(help: "Runs; each measures bandwidth, prefill, decode and sgemm in turn; the median is reported.")
    var repeats = 5

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

            // Limits and speeds alternate within each run, so a drifting machine moves both together;
            // ratios are per run and the median run is reported.
            let gemmColumns = spec.moeLayerIndices.first.flatMap { spec.layers[$0].moe?.intermediateSize } ?? 4 * spec.hiddenSize
            var runs: [(prefill: Double, decode: Double, gemm: Double, bandwidth: Double)] = []
            for run in 1...repeats {
                printError("run \(run)/\(repeats): bandwidth, prefill \(promptTokens) tokens, decode \(decodeTokens), sgemm …")
                let bandwidth = MachineLimits.readBandwidthGBps(seconds: 0.5)
                let result = try engine.generator.generate(GenerationRequest(prompt: prompt, maxTokens: decodeTokens))
                let gemm = MachineLimits.gemmGigaflops(m: promptTokens, n: gemmColumns, k: spec.hiddenSize, seconds: 0.5)
                runs.append((Double(promptTokens) / result.prefillSeconds, Double(result.tokens.count - 1) / result.decodeSeconds, gemm, bandwidth))
            }
            func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
            let decodeFractions = runs.map { $0.decode / ($0.bandwidth * 1e9 / Double(budget.bytesPerDecodedToken)) }
            let prefillFractions = runs.map { $0.prefill * Double(budget.flopsPerToken) / 1e9 / $0.gemm }
            let (prefill, decode) = (median(runs.map(\.prefill)), median(runs.map(\.decode)))
            let (gemm, bandwidth) = (median(runs.map(\.gemm)), median(runs.map(\.bandwidth)))
            let report: [String: Any] = [
                "model": modelOptions.model, "dtype": budget.dtype, "runs": repeats,
                "prompt_tokens": promptTokens, "decode_tokens": decodeTokens,
                "prefill_tokens_per_second": prefill, "decode_tokens_per_second": decode,
                "sgemm_gflops": gemm, "read_bandwidth_gbps": bandwidth,
                "bytes_per_decoded_token": budget.bytesPerDecodedToken, "flops_per_token": budget.flopsPerToken,
                "decode_fraction_of_bandwidth_bound": median(decodeFractions),
                "prefill_fraction_of_gemm": median(prefillFractions),
            ]
            if json { print(jsonText(report)); return }
            print(String(format: """
                model          %@ (%@, %.0f M weight bytes read per decoded token), median of %d runs
                prefill        %.1f tok/s = %.0f%% of sgemm (%.1f GFLOP/s measured alongside)
                decode         %.1f tok/s = %.0f%% of the bandwidth bound (%.1f GB/s measured alongside: bound %.1f tok/s)
                """, modelOptions.model, budget.dtype, Double(budget.bytesPerDecodedToken) / 1e6, repeats,
                prefill, 100 * median(prefillFractions), gemm,
                decode, 100 * median(decodeFractions), bandwidth, bandwidth * 1e9 / Double(budget.bytesPerDecodedToken)))
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
