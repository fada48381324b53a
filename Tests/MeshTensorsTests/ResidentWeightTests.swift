import Foundation
import MeshTensors
import XCTest

/// `residentCopy`: weights copied into huge-page memory read and multiply exactly as their source,
/// whatever view the source is, and dropping the source's mapped pages loses nothing.
final class ResidentWeightTests: XCTestCase {
    func values(_ count: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2000) / 1000 - 1
        }
    }

    /// Every element and every product (one row and several) of the copy equals the source's.
    func assertSameWeight(_ copy: LinearWeight, _ source: LinearWeight, _ what: String,
                          file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(copy.outFeatures, source.outFeatures, what, file: file, line: line)
        XCTAssertEqual(copy.inFeatures, source.inFeatures, what, file: file, line: line)
        XCTAssertTrue(copy.owner is HugePageMemory, "\(what): the copy owns huge-page memory", file: file, line: line)
        XCTAssertNotEqual(copy.data, source.data, what, file: file, line: line)
        var mismatches = 0
        for o in 0..<source.outFeatures {
            for i in 0..<source.inFeatures where copy.element(o, i) != source.element(o, i) { mismatches += 1 }
        }
        XCTAssertEqual(mismatches, 0, "\(what): elements differ", file: file, line: line)
        for rows in [1, 5] {
            let x = values(rows * source.inFeatures, seed: 11)
            var fromCopy = [Float](repeating: 0, count: rows * source.outFeatures), fromSource = fromCopy
            matmul(x, rows: rows, copy, into: &fromCopy)
            matmul(x, rows: rows, source, into: &fromSource)
            XCTAssertEqual(fromCopy, fromSource, "\(what): \(rows)-row products differ", file: file, line: line)
        }
    }

    func testCopiesOfEveryKindOfViewEqualTheirSource() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("resident-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("w.safetensors")
        let (out, inner) = (96, 160)
        try SafetensorsWriter.write([
            .init(name: "bf16", dtype: .bf16, shape: [out, inner], bytes: SafetensorsWriter.bytes(values(out * inner, seed: 1), as: .bf16)),
            .init(name: "f32_in_major", dtype: .f32, shape: [inner, 2 * out],
                  bytes: SafetensorsWriter.bytes(values(inner * 2 * out, seed: 2), as: .f32)),
            .init(name: "f16", dtype: .f16, shape: [out, inner], bytes: SafetensorsWriter.bytes(values(out * inner, seed: 3), as: .f16)),
            .init(name: "codes", dtypeName: "U8", shape: [out, inner / 32, 16],
                  bytes: Data((0..<(out * inner / 2)).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 7) })),
            .init(name: "scales", dtypeName: "U8", shape: [out, inner / 32], bytes: Data((0..<(out * inner / 32)).map { 124 + UInt8($0 % 6) })),
        ], to: url)
        let file = try SafetensorsFile(path: url.path)
        let bf16 = try LinearWeight(file.tensor("bf16"))
        let inMajor = try LinearWeight(inMajor: file.tensor("f32_in_major"))
        let f16 = try LinearWeight(file.tensor("f16"))
        let mxfp4 = try LinearWeight(mxfp4Blocks: file.byteTensor("codes"), scales: file.byteTensor("scales"))
        let views: [(String, LinearWeight)] = [
            ("bf16 [out, in]", bf16), ("bf16 outputs 8..<40", bf16.outputs(8..<40)), ("bf16 inputs 32..<96", bf16.inputs(32..<96)),
            ("bf16 every other output", bf16.everyOtherOutput(from: 1)), ("f32 [in, out] second half", inMajor.outputs(out..<(2 * out))),
            ("f16 [out, in]", f16), ("MXFP4", mxfp4), ("MXFP4 inputs 64..<160", mxfp4.inputs(64..<160)),
            ("MXFP4 every other output", mxfp4.everyOtherOutput(from: 0)),
        ]
        for (what, view) in views {
            // Copied first: the source's pages are released, and reading the source again (as the
            // assertions do, and as a neighbouring tensor sharing a page would) maps them anew.
            assertSameWeight(view.residentCopy(), view, what)
        }
        // Q8_0 weights are copies already.
        let q8 = bf16.quantizedQ8_0()
        XCTAssertEqual(q8.residentCopy().data, q8.data)
    }

    func testLargeBlocksAreAlignedForHugePages() {
        let memory = HugePageMemory(byteCount: 3 << 20)
        XCTAssertEqual(Int(bitPattern: memory.pointer) % (2 << 20), 0)
        memory.pointer.initializeMemory(as: UInt8.self, repeating: 7, count: memory.byteCount)
        XCTAssertEqual(memory.pointer.load(fromByteOffset: memory.byteCount - 1, as: UInt8.self), 7)
        let small = HugePageMemory(byteCount: 100)
        XCTAssertEqual(Int(bitPattern: small.pointer) % 64, 0)
    }

    /// Under AVX-512 BF16 without AMX, bf16 [out, in] copies are packed into panels: their products
    /// match the reference loop, equal the source's bit for bit (its prompt rows repack the same
    /// panels per call), whatever the rows, the split into products, or whether rows are generated
    /// tokens; another variant meeting them computes them in f32.
    func testPanelsPackedAtLoadMatchTheReferenceAndTheirSource() throws {
        let saved = MatmulKernels.current
        defer { MatmulKernels.use(saved) }
        guard MatmulKernels.use(.avx512BF16) else { throw XCTSkip("this CPU has no AVX-512 BF16") }
        final class Bytes { let data: Data; init(_ data: Data) { self.data = data } }
        for (out, inner) in [(70, 160), (64, 1024), (33, 45)] {
            let bytes = Bytes(SafetensorsWriter.bytes(values(out * inner, seed: UInt64(out)), as: .bf16))
            try bytes.data.withUnsafeBytes { raw in
                let source = LinearWeight(data: raw.baseAddress!, dtype: .bf16, outFeatures: out, inFeatures: inner,
                                          layout: .outMajor, leadingDimension: inner, owner: bytes)
                let packed = source.residentCopy()
                XCTAssertEqual(packed.layout, .panels)
                let rows = 11
                let x = values(rows * inner, seed: 5)
                let rounded = x.map { bf16ToFloat(floatToBF16($0)) }
                var fast = [Float](repeating: 0.25, count: rows * out), reference = fast, fromSource = fast
                matmul(x, rows: rows, packed, into: &fast, accumulate: true)
                referenceMatmul(rounded, rows: rows, source, into: &reference, accumulate: true)
                matmul(x, rows: rows, source, into: &fromSource, accumulate: true)
                let maxDiff = zip(fast, reference).map { abs($0 - $1) }.max() ?? 0
                XCTAssertLessThan(maxDiff, 1e-3, "[\(out), \(inner)]: packed panels against the reference")
                XCTAssertEqual(fast, fromSource, "[\(out), \(inner)]: packed panels against panels repacked per call")
                for row in [0, 4, 10] {
                    for generated in [false, true] {
                        var alone = [Float](repeating: 0.25, count: out)
                        x.withUnsafeBufferPointer {
                            matmul($0.baseAddress! + row * inner, rows: 1, packed, into: &alone, accumulate: true, generated: [generated])
                        }
                        XCTAssertEqual(alone, Array(fast[(row * out)..<((row + 1) * out)]), "[\(out), \(inner)] row \(row) alone")
                    }
                }
                // Behind a product of 37 outputs, this one's ranges start off its 32-output blocks.
                let first = packed.outputs0To37Source(source)
                var ahead = [Float](repeating: 0, count: rows * 37), behind = [Float](repeating: 0.25, count: rows * out)
                ahead.withUnsafeMutableBufferPointer { a in
                    behind.withUnsafeMutableBufferPointer { b in
                        matmul(x, rows: rows, [(first, a.baseAddress!), (packed, b.baseAddress!)], accumulate: true)
                    }
                }
                XCTAssertEqual(behind, fast, "[\(out), \(inner)]: ranges that start inside a block")
                MatmulKernels.use(.avx512)
                var widened = [Float](repeating: 0.25, count: rows * out), exact = widened
                matmul(x, rows: rows, packed, into: &widened, accumulate: true)
                referenceMatmul(x, rows: rows, source, into: &exact, accumulate: true)
                XCTAssertLessThan(zip(widened, exact).map { abs($0 - $1) }.max() ?? 0, 1e-4, "[\(out), \(inner)] under f32")
                MatmulKernels.use(.avx512BF16)
            }
        }
    }
}

private extension LinearWeight {
    /// A 37-output f32 weight with `source`'s inputs (placed ahead of another product).
    func outputs0To37Source(_ source: LinearWeight) -> LinearWeight {
        let storage = HugePageMemory(byteCount: 37 * source.inFeatures * 4)
        let values = storage.pointer.assumingMemoryBound(to: Float.self)
        for i in 0..<(37 * source.inFeatures) { values[i] = Float(i % 13) / 13 - 0.5 }
        return LinearWeight(data: UnsafeRawPointer(values), dtype: .f32, outFeatures: 37, inFeatures: source.inFeatures,
                            layout: .outMajor, leadingDimension: source.inFeatures, owner: storage)
    }
}
