import CKernels
import MeshTensors
import XCTest

/// Fast matmul paths (BLAS, streaming half kernels, blocked half kernels) against the reference loop.
final class MatmulTests: XCTestCase {
    /// Owns weight bytes for a LinearWeight.
    final class Storage {
        let data: UnsafeMutableRawPointer
        init(_ bytes: Data) {
            data = .allocate(byteCount: max(bytes.count, 1), alignment: 64)
            bytes.withUnsafeBytes { data.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        }
        deinit { data.deallocate() }
    }

    func randomValues(_ count: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2000) / 1000 - 1
        }
    }

    func check(dtype: DType, layout: LinearWeight.Layout, rows: Int, out: Int, inner: Int, slice: Range<Int>? = nil,
               file: StaticString = #filePath, line: UInt = #line) {
        let storedRows = layout == .outMajor ? out : inner
        let storedColumns = layout == .outMajor ? inner : out
        let storage = Storage(SafetensorsWriter.bytes(randomValues(storedRows * storedColumns, seed: 7), as: dtype))
        var weight = LinearWeight(data: storage.data, dtype: dtype, outFeatures: out, inFeatures: inner,
                                  layout: layout, leadingDimension: storedColumns, owner: storage)
        if let slice { weight = weight.outputs(slice) }
        let x = randomValues(rows * inner, seed: 3)
        // The bf16 variants round activations to bf16 for bf16 [out, in] weights: the reference does too.
        let rounds = MatmulKernels.current.roundsActivationsToBF16 && dtype == .bf16 && layout == .outMajor
        let referenceX = rounds ? x.map { bf16ToFloat(floatToBF16($0)) } : x
        var fast = [Float](repeating: 0.5, count: rows * weight.outFeatures)
        var reference = fast
        for accumulate in [false, true] {
            matmul(x, rows: rows, weight, into: &fast, accumulate: accumulate)
            referenceMatmul(referenceX, rows: rows, weight, into: &reference, accumulate: accumulate)
            let maxDiff = zip(fast, reference).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(maxDiff, 1e-3, "\(MatmulKernels.current.name) \(dtype) \(layout) rows \(rows) accumulate \(accumulate): max diff \(maxDiff)", file: file, line: line)
        }
    }

    /// Runs `body` once per kernel variant this CPU has (AVX2, AVX-512, AVX-512 BF16, AMX).
    func forEachVariant(_ body: () -> Void) {
        let saved = MatmulKernels.current
        for variant in MatmulKernels.supported {
            MatmulKernels.use(variant)
            body()
        }
        MatmulKernels.use(saved)
    }

    func testAllPathsMatchReference() {
        forEachVariant(allPathsMatchReference)
    }

    func allPathsMatchReference() {
        for dtype in DType.allCases {
            for layout in [LinearWeight.Layout.outMajor, .inMajor] {
                for rows in [1, 3, 5, 9, 17, 37] {
                    check(dtype: dtype, layout: layout, rows: rows, out: 70, inner: 131)
                    check(dtype: dtype, layout: layout, rows: rows, out: 9, inner: 64)
                    check(dtype: dtype, layout: layout, rows: rows, out: 67, inner: 96)
                }
            }
        }
    }

    func testSlicedFusedViewsMatchReference() {
        forEachVariant(slicedFusedViewsMatchReference)
    }

    func slicedFusedViewsMatchReference() {
        // The gate half and the up half of a fused [gate | up] tensor, in both storages.
        for dtype in DType.allCases {
            for layout in [LinearWeight.Layout.outMajor, .inMajor] {
                for rows in [1, 20] {
                    check(dtype: dtype, layout: layout, rows: rows, out: 96, inner: 40, slice: 0..<48)
                    check(dtype: dtype, layout: layout, rows: rows, out: 96, inner: 40, slice: 48..<96)
                }
            }
        }
    }

    func testSeveralWeightsOnOneInputMatchSeparateProducts() {
        let storages = (0..<3).map { Storage(SafetensorsWriter.bytes(randomValues(($0 + 1) * 40 * 96, seed: UInt64($0 + 11)), as: .bf16)) }
        let weights = storages.enumerated().map { index, storage in
            LinearWeight(data: storage.data, dtype: .bf16, outFeatures: (index + 1) * 40, inFeatures: 96, layout: .outMajor, leadingDimension: 96, owner: storage)
        }
        for rows in [1, 3] {
            let x = randomValues(rows * 96, seed: 5)
            let outputs = weights.map { UnsafeMutablePointer<Float>.allocate(capacity: rows * $0.outFeatures) }
            defer { outputs.forEach { $0.deallocate() } }
            matmul(x, rows: rows, Array(zip(weights, outputs)))
            for (weight, output) in zip(weights, outputs) {
                var reference = [Float](repeating: 0, count: rows * weight.outFeatures)
                referenceMatmul(x, rows: rows, weight, into: &reference)
                let diff = (0..<reference.count).map { abs(output[$0] - reference[$0]) }.max() ?? 1
                XCTAssertLessThan(diff, 1e-3, "rows \(rows) out \(weight.outFeatures)")
            }
        }
    }

    /// Quantisation follows llama.cpp's quantize_row_q8_0: d = max|v| / 127 (stored as f16),
    /// q = round(v / d), zeros after the row's end; panels hold the same values and scales.
    func testQ8_0QuantisationFollowsLlamaCpp() throws {
        try XCTSkipUnless(LinearWeight.q8Supported, "this CPU has no int8 kernels")
        var row = [Float](repeating: 0, count: 40)
        row[0] = 0.5; row[1] = -1.0; row[2] = 0.25; row[3] = 0.003; row[32] = 2.0; row[33] = -0.75
        let storage = Storage(SafetensorsWriter.bytes(row, as: .f32))
        let source = LinearWeight(data: storage.data, dtype: .f32, outFeatures: 1, inFeatures: 40, layout: .outMajor,
                                  leadingDimension: 40, owner: storage)
        let weight = source.quantizedQ8_0(panels: false)
        XCTAssertTrue(weight.isQ8_0)
        XCTAssertEqual(weight.byteCount, 2 * 34)
        let values = (0..<64).map { weight.data.load(fromByteOffset: $0, as: Int8.self) }
        XCTAssertEqual(Array(values[0..<4]), [64, -127, 32, 0])   // 63.5 rounds away from zero, as roundf
        XCTAssertEqual(Array(values[32..<34]), [127, -48])         // -47.625 → -48
        XCTAssertEqual(Array(values[34..<64]), [Int8](repeating: 0, count: 30))
        XCTAssertEqual(f16ToFloat(weight.q8Scales![0]), f16ToFloat(floatToF16(1 / 127)))
        XCTAssertEqual(f16ToFloat(weight.q8Scales![1]), f16ToFloat(floatToF16(2 / 127)))
        let panels = source.quantizedQ8_0(panels: true)
        XCTAssertEqual(panels.layout, .q8Panels)
        XCTAssertEqual((0..<40).map { panels.element(0, $0) }, (0..<40).map { weight.element(0, $0) })
        // A bigger weight: every value and scale in its panel, zeros past the last output.
        let (out, inner) = (37, 70)
        let big = Storage(SafetensorsWriter.bytes(randomValues(out * inner, seed: 2), as: .bf16))
        let bigSource = LinearWeight(data: big.data, dtype: .bf16, outFeatures: out, inFeatures: inner, layout: .outMajor,
                                     leadingDimension: inner, owner: big)
        let (bigRows, bigPanels) = (bigSource.quantizedQ8_0(panels: false), bigSource.quantizedQ8_0(panels: true))
        for o in 0..<out {
            XCTAssertEqual((0..<inner).map { bigPanels.element(o, $0) }, (0..<inner).map { bigRows.element(o, $0) }, "output \(o)")
        }
        XCTAssertEqual(mesh_q8_panels_value(bigPanels.data, inner, out, 5), 0)
        XCTAssertEqual(mesh_q8_panels_scale(bigPanels.data, inner, out + 2, 64), 0)
    }

    /// Q8_0 products against the dequantised weights: the only error left is the activations'
    /// quantisation, at most half a step (max|x| / 254 per block of 32) times Σ|w| per block.
    func testQ8_0ProductsStayWithinTheActivationQuantisationBound() throws {
        try XCTSkipUnless(LinearWeight.q8Supported, "this CPU has no int8 kernels")
        for dtype in DType.allCases {
            for (layout, panels) in [(LinearWeight.Layout.outMajor, false), (.inMajor, false), (.outMajor, true), (.inMajor, true)] {
                for (rows, out, inner) in [(1, 70, 131), (5, 9, 64), (37, 67, 96), (9, 35, 40)] {
                    let stored = layout == .outMajor ? inner : out
                    let storage = Storage(SafetensorsWriter.bytes(randomValues(out * inner, seed: 7), as: dtype))
                    let whole = LinearWeight(data: storage.data, dtype: dtype, outFeatures: out, inFeatures: inner,
                                             layout: layout, leadingDimension: stored, owner: storage).quantizedQ8_0(panels: panels)
                    // Panels also as a slice of outputs that starts inside a panel.
                    let weight = panels && out > 20 ? whole.outputs(3..<(out - 2)) : whole
                    let out = weight.outFeatures
                    let x = randomValues(rows * inner, seed: 3)
                    var fast = [Float](repeating: 0, count: rows * out)
                    var reference = fast
                    matmul(x, rows: rows, weight, into: &fast)
                    referenceMatmul(x, rows: rows, weight, into: &reference)
                    for t in 0..<rows {
                        for o in 0..<out {
                            var bound: Float = 1e-4
                            for block in stride(from: 0, to: inner, by: 32) {
                                let ks = block..<min(inner, block + 32)
                                let step = (ks.map { abs(x[t * inner + $0]) }.max() ?? 0) / 127
                                bound += step / 2 * ks.reduce(0) { $0 + abs(weight.element(o, $1)) } * 1.001
                            }
                            let diff = abs(fast[t * out + o] - reference[t * out + o])
                            XCTAssertLessThanOrEqual(diff, bound, "\(dtype) \(layout) panels \(panels) [\(rows), \(out), \(inner)] at (\(t), \(o))")
                        }
                    }
                }
            }
        }
    }

    /// Under AMX, rows marked as generated tokens take the AVX-512 BF16 dot products and the others
    /// the tiles, whatever the mix: each row equals what its own kernel gives for it alone.
    func testGeneratedRowsTakeTheDotProductsUnderAMX() throws {
        let saved = MatmulKernels.current
        defer { MatmulKernels.use(saved) }
        try XCTSkipUnless(MatmulKernels.use(.amxBF16), "this CPU (or kernel) has no AMX")
        let (rows, out, inner) = (9, 70, 96)
        let storage = Storage(SafetensorsWriter.bytes(randomValues(out * inner, seed: 7), as: .bf16))
        let weight = LinearWeight(data: storage.data, dtype: .bf16, outFeatures: out, inFeatures: inner, layout: .outMajor,
                                  leadingDimension: inner, owner: storage)
        let x = randomValues(rows * inner, seed: 3)
        let generated = (0..<rows).map { $0 % 3 == 1 }
        var mixed = [Float](repeating: 0.5, count: rows * out)
        matmul(x, rows: rows, weight, into: &mixed, accumulate: true, generated: generated)
        for variant in [MatmulKernels.Variant.amxBF16, .avx512BF16] {
            MatmulKernels.use(variant)
            var alone = [Float](repeating: 0.5, count: rows * out)
            matmul(x, rows: rows, weight, into: &alone, accumulate: true)
            for row in 0..<rows where generated[row] == (variant == .avx512BF16) {
                XCTAssertEqual(Array(mixed[(row * out)..<((row + 1) * out)]), Array(alone[(row * out)..<((row + 1) * out)]),
                               "row \(row) should equal \(variant.name)")
            }
        }
        // The two kernels round differently: the split is visible.
        MatmulKernels.use(.amxBF16)
        var allTiles = [Float](repeating: 0.5, count: rows * out)
        matmul(x, rows: rows, weight, into: &allTiles, accumulate: true)
        XCTAssertNotEqual(mixed, allTiles)
    }

    /// Under AMX, Q8_0 weights widened to bf16 for the tiles (prompt rows) stay within bf16's
    /// rounding of the dequantised product, and generated rows equal the int8 kernel's result.
    func testQ8_0ThroughTilesUnderAMX() throws {
        let saved = MatmulKernels.current
        defer { MatmulKernels.use(saved) }
        try XCTSkipUnless(LinearWeight.q8Supported && MatmulKernels.use(.amxBF16), "this CPU (or kernel) has no AMX or VNNI")
        let (rows, out, inner) = (21, 70, 131)
        let storage = Storage(SafetensorsWriter.bytes(randomValues(out * inner, seed: 7), as: .bf16))
        let weight = LinearWeight(data: storage.data, dtype: .bf16, outFeatures: out, inFeatures: inner, layout: .outMajor,
                                  leadingDimension: inner, owner: storage).quantizedQ8_0()
        let x = randomValues(rows * inner, seed: 3)
        var tiles = [Float](repeating: 0, count: rows * out), reference = tiles
        matmul(x, rows: rows, weight, into: &tiles)
        referenceMatmul(x, rows: rows, weight, into: &reference)
        for t in 0..<rows {
            for o in 0..<out {
                // x and the widened weight each round to bf16 (relative 2⁻⁹), products then add in f32.
                let magnitude = (0..<inner).reduce(Float(0)) { $0 + abs(x[t * inner + $1] * weight.element(o, $1)) }
                XCTAssertLessThanOrEqual(abs(tiles[t * out + o] - reference[t * out + o]), magnitude * 3 / 512 + 1e-4, "(\(t), \(o))")
            }
        }
        let generated = (0..<rows).map { $0 % 2 == 0 }
        var mixed = [Float](repeating: 0, count: rows * out)
        matmul(x, rows: rows, weight, into: &mixed, generated: generated)
        MatmulKernels.use(.avx512BF16)
        var int8 = [Float](repeating: 0, count: rows * out)
        matmul(x, rows: rows, weight, into: &int8)
        for row in 0..<rows {
            let expected = generated[row] ? int8 : tiles
            XCTAssertEqual(Array(mixed[(row * out)..<((row + 1) * out)]), Array(expected[(row * out)..<((row + 1) * out)]), "row \(row)")
        }
    }

    /// MXFP4 weights (random codes, scales 2^-3 … 2^2) on every variant (portable loop under AVX2,
    /// vector lookups under AVX-512): close to the reference loop over the exact dequantised values,
    /// and each row bit-identical alone, in batches of other sizes and on 1–3 threads.
    func testMXFP4MatchesTheReferenceAndEveryRowIsBatchInvariant() {
        let (out, inner, rows) = (70, 128, 9)
        var state: UInt64 = 17
        func byte() -> UInt8 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
        let codes = Storage(Data((0..<(out * inner / 2)).map { _ in byte() }))
        let scales = Storage(Data((0..<(out * inner / 32)).map { _ in 124 + byte() % 6 }))
        let weight = LinearWeight(data: codes.data, dtype: .f32, outFeatures: out, inFeatures: inner, layout: .outMajor,
                                  leadingDimension: inner / 2, owner: codes,
                                  mxfp4Scales: UnsafePointer(scales.data.assumingMemoryBound(to: UInt8.self)),
                                  mxfp4ScaleStride: inner / 32)
        let x = randomValues(rows * inner, seed: 5)
        let threads = Parallel.coreCount
        defer { Parallel.setThreadCount(threads) }
        forEachVariant {
            let name = MatmulKernels.current.name
            var fast = [Float](repeating: 0, count: rows * out), reference = fast
            matmul(x, rows: rows, weight, into: &fast)
            referenceMatmul(x, rows: rows, weight, into: &reference)
            let maxDiff = zip(fast, reference).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(maxDiff, 1e-3, "\(name): MXFP4 max diff \(maxDiff)")
            for threadCount in [1, 2, 3] {
                Parallel.setThreadCount(threadCount)
                for row in [0, 4, 8] {
                    for size in [1, 2, 5] where row + size <= rows {
                        var some = [Float](repeating: 0, count: size * out)
                        x.withUnsafeBufferPointer { matmul($0.baseAddress! + row * inner, rows: size, weight, into: &some) }
                        XCTAssertEqual(Array(some[0..<out]), Array(fast[(row * out)..<((row + 1) * out)]),
                                       "\(name): MXFP4 row \(row) in a batch of \(size) on \(threadCount) threads")
                    }
                }
            }
        }
        withExtendedLifetime(scales) {}
    }

    func testLongRowsCrossChunkBoundaries() {
        // More rows than one chunk of x holds (512 KiB / (4 · 2048) = 64 rows), an odd output count.
        forEachVariant { check(dtype: .bf16, layout: .outMajor, rows: 70, out: 2101, inner: 2048) }
    }

    /// Each row's result must be bit-identical whatever else is in the batch and however the
    /// outputs are split over threads: batching must never change a greedy token.
    func testRowsAreBitIdenticalAloneAndInABatch() {
        XCTAssertTrue(MatmulKernels.supported.contains(.avx2))
        print("matmul kernel variants on this CPU: \(MatmulKernels.supported.map(\.name))")
        forEachVariant(rowsAreBitIdenticalAloneAndInABatch)
    }

    func rowsAreBitIdenticalAloneAndInABatch() {
        for (out, inner) in [(77, 133), (96, 128)] {
            for dtype in DType.allCases {
                for layout in [LinearWeight.Layout.outMajor, .inMajor] {
                    rowIsBitIdenticalAloneAndInABatch(dtype: dtype, layout: layout, out: out, inner: inner)
                    if LinearWeight.q8Supported {
                        for panels in [false, true] {
                            rowIsBitIdenticalAloneAndInABatch(dtype: dtype, layout: layout, out: out, inner: inner, q8: panels ? .panels : .rows)
                        }
                    }
                }
            }
        }
    }

    enum Q8Form { case none, rows, panels }

    func rowIsBitIdenticalAloneAndInABatch(dtype: DType, layout: LinearWeight.Layout, out: Int, inner: Int, q8: Q8Form = .none) {
        let rows = 37
        let storage = Storage(SafetensorsWriter.bytes(randomValues(out * inner, seed: 9), as: dtype))
        let stored = LinearWeight(data: storage.data, dtype: dtype, outFeatures: out, inFeatures: inner, layout: layout,
                                  leadingDimension: layout == .outMajor ? inner : out, owner: storage)
        let weight = q8 == .none ? stored : stored.quantizedQ8_0(panels: q8 == .panels)
        let x = randomValues(rows * inner, seed: 4)
        var batch = [Float](repeating: 0, count: rows * out)
        matmul(x, rows: rows, weight, into: &batch)
        let threads = Parallel.coreCount
        defer { Parallel.setThreadCount(threads) }
        for (index, threadCount) in [1, 2, 3].enumerated() {
            Parallel.setThreadCount(threadCount)
            let row = index * 11 + 5
            let variant = MatmulKernels.current.name + (q8 == .none ? "" : " q8_0 \(q8)")
            var alone = [Float](repeating: 0, count: out)
            x.withUnsafeBufferPointer { matmul($0.baseAddress! + row * inner, rows: 1, weight, into: &alone) }
            XCTAssertEqual(alone, Array(batch[(row * out)..<((row + 1) * out)]),
                           "\(variant) \(dtype) \(layout): row \(row) alone on \(threadCount) threads differs from the batch")
            for size in [3, 5, 9, 17] {
                var some = [Float](repeating: 0, count: size * out)
                x.withUnsafeBufferPointer { matmul($0.baseAddress! + row * inner, rows: size, weight, into: &some) }
                XCTAssertEqual(Array(some[0..<out]), alone, "\(variant) \(dtype) \(layout): row \(row) in a batch of \(size)")
            }
        }
    }
}
