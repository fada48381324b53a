import MeshTensors

/// Checkpoint tensor names of one decoder layer. Architecture files fill these in; the loader
/// resolves them (the first candidate present wins) and checks shapes.
public struct LayerWeightNames: Sendable {
    public var inputNorm: String
    public var postAttentionNorm: String
    public var q: String, k: String, v: String, o: String
    public var qNorm: String?
    public var kNorm: String?
    public var feedForward: FeedForwardNames
    /// One [q + 2·kv, H] tensor holding q, k and v in that order (DBRX's `Wqkv`); then q, k, v are unused.
    public var fusedQKV: String? = nil
    /// Multi-head latent attention's tensors (then q, k, v are unused).
    public var latent: LatentAttentionNames? = nil
    /// Attention sinks [heads] (gpt-oss).
    public var sinks: String? = nil
}

/// DeepSeek-V3's attention tensors under `self_attn.`.
public struct LatentAttentionNames: Sendable {
    public var queryDown: String, queryDownNorm: String, queryUp: String
    /// `q_proj`, when there is no low-rank query step
    public var query: String
    public var kvDown: String, kvDownNorm: String, kvUp: String

    public init(prefix p: String) {
        (queryDown, queryDownNorm, queryUp) = ("\(p)q_a_proj.weight", "\(p)q_a_layernorm.weight", "\(p)q_b_proj.weight")
        query = "\(p)q_proj.weight"
        (kvDown, kvDownNorm, kvUp) = ("\(p)kv_a_proj_with_mqa.weight", "\(p)kv_a_layernorm.weight", "\(p)kv_b_proj.weight")
    }
}

public struct MLPNames: Sendable {
    public var gate: String, up: String, down: String
    public init(prefix: String, gate: String = "gate_proj", up: String = "up_proj", down: String = "down_proj") {
        self.gate = "\(prefix)\(gate).weight"
        self.up = "\(prefix)\(up).weight"
        self.down = "\(prefix)\(down).weight"
    }

    /// Full tensor names (parameters stored without a `.weight` suffix).
    public init(gate: String, up: String, down: String) {
        self.gate = gate
        self.up = up
        self.down = down
    }
}

public enum FeedForwardNames: Sendable {
    case dense(MLPNames)
    case moe(MoENames)
}

/// Names of a MoE block's tensors in both real-checkpoint layouts.
public struct MoENames: Sendable {
    /// Router weight [E, H]; candidates in order of preference.
    public var router: [String]
    /// One tensor per expert: names of expert `e`.
    public var perExpert: @Sendable (Int) -> MLPNames
    /// Fused 3-D tensors: [gate | up] concatenated along the output axis, and down.
    public var fusedGateUp: [String]
    public var fusedDown: [String]
    /// Storage of a fused expert matrix when its shape cannot tell (hidden == 2·intermediate).
    public var fusedDefaultLayout: LinearWeight.Layout
    public var shared: MLPNames?
    /// The shared expert's [1, H] gate (Qwen 2 MoE).
    public var sharedGate: String? = nil
    /// The router's score-correction bias [E] (DeepSeek-V3, GLM-4.5).
    public var scoreCorrectionBias: String? = nil
    /// Experts stacked in 2-D tensors [E·I, H] (DBRX's `w1`, `v1`, `w2`; `w2` is applied as x · w2).
    public var stacked: MLPNames? = nil
    /// The fused gate/up outputs alternate gate, up, gate, up… instead of all gates then all ups (gpt-oss).
    public var interleavedGateUp = false
    /// Biases of the fused expert tensors: [E, 2I] (laid out like the outputs) and [E, H] (gpt-oss).
    public var fusedGateUpBias: String? = nil, fusedDownBias: String? = nil
    /// The router's bias [E] (gpt-oss).
    public var routerBias: String? = nil
}

/// Where the decoder's tensors live in a checkpoint.
public struct ModelWeightNames: Sendable {
    public var embed: String
    public var finalNorm: String
    public var lmHead: String
    public var layer: @Sendable (Int, LayerSpec) -> LayerWeightNames
    /// Tensors that may be present and are deliberately not used (e.g. a vision tower).
    public var ignoredPrefixes: [String]
}

extension ModelWeightNames {
    /// The Llama-family layout under `p` (`embed_tokens`, `norm`, `layers.N.`): `layer` names the
    /// tensors of one layer given its prefix (`model.layers.3.`) and spec.
    static func llamaLayout(_ p: String, ignoring ignored: [String] = [],
                            layer: @escaping @Sendable (String, LayerSpec) -> LayerWeightNames) -> ModelWeightNames {
        ModelWeightNames(embed: "\(p)embed_tokens.weight", finalNorm: "\(p)norm.weight", lmHead: "lm_head.weight",
                         layer: { index, spec in layer("\(p)layers.\(index).", spec) }, ignoredPrefixes: ignored)
    }
}

extension MoENames {
    /// Experts under `layer` + `mlp.` as Qwen, OLMoE, GLM-4.5 and DeepSeek-V3 name them: router
    /// `mlp.gate`, experts `mlp.experts.E.{gate,up,down}_proj` or fused `mlp.experts.gate_up_proj`
    /// [E, 2I, H] and `down_proj`.
    static func mlpExperts(_ layer: String, shared: MLPNames? = nil) -> MoENames {
        MoENames(router: ["\(layer)mlp.gate.weight"], perExpert: { e in MLPNames(prefix: "\(layer)mlp.experts.\(e).") },
                 fusedGateUp: ["\(layer)mlp.experts.gate_up_proj"], fusedDown: ["\(layer)mlp.experts.down_proj"],
                 fusedDefaultLayout: .outMajor, shared: shared)
    }
}
