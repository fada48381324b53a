import Foundation
import MeshTensors
import XCTest

final class StorageTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("storage-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    func testBF16RoundsToNearestEven() {
        XCTAssertEqual(floatToBF16(1.0), 0x3F80)
        XCTAssertEqual(bf16ToFloat(floatToBF16(3.140625)), 3.140625)
        // 1 + 2^-8 is halfway between two bf16 values: ties go to the even one (1.0).
        XCTAssertEqual(bf16ToFloat(floatToBF16(1 + 1.0 / 256)), 1.0)
        XCTAssertEqual(bf16ToFloat(floatToBF16(1 + 3.0 / 256)), 1 + 4.0 / 256)
    }

    func testSafetensorsRoundTripInEveryDType() throws {
        let values: [Float] = [1, -2, 0.5, 3.25, -0.125, 8]
        let entries = DType.allCases.map { SafetensorsWriter.Entry(name: "t.\($0.rawValue)", dtype: $0, shape: [2, 3], bytes: SafetensorsWriter.bytes(values, as: $0)) }
        let url = directory.appendingPathComponent("model.safetensors")
        try SafetensorsWriter.write(entries, to: url)
        let file = try SafetensorsFile(path: url.path)
        for dtype in DType.allCases {
            let tensor = try file.tensor("t.\(dtype.rawValue)")
            XCTAssertEqual(tensor.shape, [2, 3])
            XCTAssertEqual(tensor.dtype, dtype)
            XCTAssertEqual(tensor.toFloats(), values)
        }
    }

    func testTruncatedFileIsReportedWithTheTensorName() throws {
        let url = directory.appendingPathComponent("model.safetensors")
        try SafetensorsWriter.write([.init(name: "w", dtype: .f32, shape: [4, 4], bytes: SafetensorsWriter.bytes(Array(repeating: 1, count: 16), as: .f32))], to: url)
        let data = try Data(contentsOf: url)
        try data.prefix(data.count - 10).write(to: url)
        XCTAssertThrowsError(try SafetensorsFile(path: url.path)) { error in
            XCTAssertTrue("\(error)".contains("tensor 'w' spans bytes"), "\(error)")
            XCTAssertTrue("\(error)".contains("truncated"), "\(error)")
        }
        try Data([1, 2, 3]).write(to: url)
        XCTAssertThrowsError(try SafetensorsFile(path: url.path)) { error in
            XCTAssertTrue("\(error)".contains("shorter than the 8-byte header"), "\(error)")
        }
    }

    func testCorruptHeaderIsReported() throws {
        let url = directory.appendingPathComponent("bad.safetensors")
        var bytes = Data([16, 0, 0, 0, 0, 0, 0, 0])
        bytes.append(Data("{not json at all}".utf8.prefix(16)))
        try bytes.write(to: url)
        XCTAssertThrowsError(try SafetensorsFile(path: url.path)) { error in
            XCTAssertTrue("\(error)".contains("JSON header does not parse"), "\(error)")
        }
    }

    func testByteCountMismatchIsReported() throws {
        let url = directory.appendingPathComponent("bad.safetensors")
        try SafetensorsWriter.write([.init(name: "w", dtype: .bf16, shape: [3], bytes: Data(count: 8))], to: url)
        XCTAssertThrowsError(try SafetensorsFile(path: url.path)) { error in
            XCTAssertTrue("\(error)".contains("has 8 bytes but shape [3] of BF16 needs 6"), "\(error)")
        }
    }

    func testNpyRoundTripAndNumpyHeader() throws {
        let values: [Float] = (0..<12).map { Float($0) * 0.5 }
        let data = Npy.encode(values, shape: [3, 4])
        XCTAssertEqual(data.prefix(8), Data([0x93] + Array("NUMPY".utf8) + [1, 0]))
        XCTAssertEqual((data.count - values.count * 4) % 64, 0, "header must pad to 64 bytes")
        let decoded = try Npy.decode(data)
        XCTAssertEqual(decoded.shape, [3, 4])
        XCTAssertEqual(decoded.values, values)
    }
}

final class AtomicFileTests: XCTestCase {
    func strayStagingFolders() throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory()).filter { $0.hasPrefix("TemporaryDirectory.") }.count
    }

    func testReplacesTheFileWholeAndLeavesNothingBehind() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("atomic-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("load.json")
        let before = try strayStagingFolders()
        try AtomicFile.write(Data("first, and longer".utf8), to: url)
        try AtomicFile.write(Data("second".utf8), to: url)
        XCTAssertEqual(try String(contentsOf: url, encoding: .utf8), "second")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["load.json"], "no staging file left")
        XCTAssertEqual(try strayStagingFolders(), before, "no staging folder left in the temporary directory")
        XCTAssertThrowsError(try AtomicFile.write(Data("x".utf8), to: directory.appendingPathComponent("missing/load.json"))) {
            XCTAssertTrue("\($0)".contains("check the directory exists and is writable"), "\($0)")
        }
    }
}
