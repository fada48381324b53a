import ArgumentParser
import Foundation
import MeshEngine
import MeshModels
import MeshTensors

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure prefill and decode speed beside this machine's GEMM throughput and memory bandwidth.",
        discussion: """
        Decode is reported as a fraction of the bandwidth bound (weight bytes read per token ÷ read \
        bandwidth measured with AVX-512 loads); prefill as a fraction of sgemm (OpenBLAS) and of our own \
        kernel on cache-resident weights. The kernels alone are measured too: decode-shaped products \
        streaming 512 MB (in the model's format, and in MXFP4 of gpt-oss's expert shape; --kernels avx2 \
        shows the portable MXFP4 loop), prefill-shaped ones in cache. A batched decode step (--batch sequences \
        through the serving engine) is compared with max(weight bytes it touches ÷ bandwidth, its \
        FLOPs ÷ the faster of sgemm and our kernel). With bf16 dot products (--precision bf16) or int8 weights, the logits are \
        compared with the exact path (file weights, --precision f32). With --llama-bench and --gguf, \
        llama.cpp runs on the same model between our runs. Limits and peers are measured in the same \
        run, so the ratios hold on a noisy machine.

        Examples:
          python3 scripts/make-bench-model.py --out bench-models/mixtral-1b-bf16
          expertmesh bench --model bench-models/mixtral-1b-bf16 --prompt-tokens 128 \\
              --decode-tokens 64
          expertmesh bench --model bench-models/mixtral-640m-bf16 --batch 16 \\
              --repeats 3
          expertmesh bench --model bench-models/mixtral-640m-bf16 \\
              --weights-dtype int8 --dense-dtype int8
          expertmesh bench --model bench-models/mixtral-640m-bf16 --decode-tokens 64 \\
              --batch 1 --llama-bench ~/llama.cpp/build/bin/llama-bench \\
              --gguf mixtral-640m-bf16.gguf --gguf mixtral-640m-q8_0.gguf
        """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "Prompt length for the prefill measurement.")
    var promptTokens = 128

    @Option(help: "Tokens to decode for the decode measurement.")
    var decodeTokens = 32

    @Option(help: "Runs; each measures bandwidth, prefill, decode, sgemm and our kernels in turn; the median is reported.")
    var repeats = 5

    @Option(help: "Sequences decoding together in the batched-decode measurement (1 skips it).")
    var batch = 16

    @OptionGroup var compute: ComputeOptions

    @OptionGroup var experts: ExpertWeightOption

    @OptionGroup var dense: DenseWeightOption

    @Option(help: "llama.cpp's llama-bench binary: measures llama.cpp on each --gguf between our runs and prints the ratios.")
    var llamaBench: String?

    @Option(help: "A GGUF file of the same model for --llama-bench; repeat it for several (bf16, f16, q8_0).")
    var gguf: [String] = []

    @Flag(help: "Print one JSON object.")
    var json = false

    func validate() throws {
        if llamaBench != nil, gguf.isEmpty { throw ValidationError("--llama-bench needs at least one --gguf FILE") }
        if llamaBench == nil, !gguf.isEmpty { throw ValidationError("--gguf needs --llama-bench PATH (llama.cpp's llama-bench)") }
        if let llamaBench, !FileManager.default.isExecutableFile(atPath: llamaBench) {
            throw ValidationError("--llama-bench \(llamaBench) is not an executable file")
        }
        for file in gguf where !FileManager.default.fileExists(atPath: file) {
            throw ValidationError("--gguf \(file) does not exist")
        }
        guard promptTokens >= 1, decodeTokens >= 2, repeats >= 1, batch >= 1 else {
            throw ValidationError("--prompt-tokens ≥ 1, --decode-tokens ≥ 2, --repeats ≥ 1 and --batch ≥ 1 are required")
        }
    }

    /// Seconds per decode step with `batch` sequences decoding together (median over the steps
    /// after every prompt is read).
    func batchedStepSeconds(_ engine: LocalEngine, random: inout SeededGenerator) throws -> Double {
        let spec = engine.spec
        let blocksEach = spec.cacheBlocksAtMost(positions: 16 + decodeTokens) + spec.cacheGroups.count
        let serving = try InferenceEngine(transformer: engine.generator.transformer, configuration: EngineConfiguration(
            maxBatchTokens: max(512, batch), maxRunning: batch, maxWaiting: batch, kvCacheBlocks: batch * blocksEach))
        for _ in 0..<batch {
            let prompt = (0..<16).map { _ in Int(random.next() % UInt64(spec.vocabSize)) }
            try serving.add(GenerationRequest(prompt: prompt, maxTokens: decodeTokens)) { _ in }
        }
        var steps: [Double] = []
        while true {
            let decoding = serving.stats.generatedTokens >= batch    // every prompt read
            let start = ContinuousClock.now
            guard try serving.step() else { break }
            if decoding, serving.stats.running == batch { steps.append((ContinuousClock.now - start).seconds) }
        }
        return steps.sorted()[steps.count / 2]
    }

    /// What the fast paths cost in accuracy: logits of the prompt and the greedy continuation with
    /// the kernels and weight formats in use against the exact path (file weights, --precision f32):
    /// max |Δlogit| and max |Δlogprob| over every position both computed before the first differing
    /// token, and the share of greedy tokens that agree up to it.
    func accuracyCost(_ engine: LocalEngine, formats: WeightFormats, prompt: [Int], kernels: MatmulKernels.Variant) throws
        -> (maxLogitDiff: Double, maxLogprobDiff: Double, greedyAgreement: Double) {
        printError("accuracy: the same prompt with file weights and --precision f32 …")
        defer { MatmulKernels.use(kernels) }
        let request = GenerationRequest(prompt: prompt, maxTokens: decodeTokens, recordLogits: true)
        let fast = try engine.generator.generate(request)
        MatmulKernels.use(.f32)
        // Weights read in place are the file's: the same engine computes the exact path. Copies may be
        // packed for the fast kernels: a fresh engine loads them as the exact path reads them.
        let reference = formats.experts == .mapped && formats.dense == .mapped
            ? engine : try LocalEngine(directory: modelOptions.directory, formats: WeightFormats())
        let exact = try reference.generator.generate(request)
        let agreeing = zip(fast.tokens, exact.tokens).prefix { $0 == $1 }.count
        // Rows after the first differing token see different inputs: compare up to it.
        let rows = min(fast.logitRows, exact.logitRows, prompt.count + agreeing)
        let vocab = engine.spec.vocabSize
        var logitDiff = 0.0, logprobDiff = 0.0
        for row in 0..<rows {
            let a = fast.logits[(row * vocab)..<((row + 1) * vocab)], b = exact.logits[(row * vocab)..<((row + 1) * vocab)]
            let (la, lb) = (logSumExp(a), logSumExp(b))
            for (x, y) in zip(a, b) {
                logitDiff = max(logitDiff, Double(abs(x - y)))
                logprobDiff = max(logprobDiff, abs((Double(x) - la) - (Double(y) - lb)))
            }
        }
        return (logitDiff, logprobDiff, Double(agreeing) / Double(max(1, exact.tokens.count)))
    }

    func logSumExp(_ values: ArraySlice<Float>) -> Double {
        let top = Double(values.max() ?? 0)
        return top + log(values.reduce(0.0) { $0 + exp(Double($1) - top) })
    }

    func run() throws {
        try reportingErrors {
            printError(compute.apply())
            printError("loading \(modelOptions.model) …")
            let formats = WeightFormats(experts: experts.experts, dense: dense.dense)
            let engine = try LocalEngine(directory: modelOptions.directory, formats: formats)
            let spec = engine.spec
            let budget = WeightBudget(engine, formats: formats)
            let kernels = MatmulKernels.current
            var random = SeededGenerator(seed: 1)
            let prompt = (0..<promptTokens).map { _ in Int(random.next() % UInt64(spec.vocabSize)) }

            // Limits and speeds alternate within each run, so a drifting machine moves both together;
            // ratios are per run and the median run is reported.
            let gemmColumns = spec.moeLayerIndices.first.flatMap { spec.layers[$0].moe?.intermediateSize } ?? 4 * spec.hiddenSize
            let weightDType = engine.model.dense.lmHead.dtype
            let q8 = formats.experts == .int8
            var runs: [(prefill: Double, decode: Double, gemm: Double, bandwidth: Double, step: Double,
                        kernelDecode: Double, kernelGemm: Double, mxfp4: Double)] = []
            let peers = gguf.map { LlamaBench(binary: llamaBench ?? "", gguf: $0) }
            var peerRuns = [[LlamaBench.Figures]](repeating: [], count: peers.count)
            for run in 1...repeats {
                printError("run \(run)/\(repeats): bandwidth, prefill \(promptTokens) tokens, decode \(decodeTokens), sgemm, "
                           + "our kernels alone, batch of \(batch) …")
                let bandwidth = MachineLimits.readBandwidthGBps(seconds: 0.5)
                let result = try engine.generator.generate(GenerationRequest(prompt: prompt, maxTokens: decodeTokens))
                let gemm = MachineLimits.gemmGigaflops(m: promptTokens, n: gemmColumns, k: spec.hiddenSize, seconds: 0.5)
                // The kernels alone on the model's expert shape ([I, H]): decode-shaped products
                // streaming 512 MB, prefill-shaped ones on cached weights.
                let kernelDecode = KernelLimits.decodeGBps(outFeatures: gemmColumns, inFeatures: spec.hiddenSize,
                                                           dtype: weightDType, q8: q8, seconds: 0.5)
                let kernelGemm = KernelLimits.prefillGigaflops(rows: promptTokens, outFeatures: gemmColumns,
                                                               inFeatures: spec.hiddenSize, dtype: weightDType, q8: q8, seconds: 0.5)
                let mxfp4 = KernelLimits.mxfp4DecodeGBps(seconds: 0.5)
                let step = batch > 1 ? try batchedStepSeconds(engine, random: &random) : 0
                runs.append((Double(promptTokens) / result.prefillSeconds, Double(result.tokens.count - 1) / result.decodeSeconds,
                             gemm, bandwidth, step, kernelDecode, kernelGemm, mxfp4))
                for (index, peer) in peers.enumerated() {
                    printError("run \(run)/\(repeats): llama-bench on \(peer.gguf) …")
                    peerRuns[index].append(try peer.measure(promptTokens: promptTokens, decodeTokens: decodeTokens,
                                                            threads: Parallel.coreCount))
                }
            }
            func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
            let decodeFractions = runs.map { $0.decode / ($0.bandwidth * 1e9 / Double(budget.bytesPerDecodedToken)) }
            let prefillFractions = runs.map { $0.prefill * Double(budget.flopsPerToken) / 1e9 / $0.gemm }
            let (prefill, decode) = (median(runs.map(\.prefill)), median(runs.map(\.decode)))
            let (gemm, bandwidth) = (median(runs.map(\.gemm)), median(runs.map(\.bandwidth)))
            // A batched step reads the dense weights once and each expert the batch routes to
            // (expected distinct experts: E·(1 − (1 − k/E)^batch)), and does batch × the FLOPs.
            let stepBounds = runs.map { run in
                max(Double(budget.bytesForBatch(batch)) / (run.bandwidth * 1e9),
                    Double(batch * budget.flopsPerToken) / (max(run.gemm, run.kernelGemm) * 1e9))
            }
            let stepRatios = zip(runs, stepBounds).map { $0.step / $1 }
            let step = median(runs.map(\.step))
            let (kernelDecode, kernelPrefill) = (median(runs.map(\.kernelDecode)), median(runs.map(\.kernelGemm)))
            let exactPath = !(kernels.roundsActivationsToBF16 && weightDType == .bf16) && formats.experts == .file && formats.dense == .file
            let accuracy = exactPath ? nil : try accuracyCost(engine, formats: formats, prompt: prompt, kernels: kernels)
            var report: [String: Any] = [
                "model": modelOptions.model, "dtype": budget.dtype, "runs": repeats,
                "prompt_tokens": promptTokens, "decode_tokens": decodeTokens,
                "prefill_tokens_per_second": prefill, "decode_tokens_per_second": decode,
                "sgemm_gflops": gemm, "read_bandwidth_gbps": bandwidth,
                "bytes_per_decoded_token": budget.bytesPerDecodedToken, "flops_per_token": budget.flopsPerToken,
                "decode_fraction_of_bandwidth_bound": median(decodeFractions),
                "prefill_fraction_of_gemm": median(prefillFractions),
                "matmul_kernels": kernels.name, "precision": kernels.roundsActivationsToBF16 ? "bf16" : "f32",
                "read_probe": MachineLimits.readProbeName,
                "kernel_decode_gbps": kernelDecode, "kernel_prefill_gflops": kernelPrefill,
                "kernel_mxfp4_decode_gbps": median(runs.map(\.mxfp4)),
                "decode_fraction_of_kernel_bandwidth": median(runs.map { $0.decode * Double(budget.bytesPerDecodedToken) / ($0.kernelDecode * 1e9) }),
                "prefill_fraction_of_kernel_gemm": median(runs.map { $0.prefill * Double(budget.flopsPerToken) / ($0.kernelGemm * 1e9) }),
                "kernel_decode_fraction_of_bandwidth": median(runs.map { $0.kernelDecode / $0.bandwidth }),
                "batch": batch, "batched_step_seconds": step, "batched_step_bound_seconds": median(stepBounds),
                "batched_step_over_bound": median(stepRatios),
                "batched_decode_tokens_per_second": step > 0 ? Double(batch) / step : 0,
            ]
            if let accuracy {
                report["max_abs_logit_diff_vs_f32"] = accuracy.maxLogitDiff
                report["max_abs_logprob_diff_vs_f32"] = accuracy.maxLogprobDiff
                report["greedy_agreement_vs_f32"] = accuracy.greedyAgreement
            }
            // Ratios run by run (each pair measured back to back), then their median.
            let peerReports: [[String: Any]] = zip(peers, peerRuns).map { peer, figures in
                [
                    "gguf": peer.gguf, "model_type": figures[0].modelType, "build": figures[0].build,
                    "prefill_tokens_per_second": median(figures.map(\.prefill)),
                    "decode_tokens_per_second": median(figures.map(\.decode)),
                    "prefill_ratio": median(zip(runs, figures).map { $0.prefill / $1.prefill }),
                    "decode_ratio": median(zip(runs, figures).map { $0.decode / $1.decode }),
                ]
            }
            if !peerReports.isEmpty { report["llama_cpp"] = peerReports }
            if json { print(jsonText(report)); return }
            print(String(format: """
                model          %@ (%@, %.0f M weight bytes read per decoded token), median of %d runs; kernels %@
                prefill        %.1f tok/s = %.0f%% of sgemm (%.1f GFLOP/s measured alongside), %.0f%% of our kernel's %.1f GFLOP/s
                decode         %.1f tok/s = %.0f%% of the bandwidth bound (%.1f GB/s measured alongside with %@: bound %.1f tok/s)
                kernels alone  decode-shaped %.1f GB/s (%.0f%% of the probe), prefill-shaped %.1f GFLOP/s; MXFP4 (gpt-oss experts) decode-shaped %.1f GB/s
                """, modelOptions.model, budget.dtype, Double(budget.bytesPerDecodedToken) / 1e6, repeats, kernels.name,
                prefill, 100 * median(prefillFractions), gemm, 100 * (report["prefill_fraction_of_kernel_gemm"] as! Double),
                kernelPrefill,
                decode, 100 * median(decodeFractions), bandwidth, MachineLimits.readProbeName,
                bandwidth * 1e9 / Double(budget.bytesPerDecodedToken),
                kernelDecode, 100 * (report["kernel_decode_fraction_of_bandwidth"] as! Double), kernelPrefill,
                median(runs.map(\.mxfp4))))
            if let accuracy {
                print(String(format: "accuracy       vs file weights in f32: max |Δlogit| %.4f, max |Δlogprob| %.4f over the prompt and %d decoded tokens; greedy tokens agree %.0f%%",
                             accuracy.maxLogitDiff, accuracy.maxLogprobDiff, decodeTokens, 100 * accuracy.greedyAgreement))
            }
            for peer in peerReports {
                print(String(format: "llama.cpp      %@ (%@, build %@): prefill %.1f tok/s, decode %.1f tok/s; ours ÷ theirs: prefill %.2f×, decode %.2f×",
                             (peer["gguf"] as! String as NSString).lastPathComponent, peer["model_type"] as! String, peer["build"] as! String,
                             peer["prefill_tokens_per_second"] as! Double, peer["decode_tokens_per_second"] as! Double,
                             peer["prefill_ratio"] as! Double, peer["decode_ratio"] as! Double))
            }
            if batch > 1 {
                print(String(format: "batch of %d     %.1f ms per decode step = %.1f tok/s (%.1f× one sequence); %.2f× the bound of %.1f ms (max of weight bytes ÷ bandwidth, FLOPs ÷ the faster of sgemm and our kernel)",
                             batch, step * 1000, Double(batch) / step, Double(batch) / step / decode,
                             median(stepRatios), median(stepBounds) * 1000))
            }
        }
    }
}

