/// Matrix products over half-precision (bf16/f16) weights that never expand the whole weight.
enum HalfKernels {
    /// Up to this many rows of x, stream W once with SIMD dot products; above it, widen W in
    /// blocks and use sgemm (widening costs one pass over W, amortised over the rows).
    static let streamingRowLimit = 4

    /// Elements widened per block in the blocked path (16 MiB of f32 scratch).
    static let blockElements = 4 << 20

    // MARK: streaming (decode)

    static func streamingMatmul(_ x: UnsafePointer<Float>, rows: Int, _ w: LinearWeight,
                                into y: UnsafeMutablePointer<Float>, accumulate: Bool) {
        switch w.layout {
        case .outMajor: streamingOutMajor(x, rows: rows, w, into: y, accumulate: accumulate)
        case .inMajor: streamingInMajor(x, rows: rows, w, into: y, accumulate: accumulate)
        }
    }

    /// W stored [out, in]: one dot product per (token, output row); each row is read once.
    private static func streamingOutMajor(_ x: UnsafePointer<Float>, rows: Int, _ w: LinearWeight,
                                          into y: UnsafeMutablePointer<Float>, accumulate: Bool) {
        let (out, inner) = (w.outFeatures, w.inFeatures)
        if rows == 1 && w.dtype == .bf16 {
            singleRowBF16(x, [(w, y)], accumulate: accumulate)
            return
        }
        Parallel.forRanges(out, minimumPerTask: 64) { range in
            let widened = UnsafeMutablePointer<Float>.allocate(capacity: inner)
            defer { widened.deallocate() }
            for o in range {
                convertToFloat(w.storedRow(o), dtype: w.dtype, count: inner, into: widened)
                for t in 0..<rows {
                    let value = dot(widened, x + t * inner, inner)
                    y[t * out + o] = accumulate ? y[t * out + o] + value : value
                }
            }
        }
    }

    /// One input row through several [out, in] bf16 weights (e.g. q, k and v) in one parallel
    /// pass: one thread hand-off instead of one per weight, which matters at decode where each
    /// product takes tens of microseconds.
    static func singleRowBF16(_ x: UnsafePointer<Float>, _ products: [(LinearWeight, UnsafeMutablePointer<Float>)], accumulate: Bool) {
        let inner = products[0].0.inFeatures
        // Deinterleave x once so each weight row is widened with shifts and masks only.
        let half = (inner + 1) / 2
        let split = UnsafeMutablePointer<Float>.allocate(capacity: 2 * half)
        defer { split.deallocate() }
        for j in 0..<half {
            split[j] = x[2 * j]
            split[half + j] = 2 * j + 1 < inner ? x[2 * j + 1] : 0
        }
        var starts: [Int] = []
        var total = 0
        for (w, _) in products { starts.append(total); total += w.outFeatures }
        Parallel.forRanges(total, minimumPerTask: 64) { range in
            var p = starts.lastIndex { $0 <= range.lowerBound }!
            for index in range {
                while p + 1 < products.count, index >= starts[p + 1] { p += 1 }
                let (w, y) = products[p]
                let o = index - starts[p]
                let value = dotBF16(w.storedRow(o), even: split, odd: split + half, inner)
                y[o] = accumulate ? y[o] + value : value
            }
        }
    }

    /// W stored [in, out]: y[t, :] += x[t, i] · W[i, :], splitting the outputs across threads.
    private static func streamingInMajor(_ x: UnsafePointer<Float>, rows: Int, _ w: LinearWeight,
                                         into y: UnsafeMutablePointer<Float>, accumulate: Bool) {
        let (out, inner) = (w.outFeatures, w.inFeatures)
        Parallel.forRanges(out, minimumPerTask: 256) { range in
            let width = range.count
            let widened = UnsafeMutablePointer<Float>.allocate(capacity: width)
            let sums = UnsafeMutablePointer<Float>.allocate(capacity: rows * width)
            defer { widened.deallocate(); sums.deallocate() }
            sums.initialize(repeating: 0, count: rows * width)
            for i in 0..<inner {
                convertToFloat(w.storedRow(i) + range.lowerBound * w.dtype.byteSize, dtype: w.dtype, count: width, into: widened)
                for t in 0..<rows {
                    axpy(x[t * inner + i], widened, sums + t * width, width)
                }
            }
            for t in 0..<rows {
                let target = y + t * out + range.lowerBound
                for j in 0..<width { target[j] = accumulate ? target[j] + sums[t * width + j] : sums[t * width + j] }
            }
        }
    }

    // MARK: blocked (prefill, expert batches)

    static func blockedMatmul(_ x: UnsafePointer<Float>, rows: Int, _ w: LinearWeight,
                              into y: UnsafeMutablePointer<Float>, accumulate: Bool) {
        let rowLength = w.storedRowLength
        let rowsPerBlock = max(1, min(w.storedRowCount, blockElements / max(1, rowLength)))
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: rowsPerBlock * rowLength)
        defer { scratch.deallocate() }
        switch w.layout {
        case .outMajor:
            // Widen output rows [o0, o1) into scratch [o1-o0, in], then y[:, o0..<o1] = x · scratchᵀ.
            var o0 = 0
            while o0 < w.outFeatures {
                let o1 = min(w.outFeatures, o0 + rowsPerBlock)
                widenRows(w, o0..<o1, into: scratch)
                let block = w.outputs(o0..<o1)
                blasMatmul(x, rows: rows, scratch, weight: block, leadingDimension: rowLength,
                           into: y + o0, ldc: w.outFeatures, accumulate: accumulate)
                o0 = o1
            }
        case .inMajor:
            // Whole [in, out] view widened in groups of input rows; sgemm accumulates the partial sums over i.
            var i0 = 0
            var first = true
            while i0 < w.inFeatures {
                let i1 = min(w.inFeatures, i0 + rowsPerBlock)
                widenRows(w, i0..<i1, into: scratch)
                let block = LinearWeight(data: w.data, dtype: .f32, outFeatures: w.outFeatures, inFeatures: i1 - i0,
                                         layout: .inMajor, leadingDimension: rowLength, owner: w.owner)
                let xBlock = UnsafeMutablePointer<Float>.allocate(capacity: rows * (i1 - i0))
                for t in 0..<rows { (xBlock + t * (i1 - i0)).update(from: x + t * w.inFeatures + i0, count: i1 - i0) }
                blasMatmul(xBlock, rows: rows, scratch, weight: block, leadingDimension: rowLength,
                           into: y, ldc: w.outFeatures, accumulate: accumulate || !first)
                xBlock.deallocate()
                first = false
                i0 = i1
            }
        }
    }

    /// Widens stored rows `range` (only the part that belongs to the view) into a dense f32 block.
    private static func widenRows(_ w: LinearWeight, _ range: Range<Int>, into scratch: UnsafeMutablePointer<Float>) {
        let rowLength = w.storedRowLength
        Parallel.forRanges(range.count, minimumPerTask: 16) { part in
            for r in part {
                convertToFloat(w.storedRow(range.lowerBound + r), dtype: w.dtype, count: rowLength, into: scratch + r * rowLength)
            }
        }
    }
}
