import Foundation
import MeshModels
import XCTest

/// Real configs from the hub decode, and the parameter counts they imply equal those transformers
/// instantiates (../shared/reference/configs/PARAMS.md, copied to Tests/Fixtures/configs).
final class RealConfigTests: XCTestCase {
    static let configs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../Fixtures/configs").standardizedFileURL

    func assertCounts(_ name: String, total: Double, active: Double, file: StaticString = #filePath, line: UInt = #line) throws {
        let spec = try ModelSpec.decode(configFile: Self.configs.appendingPathComponent("\(name).json"))
        let count = spec.parameterCount
        print(String(format: "%@: total %.2fB, active %.2fB", name, Double(count.total) / 1e9, Double(count.active) / 1e9))
        XCTAssertEqual(Double(count.total) / 1e9, total, accuracy: 0.006, "\(name) total", file: file, line: line)
        XCTAssertEqual(Double(count.active) / 1e9, active, accuracy: 0.006, "\(name) active", file: file, line: line)
    }

    func testMixtral() throws {
        try assertCounts("mixtral-8x7b", total: 46.70, active: 12.88)
        try assertCounts("mixtral-8x22b", total: 140.62, active: 39.15)
    }

    func testQwen3Moe() throws {
        try assertCounts("qwen3-30b-a3b", total: 30.53, active: 3.35)
        try assertCounts("qwen3-235b-a22b", total: 235.09, active: 22.19)
    }

    func testLlama4() throws {
        try assertCounts("llama4-scout", total: 107.77, active: 17.17)
        try assertCounts("llama4-maverick", total: 400.71, active: 17.18)
        let maverick = try ModelSpec.decode(configFile: Self.configs.appendingPathComponent("llama4-maverick.json"))
        XCTAssertEqual(maverick.moeLayerIndices.count, 24, "interleave_moe_layer_step 2 over 48 layers")
        XCTAssertEqual(maverick.layers.filter { !$0.attention.usesRope }.count, 12, "every 4th layer is NoPE")
    }
}
