import Foundation
import MeshModels
import MeshTensors
import XCTest

/// `--offload-dense` cuts shared experts and dense FFN layers into expert-wide slices; what the
/// slices compute must add up to the whole MLP, and their ids must follow the config alone.
final class DenseSlicesTests: XCTestCase {
    /// Every fixture with a dense FFN layer or shared experts beside its routed experts.
    static var fixturesWithDenseParts: [String] {
        Fixtures.moe.filter { name in
            guard let spec = try? ModelSpec.decode(configFile: Fixtures.directory(name).appendingPathComponent("config.json")),
                  let slices = DenseSlices(spec: spec) else { return false }
            return !slices.keys(spec).isEmpty
        }
    }

    func testSlicesOfEveryDensePartAddUpToTheWholeMLP() throws {
        let names = Self.fixturesWithDenseParts
        XCTAssertTrue(Set(["glm4_moe", "deepseek_v3", "qwen2_moe", "llama4"]).isSubset(of: names), "\(names)")
        var random = SeededGenerator(seed: 5)
        for name in names {
            let model = try LoadedModel(directory: Fixtures.directory(name))
            let spec = model.spec
            let slices = try XCTUnwrap(DenseSlices(spec: spec))
            XCTAssertEqual(slices.width, spec.layers.compactMap(\.moe).first?.intermediateSize)
            let loaded = try model.loadExperts(slices.keys(spec))
            let rows = 5
            let x = Matrix(rows: rows, columns: spec.hiddenSize,
                           values: (0..<(rows * spec.hiddenSize)).map { _ in Float(random.next() % 2001) / 1000 - 1 })
            for (index, layer) in model.dense.layers.enumerated() {
                let whole: MLPWeights
                switch layer.feedForward {
                case .dense(let mlp): whole = mlp
                case .moe(let moe):
                    guard let shared = moe.shared else {
                        XCTAssertNil(slices.slices(of: spec.layers[index]), "\(name) layer \(index) has no shared expert")
                        continue
                    }
                    whole = shared
                }
                let (firstId, ranges) = try XCTUnwrap(slices.slices(of: spec.layers[index]), "\(name) layer \(index)")
                XCTAssertEqual(firstId, spec.layers[index].moe?.expertCount ?? 0, "\(name): slice ids follow the routed experts")
                XCTAssertEqual(ranges.first?.lowerBound, 0)
                XCTAssertEqual(ranges.last?.upperBound, whole.gate.outFeatures)
                XCTAssertTrue(zip(ranges, ranges.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound }, "\(ranges)")

                let expected = Matrix(rows: rows, columns: spec.hiddenSize)
                whole.forward(x.data, rows: rows, into: expected.data, accumulate: false)
                let summed = Matrix(rows: rows, columns: spec.hiddenSize)
                for slice in ranges.indices {
                    let key = ExpertKey(layer: index, expert: firstId + slice)
                    try XCTUnwrap(loaded[key], "\(name): \(key)").forward(x.data, rows: rows, into: summed.data, accumulate: true)
                }
                let scale = (0..<(rows * spec.hiddenSize)).map { abs(expected.data[$0]) }.max() ?? 1
                let difference = (0..<(rows * spec.hiddenSize)).map { abs(expected.data[$0] - summed.data[$0]) }.max() ?? 0
                XCTAssertLessThanOrEqual(difference, 1e-5 * max(1, scale), "\(name) layer \(index): \(ranges.count) slices")
            }
            let past = ExpertKey(layer: spec.layerCount - 1, expert: 10_000)
            XCTAssertThrowsError(try model.loadExperts([past])) { error in
                XCTAssertTrue("\(error)".contains("does not exist"), "\(error)")
            }
        }
    }

    /// A coordinator that offloads them never converts the dense FFN and shared experts (no int8
    /// copies of weights it does not compute); attention still takes the dense format.
    func testOffloadedFeedForwardIsNotConvertedOnTheCoordinator() throws {
        try XCTSkipUnless(LinearWeight.q8Supported, "this CPU has no int8 kernels")
        for offloaded in [false, true] {
            let model = try LoadedModel(directory: Fixtures.directory("glm4_moe"), denseFormat: .int8,
                                        feedForwardOffloaded: offloaded)
            guard case .dense(let mlp) = model.dense.layers[0].feedForward,
                  case .moe(let moe) = model.dense.layers[1].feedForward,
                  case .standard(let attention) = model.dense.layers[0].attention else {
                return XCTFail("glm4_moe: layer 0 dense, layer 1 MoE, standard attention")
            }
            XCTAssertTrue(attention.q.isQ8_0)
            XCTAssertEqual(mlp.gate.isQ8_0, !offloaded)
            XCTAssertEqual(moe.shared?.down.isQ8_0, !offloaded)
        }
    }

    /// Real configs: DeepSeek-V3's three dense layers (18432) and 58 shared experts (2048) become
    /// 9 and 1 slices of 2048; the plan's parameter count for them matches.
    func testRealConfigsSliceByTheRoutedExpertsWidth() throws {
        let spec = try ModelSpec.decode(configFile: RealConfigTests.configs.appendingPathComponent("deepseek-v3.json"))
        let slices = try XCTUnwrap(DenseSlices(spec: spec))
        XCTAssertEqual(slices.width, 2048)
        XCTAssertEqual(slices.slices(of: spec.layers[0])?.ranges.count, 9)
        XCTAssertEqual(slices.slices(of: spec.layers[3])?.firstId, 256)
        XCTAssertEqual(slices.slices(of: spec.layers[3])?.ranges, [0..<2048])
        XCTAssertEqual(slices.keys(spec).count, 3 * 9 + 58)
        XCTAssertEqual(ModelShape(spec: spec).offloadableParameters, 3 * 7168 * (3 * 18432 + 58 * 2048))
        let mixtral = try ModelSpec.decode(configFile: RealConfigTests.configs.appendingPathComponent("mixtral-8x7b.json"))
        XCTAssertEqual(DenseSlices(spec: mixtral)?.keys(mixtral), [], "Mixtral has nothing dense beside its experts")
    }
}
