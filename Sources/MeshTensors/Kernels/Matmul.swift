import CKernels

/// `y[T, out] = x[T, in] · Wᵀ` (+ `y` when `accumulate`), x and y f32, row-major.
///
/// Weights stay in their file dtype (f32, bf16, f16) and are widened as they are read. Every
/// output element comes out of the same operations whatever T is, how the rows are tiled and
/// how the outputs are split over threads (`mesh_matmul`), so a token's activations never
/// depend on the other tokens of its step: batching cannot change a greedy token.
/// `generated` marks rows that carry generated tokens (see `matmul(_:rows:_:accumulate:generated:)`).
public func matmul(_ x: UnsafePointer<Float>, rows: Int, _ weight: LinearWeight,
                   into y: UnsafeMutablePointer<Float>, accumulate: Bool = false, generated: [Bool]? = nil) {
    matmul(x, rows: rows, [(weight, y)], accumulate: accumulate, generated: generated)
}

/// Several weights applied to the same input x [rows, in]: `products[i].1 = x · products[i].0ᵀ`,
/// as one parallel pass over all their outputs (one thread hand-off instead of one per weight,
/// which matters at decode where each product takes tens of microseconds).
///
/// Under a bf16 kernel variant, x is rounded to bf16 once here and bf16 [out, in] weights are
/// multiplied with bf16 dot products; other weights take the f32 path. Q8_0 weights take the int8
/// kernels (panels, or rows), except prompt rows of weights in rows under AMX: widened to bf16 a block at a time
/// for the tiles. Rows
/// marked in `generated` (tokens the model generated, as opposed to prompt tokens) may take other
/// kernels than prompt rows (`MatmulKernels.rowKernels`): the dot products stream weights faster one
/// row at a time, while AMX tiles and AVX-512 BF16 panels are faster many rows at a time. A row's
/// kernel follows from its own token, never from its batch, so results stay batch-invariant.
public func matmul(_ x: UnsafePointer<Float>, rows: Int, _ products: [(LinearWeight, UnsafeMutablePointer<Float>)],
                   accumulate: Bool = false, generated: [Bool]? = nil) {
    guard rows > 0, !products.isEmpty else { return }
    let kernels = MatmulKernels.rowKernels
    let differs = products.contains { weight, _ in
        weight.q8Scales != nil ? kernels.prompt.q8Tiles != kernels.generated.q8Tiles
            : weight.takesBF16DotProducts && kernels.prompt.bf16 != kernels.generated.bf16
    }
    guard let generated, generated.contains(true), differs else {
        return matmul(x, rows: rows, products, accumulate: accumulate, kernels.prompt)
    }
    if generated.allSatisfy({ $0 }) {
        return matmul(x, rows: rows, products, accumulate: accumulate, kernels.generated)
    }
    // Both kinds: each kind's rows gathered, multiplied with its kernels, and put back in place.
    let inFeatures = products[0].0.inFeatures
    for (kind, rowKernels) in [(false, kernels.prompt), (true, kernels.generated)] {
        let members = generated.indices.filter { generated[$0] == kind }
        let gathered = UnsafeMutablePointer<Float>.allocate(capacity: members.count * inFeatures)
        defer { gathered.deallocate() }
        for (row, member) in members.enumerated() {
            (gathered + row * inFeatures).update(from: x + member * inFeatures, count: inFeatures)
        }
        let outputs = products.map { UnsafeMutablePointer<Float>.allocate(capacity: members.count * $0.0.outFeatures) }
        defer { outputs.forEach { $0.deallocate() } }
        matmul(gathered, rows: members.count, Array(zip(products.map(\.0), outputs)), accumulate: false, rowKernels)
        for ((weight, y), output) in zip(products, outputs) {
            let width = weight.outFeatures
            for (row, member) in members.enumerated() {
                let target = y + member * width, source = output + row * width
                if accumulate {
                    for o in 0..<width { target[o] += source[o] }
                } else {
                    target.update(from: source, count: width)
                }
            }
        }
    }
}

