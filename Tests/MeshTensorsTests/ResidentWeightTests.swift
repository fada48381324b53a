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
}
