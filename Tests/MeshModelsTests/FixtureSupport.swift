import Foundation
import MeshModels
import MeshTensors
import XCTest

/// The transformers fixtures made by scripts/make-fixtures.py.
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../Fixtures/models").standardizedFileURL

    static func directory(_ name: String) -> URL { root.appendingPathComponent(name) }

    /// Every fixture (a folder with an expected.json), sorted: a new fixture joins each test that loops over them.
    static var all: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return names.filter { FileManager.default.fileExists(atPath: directory($0).appendingPathComponent("expected.json").path) }.sorted()
    }

    /// The fixtures with routed experts.
    static var moe: [String] {
        all.filter { name in
            let spec = try? ModelSpec.decode(configFile: directory(name).appendingPathComponent("config.json"))
            return spec.map { !$0.moeLayerIndices.isEmpty } ?? false
        }
    }

    struct Expected {
        let promptTokens: [Int]
        let greedyTokens: [Int]
        let logits: [Float]
        let logitsShape: [Int]
    }

    static func expected(_ name: String) throws -> Expected {
        let dir = directory(name)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("expected.json"))) as? [String: Any])
        let logitsFile = json["logits_file"] as? String ?? "logits.npy"
        let (values, shape) = try Npy.decode(Data(contentsOf: dir.appendingPathComponent(logitsFile)), name: logitsFile)
        return Expected(promptTokens: try XCTUnwrap(json["prompt_tokens"] as? [Int]),
                        greedyTokens: try XCTUnwrap(json["greedy_tokens"] as? [Int]), logits: values, logitsShape: shape)
    }

    /// A copy of a fixture in a temporary directory, for tests that damage it.
    static func scratchCopy(_ name: String) throws -> URL {
        let target = FileManager.default.temporaryDirectory.appendingPathComponent("fixture-\(name)-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: directory(name), to: target)
        return target
    }
}