/// The products with bf16 [out, in] weights computed by `rowKernels.bf16` when that is a bf16
/// variant, and Q8_0 weights widened for the AMX tiles when `rowKernels.q8Tiles` (else on the int8 kernel).
private func matmul(_ x: UnsafePointer<Float>, rows: Int, _ products: [(LinearWeight, UnsafeMutablePointer<Float>)],
                    accumulate: Bool, _ rowKernels: MatmulKernels.RowKernels) {
    let (kernels, q8Tiles) = (rowKernels.bf16, rowKernels.q8Tiles)
    guard rows > 0, !products.isEmpty else { return }
    var starts: [Int] = []
    var total = 0
    for (weight, _) in products { starts.append(total); total += weight.outFeatures }
    let inFeatures = products[0].0.inFeatures
    // Q8_0 weights through the tiles read x packed for them; on the int8 kernel, x quantised per
    // token and block of 32.
    // Panels read x packed for the dot products: under AMX (x packed for the tiles) they take the f32 path.
    let panelsOnBF16 = kernels.roundsActivationsToBF16 && kernels != .amxBF16
    let bf16 = kernels.roundsActivationsToBF16
        && products.contains { $0.0.takesBF16DotProducts || (q8Tiles && $0.0.q8Scales != nil) || (panelsOnBF16 && $0.0.layout == .panels) }
    let packed = bf16 ? UnsafeMutablePointer<UInt16>.allocate(capacity: mesh_bf16_packed_count(kernels.rawValue, rows, inFeatures)) : nil
    defer { packed?.deallocate() }
    if let packed { mesh_bf16_pack(kernels.rawValue, x, rows, inFeatures, inFeatures, packed) }
    let quantized = !q8Tiles && products.contains { $0.0.q8Scales != nil }
        ? UnsafeMutableRawPointer.allocate(byteCount: mesh_q8_packed_bytes(rows, inFeatures), alignment: 64) : nil
    defer { quantized?.deallocate() }
    if let quantized { mesh_q8_pack(x, rows, inFeatures, inFeatures, quantized) }
    let quantizedForPanels = products.contains { $0.0.layout == .q8Panels }
        ? UnsafeMutableRawPointer.allocate(byteCount: mesh_q8_panels_packed_bytes(rows, inFeatures), alignment: 64)
        : nil
    defer { quantizedForPanels?.deallocate() }
    if let quantizedForPanels { mesh_q8_panels_pack_x(x, rows, inFeatures, inFeatures, quantizedForPanels) }
    // Enough outputs per range that a hand-off pays (~64 K multiply-adds: a decode step's last ranges
    // are short, so its threads finish together; the pool's threads spin, so a hand-off is ~1 µs).
    let work = rows * inFeatures
    // Ranges start on whole 32-output blocks (the AMX tiles' height, twice the bf16/int8 tiles').
    Parallel.forRanges(total, minimumPerTask: max(32, min(256, (1 << 16) / max(1, work))), granularity: 32) { range in
        var p = starts.lastIndex { $0 <= range.lowerBound }!
        var index = range.lowerBound
        while index < range.upperBound {
            while p + 1 < products.count, index >= starts[p + 1] { p += 1 }
            let (weight, y) = products[p]
            let o0 = index - starts[p]
            let o1 = min(weight.outFeatures, range.upperBound - starts[p])
            if let scales = weight.mxfp4Scales {
                mesh_matmul_mxfp4(kernels.rawValue, x, rows, weight.inFeatures,
                                  weight.data.assumingMemoryBound(to: UInt8.self), weight.leadingDimension,
                                  scales, weight.mxfp4ScaleStride, y, weight.outFeatures, o0, o1, accumulate ? 1 : 0)
            } else if let quantizedForPanels, weight.layout == .q8Panels {
                mesh_matmul_q8_panels(quantizedForPanels, rows, weight.data, weight.firstOutput, weight.inFeatures, y,
                                      weight.outFeatures, o0, o1, accumulate ? 1 : 0)
            } else if q8Tiles, let packed, let scales = weight.q8Scales {
                mesh_matmul_q8_amx(packed, rows, weight.data.assumingMemoryBound(to: Int8.self), scales, weight.inFeatures,
                                   y, weight.outFeatures, o0, o1, accumulate ? 1 : 0)
            } else if let quantized, let scales = weight.q8Scales {
                mesh_matmul_q8(quantized, rows, weight.data.assumingMemoryBound(to: Int8.self), scales, weight.inFeatures,
                               y, weight.outFeatures, o0, o1, accumulate ? 1 : 0)
            } else if weight.layout == .panels {
                if panelsOnBF16, let packed {
                    mesh_matmul_bf16_packed(packed, rows, weight.data.assumingMemoryBound(to: UInt16.self), weight.inFeatures,
                                            y, weight.outFeatures, o0, o1, accumulate ? 1 : 0)
                } else {
                    mesh_matmul_bf16_packed_f32(x, rows, weight.inFeatures, weight.data.assumingMemoryBound(to: UInt16.self),
                                                weight.inFeatures, y, weight.outFeatures, o0, o1, accumulate ? 1 : 0)
                }
            } else if let packed, weight.takesBF16DotProducts {
                mesh_matmul_bf16(kernels.rawValue, packed, rows, weight.data.assumingMemoryBound(to: UInt16.self),
                                 weight.inFeatures, weight.leadingDimension, y, weight.outFeatures, o0, o1, accumulate ? 1 : 0)
            } else {
                mesh_matmul(x, rows, weight.inFeatures, weight.data, weight.dtype.kernelCode,
                            weight.layout == .inMajor ? 1 : 0, weight.inFeatures, weight.leadingDimension,
                            y, weight.outFeatures, o0, o1, accumulate ? 1 : 0)
            }
            index = starts[p] + o1
        }
    }
}

