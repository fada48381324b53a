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
        // KV cache groups: 36 chunked layers (8192 positions) in three groups of 12, the 12 NoPE
        // layers (whole context) in one; a chunked group holds at most a chunk's worth of blocks.
        let scout = try ModelSpec.decode(configFile: Self.configs.appendingPathComponent("llama4-scout.json"))
        let groups = scout.cacheGroups
        XCTAssertEqual(groups.map(\.layers.count), [12, 12, 12, 12])
        XCTAssertEqual(groups.map(\.reach), [CacheReach(chunk: 8192), CacheReach(chunk: 8192), CacheReach(chunk: 8192),
                                             CacheReach()])
        XCTAssertEqual(groups[3].layers, Array(stride(from: 3, to: 48, by: 4)))
        XCTAssertEqual(PagedKVCache.bytesPerBlock(scout), 12 * 16 * (2 * 8 * 128) * 4)
        XCTAssertEqual(scout.cacheBlocksAtMost(positions: 4096), 4 * 256, "within one chunk every layer keeps all")
        XCTAssertEqual(scout.cacheBlocksAtMost(positions: 131_072), 8192 + 3 * (8191 / 16 + 2))
        XCTAssertEqual(ModelShape(spec: scout).kvValues(context: 131_072), (12 * 131_072 + 36 * 513 * 16) * 2 * 8 * 128,
                       "plan: the chunked layers keep at most a chunk (and a block) per sequence")
    }

    func testOlmoe() throws {
        try assertCounts("olmoe-1b-7b", total: 6.92, active: 1.28)
        let spec = try ModelSpec.decode(configFile: Self.configs.appendingPathComponent("olmoe-1b-7b.json"))
        XCTAssertEqual(spec.normEps, 1e-5, "transformers' default where the config says nothing")
        XCTAssertEqual(spec.layers[0].attention.qkNorm, .rmsAcrossHeadsBeforeRope)
    }

    func testDbrx() throws {
        try assertCounts("dbrx", total: 131.60, active: 36.47)
        let spec = try ModelSpec.decode(configFile: Self.configs.appendingPathComponent("dbrx.json"))
        XCTAssertEqual(spec.norm, .layerNorm)
        XCTAssertEqual(spec.layers[0].attention.clipQKV, 8)
    }

    func testGlm45() throws {
        try assertCounts("glm-4.5", total: 352.80, active: 33.63)
        try assertCounts("glm-4.5-air", total: 106.85, active: 13.42)
        let air = try ModelSpec.decode(configFile: Self.configs.appendingPathComponent("glm-4.5-air.json"))
        XCTAssertEqual(air.rope.rotaryDim, 64, "RoPE on half of each 128-value head")
        XCTAssertEqual(air.moeLayerIndices.first, 1, "first_k_dense_replace 1")
        XCTAssertEqual(air.unusedTrailingLayers, 1, "one multi-token-prediction layer")
    }

    func testDeepseekV3() throws {
        try assertCounts("deepseek-v3", total: 671.03, active: 37.55)
        let spec = try ModelSpec.decode(configFile: Self.configs.appendingPathComponent("deepseek-v3.json"))
        XCTAssertEqual(spec.cacheWidths.key + spec.cacheWidths.value, 512 + 64, "MLA caches the latent and the rope key")
        XCTAssertEqual(PagedKVCache.bytesPerBlock(spec), 61 * 16 * (512 + 64) * 4)
        XCTAssertEqual(spec.moeLayerIndices.count, 58, "61 layers, the first 3 dense")
        XCTAssertEqual(spec.unusedTrailingLayers, 1, "one multi-token-prediction layer")
        XCTAssertEqual(spec.maxPositions, 163_840, "YaRN: 4096 original positions × 40")
    }

    /// `expertmesh plan`'s sizes, through `ModelShape`, within 0.5% of PARAMS.md.
    func assertShape(_ name: String, total: Double, active: Double, file: StaticString = #filePath, line: UInt = #line) throws -> ModelShape {
        let shape = try ModelShape.read(configFile: Self.configs.appendingPathComponent("\(name).json"))
        let count = shape.parameterCount
        print(String(format: "%@: total %.2fB, active %.2fB", name, Double(count.total) / 1e9, Double(count.active) / 1e9))
        XCTAssertEqual(Double(count.total) / 1e9, total, accuracy: total * 0.005, "\(name) total", file: file, line: line)
        XCTAssertEqual(Double(count.active) / 1e9, active, accuracy: active * 0.005, "\(name) active", file: file, line: line)
        return shape
    }

    func testPlanSizesEveryReferenceConfig() throws {
        let deepseek = try assertShape("deepseek-v3", total: 671.03, active: 37.55)
        XCTAssertEqual(deepseek.layers[0].kvValuesPerToken, 512 + 64, "MLA caches the latent and the rope key")
        // The engine's families size through their ModelSpec, to the same counts as before.
        let mixtral = try assertShape("mixtral-8x7b", total: 46.70, active: 12.88)
        XCTAssertEqual(mixtral.kvValuesPerToken, 32 * 2 * 8 * 128)
        // An assumed Behemoth shape (see its _expertmesh_note): nearly 2T total, 288B active, 16 experts.
        let behemoth = try assertShape("llama4-behemoth-assumed", total: 1965.49, active: 287.94)
        XCTAssertEqual(behemoth.layers.map(\.experts).max(), 16)
        let unknown = FileManager.default.temporaryDirectory.appendingPathComponent("unknown-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: unknown) }
        try Data(#"{"model_type": "mamba"}"#.utf8).write(to: unknown)
        XCTAssertThrowsError(try ModelShape.read(configFile: unknown)) {
            XCTAssertTrue("\($0)".contains("unknown model_type 'mamba'; supported: dbrx, deepseek_v3, glm4_moe,"), "\($0)")
        }
    }
}
