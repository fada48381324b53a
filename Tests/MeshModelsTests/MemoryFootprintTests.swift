import Foundation
import MeshEngine
import MeshModels
import MeshTensors
import XCTest

/// A bf16 checkpoint stays bf16 in memory: running it grows the resident set by about the file
/// size (memory-mapped pages), not twice that (an f32 copy).
final class MemoryFootprintTests: XCTestCase {
    /// A random Mixtral-shaped bf16 checkpoint of about 170 MB.
    func makeCheckpoint() throws -> (URL, Int) {
        let (vocab, hidden, intermediate, layers, experts) = (4096, 512, 1536, 4, 8)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bf16-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var state: UInt64 = 12345
        func random(_ count: Int, scale: Float = 0.05) -> Data {
            var bits = [UInt16](repeating: 0, count: count)
            for i in 0..<count {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                bits[i] = floatToBF16(Float(Int64(bitPattern: state) >> 40) / Float(1 << 23) * scale)
            }
            return bits.withUnsafeBufferPointer { Data(buffer: $0) }
        }
        let ones = SafetensorsWriter.bytes(Array(repeating: 1, count: hidden), as: .bf16)
        var entries: [SafetensorsWriter.Entry] = [
            .init(name: "model.embed_tokens.weight", dtype: .bf16, shape: [vocab, hidden], bytes: random(vocab * hidden)),
            .init(name: "lm_head.weight", dtype: .bf16, shape: [vocab, hidden], bytes: random(vocab * hidden)),
            .init(name: "model.norm.weight", dtype: .bf16, shape: [hidden], bytes: ones),
        ]
        for l in 0..<layers {
            let p = "model.layers.\(l)."
            entries += [
                .init(name: p + "input_layernorm.weight", dtype: .bf16, shape: [hidden], bytes: ones),
                .init(name: p + "post_attention_layernorm.weight", dtype: .bf16, shape: [hidden], bytes: ones),
                .init(name: p + "block_sparse_moe.gate.weight", dtype: .bf16, shape: [experts, hidden], bytes: random(experts * hidden, scale: 1)),
            ]
            for projection in ["q", "k", "v", "o"] {
                entries.append(.init(name: p + "self_attn.\(projection)_proj.weight", dtype: .bf16, shape: [hidden, hidden], bytes: random(hidden * hidden)))
            }
            for e in 0..<experts {
                let q = p + "block_sparse_moe.experts.\(e)."
                entries += [
                    .init(name: q + "w1.weight", dtype: .bf16, shape: [intermediate, hidden], bytes: random(intermediate * hidden)),
                    .init(name: q + "w3.weight", dtype: .bf16, shape: [intermediate, hidden], bytes: random(intermediate * hidden)),
                    .init(name: q + "w2.weight", dtype: .bf16, shape: [hidden, intermediate], bytes: random(intermediate * hidden)),
                ]
            }
        }
        try SafetensorsWriter.write(entries, to: directory.appendingPathComponent("model.safetensors"))
        let config: [String: Any] = [
            "model_type": "mixtral", "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": intermediate,
            "num_hidden_layers": layers, "num_attention_heads": 8, "num_key_value_heads": 8, "num_local_experts": experts,
            "num_experts_per_tok": 2, "rms_norm_eps": 1e-5, "rope_theta": 1e6,
        ]
        try JSONSerialization.data(withJSONObject: config).write(to: directory.appendingPathComponent("config.json"))
        return (directory, entries.reduce(0) { $0 + $1.bytes.count })
    }

    func testBF16WeightsAreNotExpandedInMemory() throws {
        let (directory, weightBytes) = try makeCheckpoint()
        defer { try? FileManager.default.removeItem(at: directory) }
        let before = Double(ProcessMemory.residentBytes)
        let engine = try LocalEngine(directory: directory)
        let prompt = (0..<96).map { ($0 * 37) % 4096 }
        _ = try engine.generator.generate(GenerationRequest(prompt: prompt, maxTokens: 4))
        let growth = Double(ProcessMemory.residentBytes) - before
        print(String(format: "bf16 weights %.0f MB, resident set grew %.0f MB", Double(weightBytes) / 1e6, growth / 1e6))
        XCTAssertGreaterThan(growth, 0.5 * Double(weightBytes), "the prompt should touch most weights")
        XCTAssertLessThan(growth, 1.35 * Double(weightBytes), "bf16 weights must stay bf16 (an f32 copy would double them)")
    }
}
