import CKernels

/// `y[T, out] = x[T, in] · Wᵀ` (+ `y` when `accumulate`), x and y f32, row-major.
///
/// Weights stay in their file dtype (f32, bf16, f16) and are widened as they are read. Every
/// output element comes out of the same operations whatever T is, how the rows are tiled and
/// how the outputs are split over threads (`mesh_matmul`), so a token's activations never
/// depend on the other tokens of its step: batching cannot change a greedy token.
public func matmul(_ x: UnsafePointer<Float>, rows: Int, _ weight: LinearWeight,
                   into y: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
    matmul(x, rows: rows, [(weight, y)], accumulate: accumulate)
}

/// Several weights applied to the same input x [rows, in]: `products[i].1 = x · products[i].0ᵀ`,
/// as one parallel pass over all their outputs (one thread hand-off instead of one per weight,
/// which matters at decode where each product takes tens of microseconds).
public func matmul(_ x: UnsafePointer<Float>, rows: Int, _ products: [(LinearWeight, UnsafeMutablePointer<Float>)],
                   accumulate: Bool = false) {
    guard rows > 0, !products.isEmpty else { return }
    var starts: [Int] = []
    var total = 0
    for (weight, _) in products { starts.append(total); total += weight.outFeatures }
    // Enough outputs per thread that a hand-off pays: a few thousand multiply-adds at least.
    let work = rows * products[0].0.inFeatures
    Parallel.forRanges(total, minimumPerTask: max(16, min(256, (1 << 18) / max(1, work)))) { range in
        var p = starts.lastIndex { $0 <= range.lowerBound }!
        var index = range.lowerBound
        while index < range.upperBound {
            while p + 1 < products.count, index >= starts[p + 1] { p += 1 }
            let (weight, y) = products[p]
            let o0 = index - starts[p]
            let o1 = min(weight.outFeatures, range.upperBound - starts[p])
            mesh_matmul(x, rows, weight.inFeatures, weight.data, weight.dtype.kernelCode,
                        weight.layout == .inMajor ? 1 : 0, weight.inFeatures, weight.leadingDimension,
                        y, weight.outFeatures, o0, o1, accumulate ? 1 : 0)
            index = starts[p] + o1
        }
    }
}

/// The matmul kernel variants (vector widths); the best one the CPU has is used unless set.
public enum MatmulKernels {
    public enum Variant: Int32, CaseIterable, Sendable {
        case avx2 = 0
        case avx512 = 1
        public var name: String { String(cString: mesh_matmul_variant_name(rawValue)) }
    }

    public static var current: Variant { Variant(rawValue: mesh_matmul_variant()) ?? .avx2 }

    /// Switches the variant (tests run each one); false if this CPU lacks it.
    @discardableResult
    public static func use(_ variant: Variant) -> Bool { mesh_set_matmul_variant(variant.rawValue) == 1 }

    /// The variants this CPU can run.
    public static var supported: [Variant] {
        let saved = current
        defer { use(saved) }
        return Variant.allCases.filter { use($0) }
    }
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

/// The plain triple loop, the oracle the fast paths are tested against.
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