/// What one token costs: weight bytes read when decoding, and matmul FLOPs.
struct WeightBudget {
    let bytesPerDecodedToken: Int
    let flopsPerToken: Int
    let dtype: String

    init(_ engine: LocalEngine, formats: WeightFormats) {
        let (spec, dense) = (engine.model.spec, engine.model.dense)
        var experts: [(count: Int, topK: Int, bytes: Int)] = []
        var expertBytes = 0, expertMultiplyAdds = 0
        for (index, layer) in spec.layers.enumerated() {
            guard let moe = layer.moe, let one = engine.generator.transformer.backend.experts[ExpertKey(layer: index, expert: 0)]
            else { continue }
            // top-k routed experts of 3 matrices [I, H], in the format they are held.
            experts.append((moe.expertCount, moe.topK, one.byteCount))
            expertBytes += moe.topK * one.byteCount
            expertMultiplyAdds += moe.topK * 3 * moe.intermediateSize * spec.hiddenSize
        }
        expertLayers = experts
        denseBytes = dense.bytesPerToken
        bytesPerDecodedToken = denseBytes + expertBytes
        flopsPerToken = 2 * (dense.multiplyAddsPerToken + expertMultiplyAdds)
        let file = dense.lmHead.dtype.displayName
        dtype = formats.experts == .file && formats.dense == .file ? file
            : "\(file); experts \(formats.experts == .file ? file : "int8"), dense \(formats.dense == .file ? file : "int8")"
    }

    let denseBytes: Int
    let expertLayers: [(count: Int, topK: Int, bytes: Int)]

    /// Weight bytes one decode step of `batch` tokens reads: the dense weights once, and the
    /// expected number of distinct experts `batch` tokens route to, per layer.
    func bytesForBatch(_ batch: Int) -> Int {
        denseBytes + expertLayers.reduce(0) { total, layer in
            let distinct = Double(layer.count) * (1 - pow(1 - Double(layer.topK) / Double(layer.count), Double(batch)))
            return total + Int(distinct * Double(layer.bytes))
        }
    }
}
