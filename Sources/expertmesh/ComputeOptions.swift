import ArgumentParser
import MeshModels
import MeshTensors

extension MatmulKernels.Precision: ExpressibleByArgument {}
extension MatmulKernels.DecodeKernels: ExpressibleByArgument {}

extension MatmulKernels.Variant: ExpressibleByArgument {
    static let names: [String: MatmulKernels.Variant] = [
        "avx2": .avx2, "avx512": .avx512, "avx512-bf16": .avx512BF16, "amx-bf16": .amxBF16,
    ]

    public init?(argument: String) {
        guard let variant = Self.names[argument] else { return nil }
        self = variant
    }

    public static var allValueStrings: [String] { ["avx2", "avx512", "avx512-bf16", "amx-bf16"] }

    var argumentName: String { Self.names.first { $0.value == self }!.key }
}

/// `--threads` and `--precision`, shared by every command that computes.
struct ComputeOptions: ParsableArguments {
    @Option(help: "Compute threads (kernels and OpenBLAS). Default: all cores.")
    var threads: Int?

    @Option(help: ArgumentHelp("""
        How bf16 weights are multiplied. bf16: activations rounded to bf16 and the CPU's bf16 dot products \
        (AMX tiles or AVX-512 BF16), as llama.cpp and transformers compute bf16 models. f32: activations kept in \
        f32 and weights widened, the path the transformers-parity tests use; slower. f32 and f16 weights always \
        compute in f32; without bf16 instructions bf16 falls back to f32.
        """, valueName: "bf16|f32"))
    var precision: MatmulKernels.Precision = .bf16

    @Option(help: ArgumentHelp("""
        Use this kernel variant instead of the best one for --precision (to compare them on one machine); it \
        must be one this CPU has. avx2 and avx512 compute in f32, avx512-bf16 and amx-bf16 in bf16.
        """, valueName: "avx2|avx512|avx512-bf16|amx-bf16"))
    var kernels: MatmulKernels.Variant?

    @Option(help: ArgumentHelp("""
        With AMX: the kernels for tokens the model generates (prompt tokens always take AMX tiles). dot: \
        AVX-512 BF16 dot products, faster for one or a few sequences (the default of generate and bench); tiles: \
        AMX, faster when many sequences decode together (the default of serve and coordinator). Workers follow \
        the coordinator.
        """, valueName: "dot|tiles"))
    var decodeKernels: MatmulKernels.DecodeKernels?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if let kernels, !MatmulKernels.supported.contains(kernels) {
            let names = MatmulKernels.supported.map(\.argumentName)
            throw ValidationError("--kernels \(kernels.name) is not available on this CPU; it has: \(names.joined(separator: ", "))")
        }
    }

    /// The options as given, for a worker process this one starts.
    var arguments: [String] {
        var arguments = ["--precision", precision.rawValue]
        if let threads { arguments += ["--threads", String(threads)] }
        if let kernels { arguments += ["--kernels", kernels.argumentName] }
        return arguments
    }

    /// Sets the thread count and the kernels (generated tokens' kernels default to
    /// `decodeDefault`); returns a line saying what was chosen.
    @discardableResult
    func apply(decodeDefault: MatmulKernels.DecodeKernels = .dot) -> String {
        MatmulKernels.decodeKernels = decodeKernels ?? decodeDefault
        if let threads { Parallel.setThreadCount(threads) }
        let variant = kernels.map { MatmulKernels.use($0); return $0 } ?? MatmulKernels.use(precision)
        let fallback = kernels == nil && precision == .bf16 && !variant.roundsActivationsToBF16
            ? " (this CPU has no bf16 dot products: bf16 weights compute in f32)" : ""
        let kernels = MatmulKernels.rowKernels
        let inPlace = "prompt tokens: \(kernels.prompt.bf16.name); generated tokens: \(kernels.generated.bf16.name)"
        let decode = kernels.prompt == kernels.generated ? ""
            : variant == .avx512BF16 ? " (bf16 weights copied at load: packed panels for every token; read in place: \(inPlace))"
            : " (\(inPlace))"
        return "compute: \(Parallel.coreCount) threads, kernels \(variant.name)\(decode)\(fallback)"
    }
}

extension WeightFormat: ExpressibleByArgument {}

/// `--weights-dtype`: how the routed experts are held.
struct ExpertWeightOption: ParsableArguments {
    @Option(name: .customLong("weights-dtype"), help: ArgumentHelp("""
        Routed experts as the checkpoint stores them, copied at load into huge-page memory (file: decode reads \
        it 15-25% faster than the file's pages), read in place from the mapped file (mapped: no copy, for a host \
        whose memory is tight), or quantised at load to int8 (llama.cpp's Q8_0: one scale per 32 values; about \
        half the bytes of bf16, so decode reads half as much).
        """, valueName: "file|mapped|int8"))
    var experts: WeightFormat = .file
}

/// `--dense-dtype`: how the attention, dense and shared-expert projections and the LM head are held.
struct DenseWeightOption: ParsableArguments {
    @Option(name: .customLong("dense-dtype"), help: ArgumentHelp("""
        Attention, dense and shared-expert projections and the LM head as the checkpoint stores them (file: \
        copied into huge-page memory; mapped: read in place from the file) or quantised at load to int8 (Q8_0). \
        Embeddings, norms and routers are read in place from the file.
        """, valueName: "file|mapped|int8"))
    var dense: WeightFormat = .file
}
