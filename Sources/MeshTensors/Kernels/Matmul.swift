import COpenBLAS

/// `y[T, out] = x[T, in] · Wᵀ` (+ `y` when `accumulate`), x and y f32, row-major.
///
/// f32 weights go straight to BLAS. Half-precision weights (bf16, f16) stay half in memory:
/// for a few tokens (decode) a SIMD kernel widens each weight row as it streams it, reading
/// W once; for larger batches (prefill, expert batches) W is widened block by block into a
/// scratch buffer and multiplied with sgemm, so the arithmetic runs at BLAS speed.
public func matmul(_ x: UnsafePointer<Float>, rows: Int, _ weight: LinearWeight,
                   into y: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
    guard rows > 0, weight.outFeatures > 0 else { return }
    switch weight.dtype {
    case .f32:
        blasMatmul(x, rows: rows, weight.data.assumingMemoryBound(to: Float.self), weight: weight,
                   leadingDimension: weight.leadingDimension, into: y, ldc: weight.outFeatures, accumulate: accumulate)
    case .bf16, .f16:
        if rows <= HalfKernels.streamingRowLimit {
            HalfKernels.streamingMatmul(x, rows: rows, weight, into: y, accumulate: accumulate)
        } else {
            HalfKernels.blockedMatmul(x, rows: rows, weight, into: y, accumulate: accumulate)
        }
    }
}

/// Several weights applied to the same input x [rows, in]: `products[i].1 = x · products[i].0ᵀ`.
/// A single decode row through bf16 [out, in] weights runs as one parallel pass.
public func matmul(_ x: UnsafePointer<Float>, rows: Int, _ products: [(LinearWeight, UnsafeMutablePointer<Float>)]) {
    let fusable = rows == 1 && products.allSatisfy {
        $0.0.dtype == .bf16 && $0.0.layout == .outMajor && $0.0.inFeatures == products[0].0.inFeatures
    }
    if fusable, !products.isEmpty {
        HalfKernels.singleRowBF16(x, products, accumulate: false)
    } else {
        for (weight, y) in products { matmul(x, rows: rows, weight, into: y) }
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

/// sgemm/sgemv on an f32 weight block whose layout and leading dimension come from `weight`.
func blasMatmul(_ x: UnsafePointer<Float>, rows: Int, _ w: UnsafePointer<Float>, weight: LinearWeight,
                leadingDimension: Int, into y: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    let (out, inner) = (Int32(weight.outFeatures), Int32(weight.inFeatures))
    let beta: Float = accumulate ? 1 : 0
    if rows == 1 {
        // y = W x for [out, in] storage; y = Wᵀ x for [in, out] storage.
        if weight.layout == .outMajor {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, out, inner, 1, w, Int32(leadingDimension), x, 1, beta, y, 1)
        } else {
            cblas_sgemv(CblasRowMajor, CblasTrans, inner, out, 1, w, Int32(leadingDimension), x, 1, beta, y, 1)
        }
        return
    }
    let transB = weight.layout == .outMajor ? CblasTrans : CblasNoTrans
    cblas_sgemm(CblasRowMajor, CblasNoTrans, transB, Int32(rows), out, inner, 1,
                x, inner, w, Int32(leadingDimension), beta, y, Int32(ldc))
}
