import Foundation
import MeshEngine
import MeshModels
import MeshTensors
import XCTest

/// Bad model directories give one precise message.
final class ModelErrorTests: XCTestCase {
    func editConfig(_ directory: URL, _ edit: (inout [String: Any]) -> Void) throws {
        let url = directory.appendingPathComponent("config.json")
        var config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        edit(&config)
        try JSONSerialization.data(withJSONObject: config).write(to: url)
    }

    func assertLoadFails(_ directory: URL, containing text: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try LocalEngine(directory: directory), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(text), "message was: \(error)", file: file, line: line)
        }
    }

    func testUnknownModelTypeListsSupportedOnes() throws {
        let dir = try Fixtures.scratchCopy("mixtral")
        try editConfig(dir) { $0["model_type"] = "mamba" }
        let supported = ArchitectureRegistry.supportedModelTypes
        XCTAssertTrue(["gpt_oss", "glm4_moe", "llama", "llama4", "mixtral", "olmoe", "qwen2_moe", "qwen3_moe"].allSatisfy(supported.contains))
        assertLoadFails(dir, containing: "unknown model_type 'mamba'; supported: " + supported.joined(separator: ", "))
    }

    func testMissingConfigFieldIsNamed() throws {
        let dir = try Fixtures.scratchCopy("mixtral")
        try editConfig(dir) { $0.removeValue(forKey: "num_local_experts") }
        assertLoadFails(dir, containing: "missing or invalid field 'num_local_experts'")
    }

    /// A field of the wrong type is named, never silently replaced by a default.
    func testWrongTypedConfigFieldsAreNamed() throws {
        let cases: [(String, Any, String)] = [
            ("num_key_value_heads", "8", "field 'num_key_value_heads' must be an integer, got \"8\""),
            ("tie_word_embeddings", "yes", "field 'tie_word_embeddings' must be true or false"),
            ("head_dim", 12.5, "field 'head_dim' must be an integer"),
            ("rope_parameters", "linear", "field 'rope_parameters' must be an object"),
            ("eos_token_id", ["2"], "field 'eos_token_id' must be an integer or a list of integers"),
            ("max_position_embeddings", true, "field 'max_position_embeddings' must be an integer, got true"),
        ]
        for (key, value, message) in cases {
            let dir = try Fixtures.scratchCopy("mixtral")
            try editConfig(dir) { $0[key] = value }
            assertLoadFails(dir, containing: message)
        }
    }

    func testShapeMismatchSaysExpectedAndFound() throws {
        let dir = try Fixtures.scratchCopy("mixtral")
        try editConfig(dir) { $0["intermediate_size"] = (($0["intermediate_size"] as? Int) ?? 1) + 1 }
        assertLoadFails(dir, containing: "expected [")
    }

    func testMissingTensorIsNamed() throws {
        let dir = try Fixtures.scratchCopy("mixtral")
        try editConfig(dir) { $0["num_hidden_layers"] = (($0["num_hidden_layers"] as? Int) ?? 1) + 1 }
        assertLoadFails(dir, containing: "is missing")
    }

    func testExtraTensorIsNamed() throws {
        let dir = try Fixtures.scratchCopy("mixtral")
        try editConfig(dir) { $0["num_hidden_layers"] = (($0["num_hidden_layers"] as? Int) ?? 2) - 1 }
        assertLoadFails(dir, containing: "unexpected tensors in checkpoint: model.layers.")
    }

    /// The layouts of the families added later fail as precisely: a bias the config promises and
    /// the checkpoint lacks, one it has and the config does not promise, a layer type list of the
    /// wrong length or kind, a RoPE type or partial rotary factor the engine does not run.
    func testNewFamiliesLayoutsFailPrecisely() throws {
        let cases: [(String, (inout [String: Any]) -> Void, String)] = [
            ("olmoe", { $0["attention_bias"] = true }, "'model.layers.0.self_attn.q_proj.bias'"),
            ("qwen2_moe", { $0["qkv_bias"] = false }, "unexpected tensors in checkpoint: model.layers.0.self_attn."),
            ("qwen2", { $0["layer_types"] = ["full_attention"] }, "'layer_types' has 1 entries for 4 layers"),
            ("qwen2", { $0["layer_types"] = Array(repeating: "chunked_attention", count: 4) },
             "layer type 'chunked_attention' is not supported; supported: sliding_attention, full_attention"),
            ("llama", { $0["rope_parameters"] = ["rope_type": "longrope", "rope_theta": 10000.0] },
             "rope_type 'longrope' is not supported; supported: default, linear, dynamic, yarn, llama3"),
            ("llama", { $0["partial_rotary_factor"] = 0.1 }, "partial_rotary_factor 0.1 gives 1 rotated values of a 16-value head"),
            ("llama", { $0["mlp_bias"] = true }, "'mlp_bias: true' is not supported"),
            ("qwen2_moe", { $0.removeValue(forKey: "shared_expert_intermediate_size") },
             "missing or invalid field 'shared_expert_intermediate_size'"),
            ("dbrx", { $0["attn_config"] = ["kv_n_heads": 4, "clip_qkv": 2.0] },
             "tensor 'transformer.blocks.0.norm_attn_norm.attn.Wqkv.weight' has shape [96, 48], expected [144, 48]"),
            ("dbrx", { $0["ffn_config"] = ["ffn_hidden_size": 16, "moe_num_experts": 8, "moe_top_k": 3] },
             "ffn.experts.mlp.w1' has shape [256, 48], expected [128, 48]"),
            ("dbrx", { $0["ffn_config"] = ["ffn_hidden_size": 32, "moe_num_experts": 8, "moe_top_k": 3,
                                           "moe_normalize_expert_weights": 2.0] },
             "moe_normalize_expert_weights 2.0 is not supported"),
            ("glm4_moe", { $0["n_group"] = 3 }, "n_group 3 must divide the 8 routed experts"),
            ("deepseek_v3", { $0["kv_lora_rank"] = 12 },
             "tensor 'model.layers.0.self_attn.kv_a_proj_with_mqa.weight' has shape [24, 48], expected [20, 48]"),
            ("deepseek_v3", { $0["attention_bias"] = true }, "'attention_bias: true' is not supported for deepseek_v3"),
            ("gpt_oss", { $0["attention_bias"] = false }, "unexpected tensors in checkpoint: model.layers.0.self_attn."),
        ]
        for (fixture, edit, message) in cases {
            let dir = try Fixtures.scratchCopy(fixture)
            try editConfig(dir, edit)
            assertLoadFails(dir, containing: message)
        }
    }

    /// Rewrites a scratch fixture's model.safetensors through `edit`.
    func rewriteCheckpoint(_ dir: URL, _ edit: ([SafetensorsWriter.Entry]) -> [SafetensorsWriter.Entry]) throws {
        let checkpoint = try Checkpoint(directory: dir)
        let entries = try checkpoint.tensorNames.map { name in
            let entry = try checkpoint.peek(name)
            if entry.dtypeName == "U8" {
                let bytes = try checkpoint.byteTensor(name)
                return SafetensorsWriter.Entry(name: name, dtypeName: "U8", shape: bytes.shape,
                                               bytes: Data(bytes: bytes.data, count: bytes.shape.reduce(1, *)))
            }
            let view = try checkpoint.tensor(name)
            return SafetensorsWriter.Entry(name: name, dtype: view.dtype, shape: view.shape,
                                           bytes: Data(bytes: view.data, count: view.byteCount))
        }
        try SafetensorsWriter.write(edit(entries), to: dir.appendingPathComponent("model.safetensors"))
    }

    /// A checkpoint without one of multi-head latent attention's tensors names it.
    func testMissingLatentAttentionTensorIsNamed() throws {
        let dir = try Fixtures.scratchCopy("deepseek_v3")
        let missing = "model.layers.1.self_attn.kv_a_proj_with_mqa.weight"
        try rewriteCheckpoint(dir) { $0.filter { $0.name != missing } }
        assertLoadFails(dir, containing: "'\(missing)'")
        assertLoadFails(dir, containing: "is missing")
    }

    /// A wrong MXFP4 block shape or scale dtype names the tensor and what was expected.
    func testWrongMXFP4BlocksAreNamed() throws {
        let dir = try Fixtures.scratchCopy("gpt_oss-mxfp4")
        try rewriteCheckpoint(dir) { entries in
            entries.map { entry in
                guard entry.name == "model.layers.0.mlp.experts.down_proj_blocks" else { return entry }
                var reshaped = entry
                reshaped.shape = [entry.shape[0], entry.shape[1], entry.shape[2] * 2, 8]
                return reshaped
            }
        }
        assertLoadFails(dir, containing: "tensor 'model.layers.0.mlp.experts.down_proj_blocks' has shape [8, 64, 4, 8], expected [8, 64, 2, 16]")
        let scales = try Fixtures.scratchCopy("gpt_oss-mxfp4")
        try rewriteCheckpoint(scales) { entries in
            entries.map { entry in
                guard entry.name == "model.layers.1.mlp.experts.gate_up_proj_scales" else { return entry }
                return SafetensorsWriter.Entry(name: entry.name, dtype: .f16, shape: [entry.shape[0], entry.shape[1], entry.shape[2] / 2],
                                               bytes: entry.bytes)
            }
        }
        assertLoadFails(scales, containing: "model.layers.1.mlp.experts.gate_up_proj_scales")
    }

    /// The coordinator's start-up check (no expert kept or copied) passes every fixture and fails a
    /// checkpoint whose expert tensor is missing or misshapen, naming it.
    func testCoordinatorCheckOfExpertTensors() throws {
        for name in Fixtures.moe { XCTAssertNoThrow(try LoadedModel(directory: Fixtures.directory(name)).checkAllExperts(), name) }
        let dir = try Fixtures.scratchCopy("gpt_oss")
        try rewriteCheckpoint(dir) { entries in
            entries.map { entry in
                guard entry.name == "model.layers.1.mlp.experts.gate_up_proj" else { return entry }
                var reshaped = entry
                reshaped.shape = [entry.shape[0], entry.shape[1] * 2 / 3, entry.shape[2] * 3 / 2]   // [8, 32, 96]
                return reshaped
            }
        }
        XCTAssertThrowsError(try LoadedModel(directory: dir).checkAllExperts()) { error in
            XCTAssertTrue("\(error)".contains("model.layers.1.mlp.experts.gate_up_proj' has shape [8, 32, 96], expected [8, 48, 64]"), "\(error)")
        }
        let missing = try Fixtures.scratchCopy("qwen2_moe")
        try rewriteCheckpoint(missing) { $0.filter { $0.name != "model.layers.2.mlp.experts.5.up_proj.weight" } }
        XCTAssertThrowsError(try LoadedModel(directory: missing).checkAllExperts()) { error in
            XCTAssertTrue("\(error)".contains("model.layers.2.mlp.experts.5.up_proj.weight"), "\(error)")
        }
    }

    func testTruncatedWeightsFile() throws {
        let dir = try Fixtures.scratchCopy("mixtral")
        let url = dir.appendingPathComponent("model.safetensors")
        let data = try Data(contentsOf: url)
        try data.prefix(data.count / 2).write(to: url)
        assertLoadFails(dir, containing: "truncated")
    }

    func testMissingDirectory() {
        assertLoadFails(URL(fileURLWithPath: "/nonexistent/model"), containing: "cannot read /nonexistent/model/config.json")
    }
}