/// The matmul kernel variants; the best f32 one the CPU has is used unless set.
public enum MatmulKernels {
    public enum Variant: Int32, CaseIterable, Sendable {
        case avx2 = 0
        case avx512 = 1
        case avx512BF16 = 2
        case amxBF16 = 3
        /// Not one to select: prompt rows under `.avx512BF16` (weights repacked into panels of k pairs).
        case avx512BF16Panels = 16
        public var name: String { String(cString: mesh_matmul_variant_name(rawValue)) }
        /// Activations are rounded to bf16 for bf16 weights (bf16 dot products, f32 sums).
        public var roundsActivationsToBF16: Bool { mesh_variant_is_bf16(rawValue) == 1 }
    }

    /// How bf16 weights are multiplied: `.f32` widens them and keeps activations in f32 (what the
    /// transformers-parity tests use); `.bf16` rounds activations to bf16 and uses the CPU's bf16
    /// dot products, as llama.cpp and transformers compute bf16 models.
    public enum Precision: String, CaseIterable, Sendable {
        case f32, bf16
    }

    public static var current: Variant { Variant(rawValue: mesh_matmul_variant()) ?? .avx2 }

    /// Under AMX, which kernels multiply tokens the model generated: `.dot` (AVX-512 BF16 dot
    /// products, faster for one or a few sequences decoding) or `.tiles` (AMX, like prompt tokens;
    /// faster when many sequences decode together). Set once at start-up, before any step: a
    /// token's kernels must not change while requests run.
    public enum DecodeKernels: String, CaseIterable, Sendable { case dot, tiles }
    nonisolated(unsafe) public static var decodeKernels = DecodeKernels.dot

    /// The kernels of one kind of row: bf16 [out, in] products by `bf16`; Q8_0 weights widened for
    /// the AMX tiles when `q8Tiles` (else on the int8 kernel).
    public struct RowKernels: Equatable, Sendable {
        public var bf16: Variant
        public var q8Tiles: Bool
    }

    /// The kernels of prompt rows and of generated rows under the current variant: under AMX, prompt
    /// rows take the tiles and generated ones the dot products (`.dot`) or the tiles (`.tiles`, but
    /// int8 weights on the int8 kernel); under AVX-512 BF16, bf16 weights read in place take the
    /// panels for prompt rows (1.3-1.7x the dot products' prefill here) and the dot products for
    /// generated ones, whatever `decodeKernels` says (repacking per call costs more than it saves for
    /// a few rows: decode 44 against 68 tok/s, measured); weights packed into panels at load
    /// (`Layout.panels`) take the panels for every row; f32 variants: one kind.
    public static var rowKernels: (prompt: RowKernels, generated: RowKernels) {
        switch current {
        case .amxBF16:
            return (RowKernels(bf16: .amxBF16, q8Tiles: true),
                    RowKernels(bf16: decodeKernels == .dot ? .avx512BF16 : .amxBF16, q8Tiles: false))
        case .avx512BF16:
            return (RowKernels(bf16: .avx512BF16Panels, q8Tiles: false), RowKernels(bf16: .avx512BF16, q8Tiles: false))
        default:
            return (RowKernels(bf16: current, q8Tiles: false), RowKernels(bf16: current, q8Tiles: false))
        }
    }

    /// Whether rows of generated tokens should be marked as such (they take other kernels).
    public static var generatedTokensTakeOtherKernels: Bool { rowKernels.prompt != rowKernels.generated }

    /// Switches the variant (tests run each one); false if this CPU lacks it.
    @discardableResult
    public static func use(_ variant: Variant) -> Bool { mesh_set_matmul_variant(variant.rawValue) == 1 }

    /// The variants this CPU can run.
    public static var supported: [Variant] {
        let saved = current
        defer { use(saved) }
        return Variant.allCases.filter { use($0) }
    }

    /// The best variant of `precision` this CPU has (bf16 falls back to f32 without bf16 dot
    /// products); returns it after switching to it.
    @discardableResult
    public static func use(_ precision: Precision) -> Variant {
        let candidates = supported.filter { $0.roundsActivationsToBF16 == (precision == .bf16) }
        let best = candidates.last ?? supported.filter { !$0.roundsActivationsToBF16 }.last ?? .avx2
        use(best)
        return best
    }
}

extension LinearWeight {
    /// bf16 [out, in] weights are what the bf16 kernels read.
    var takesBF16DotProducts: Bool { dtype == .bf16 && layout == .outMajor && !isQ8_0 }
}

extension DType {
    var kernelCode: Int32 {
        switch self {
        case .f32: return Int32(MESH_F32)
        case .bf16: return Int32(MESH_BF16)
        case .f16: return Int32(MESH_F16)
        }
    }
}

/// The plain triple loop, the oracle the fast paths are tested against (Q8_0 weights dequantised;
/// their activations are quantised by the kernels, so compare them with a tolerance).
public func referenceMatmul(_ x: UnsafePointer<Float>, rows: Int, _ weight: LinearWeight,
                            into y: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
    for t in 0..<rows {
        for o in 0..<weight.outFeatures {
            var sum: Double = 0
            for i in 0..<weight.inFeatures { sum += Double(x[t * weight.inFeatures + i]) * Double(weight.element(o, i)) }
            y[t * weight.outFeatures + o] = Float(sum) + (accumulate ? y[t * weight.outFeatures + o] : 0)
        }
    }
}
