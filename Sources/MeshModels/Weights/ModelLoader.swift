import Foundation
import MeshTensors

/// A model directory opened and checked: spec, dense weights, and access to the experts.
public final class LoadedModel: @unchecked Sendable {
    public let directory: URL
    public let spec: ModelSpec
    public let dense: DenseWeights
    public let checkpoint: Checkpoint
    /// The layers this process runs: all, but on a pipeline stage.
    public let heldLayers: Range<Int>
    let names: ModelWeightNames

    /// Opens `directory`, decodes config.json and checks every dense tensor (presence, shape);
    /// the dense projections are held in `denseFormat` (`.mapped` by default: a worker, which computes
    /// none of them, leaves them untouched in the mapped file; but the dense FFN and shared experts when
    /// `feedForwardOffloaded`: workers compute them, so they stay untouched in the mapped file).
    /// Experts are checked by `loadExperts`; call `unexpectedTensors` after loading them. Pipeline
    /// stage K of N (`stage`) converts only what it runs (`heldLayers`, and the head if K is 0);
    /// the rest stays untouched in the mapped file.
    public init(directory: URL, denseFormat: WeightFormat = .mapped, feedForwardOffloaded: Bool = false,
                stage: (index: Int, count: Int)? = nil) throws {
        try denseFormat.checkSupported()
        self.directory = directory
        var (architecture, spec) = try ArchitectureRegistry.decode(configFile: directory.appendingPathComponent("config.json"))
        let checkpoint = try Checkpoint(directory: directory)
        self.checkpoint = checkpoint
        // generation_config.json's eos list wins over config.json's (as in transformers' generate).
        if let generation = try? ConfigReader(file: directory.appendingPathComponent("generation_config.json")) {
            let eos = try generation.intOrList("eos_token_id")
            if !eos.isEmpty { spec.eosTokenIds = eos }
        }
        let layouts = ArchitectureRegistry.layouts
        guard let layout = layouts.first(where: { checkpoint.contains(architecture.names(prefix: $0.decoder).embed) }) else {
            let expected = architecture.names(prefix: layouts[0].decoder).embed
            throw ModelError("tensor '\(expected)' is missing: no embedding table found in \(directory.lastPathComponent)")
        }
        var names = architecture.names(prefix: layout.decoder)
        names.lmHead = layout.lmHead
        names.ignoredPrefixes += (spec.layerCount ..< spec.layerCount + spec.unusedTrailingLayers).map { "\(layout.decoder)layers.\($0)." }
        self.names = names
        self.spec = spec
        let heldLayers = try stage.map { stage in
            let shares = try spec.stageLayers(stage.count)
            guard shares.indices.contains(stage.index) else {
                throw ModelError("stage \(stage.index) of \(stage.count) does not exist: stages are 0 to \(stage.count - 1)")
            }
            return shares[stage.index]
        } ?? 0..<spec.layerCount
        self.heldLayers = heldLayers
        let held = stage.map { (layers: heldLayers, head: $0.index == 0) }
        dense = try DenseWeightLoader(spec: spec, names: names, checkpoint: checkpoint).load()
            .converted(to: denseFormat, includingFeedForward: !feedForwardOffloaded || DenseSlices(spec: spec) == nil,
                       held: held)
    }

    /// Loads the routed experts `keys` (memory-mapped: only their pages become resident when used),
    /// in `format` (int8 copies are made now, reading each expert once). Keys past a layer's routed
    /// experts name slices of its shared experts or dense FFN (`DenseSlices`).
    public func loadExperts(_ keys: [ExpertKey], format: WeightFormat = .file) throws -> [ExpertKey: MLPWeights] {
        try format.checkSupported()
        var result: [ExpertKey: MLPWeights] = [:]
        var byLayer: [Int: [Int]] = [:]
        let slices = DenseSlices(spec: spec)
        for key in keys {
            if let range = slices?.range(of: key, in: spec), let mlp = denseMLP(layer: key.layer) {
                result[key] = mlp.slice(range).converted(to: format)
                continue
            }
            guard key.layer >= 0, key.layer < spec.layerCount, let moe = spec.layers[key.layer].moe,
                  key.expert >= 0, key.expert < moe.expertCount else {
                throw ModelError("\(key) does not exist in this \(spec.modelType) model")
            }
            byLayer[key.layer, default: []].append(key.expert)
        }
        for (layer, experts) in byLayer {
            let loader = ExpertLoader(spec: spec, layer: layer, names: names, checkpoint: checkpoint)
            for (expert, weights) in try loader.load(experts) {
                result[ExpertKey(layer: layer, expert: expert)] = weights.converted(to: format)
            }
        }
        return result
    }

    /// The layer's dense FFN or shared experts, as the checkpoint stores them.
    private func denseMLP(layer: Int) -> MLPWeights? {
        switch dense.layers[layer].feedForward {
        case .dense(let mlp): return mlp
        case .moe(let moe): return moe.shared
        }
    }

    /// Every routed expert of the model.
    public var allExpertKeys: [ExpertKey] {
        spec.layers.indices.flatMap { l in (0..<(spec.layers[l].moe?.expertCount ?? 0)).map { ExpertKey(layer: l, expert: $0) } }
    }

    /// Tensors in the checkpoint that the model did not use (call after loading every expert).
    public func unexpectedTensors() -> [String] {
        checkpoint.unusedTensorNames.filter { name in
            !names.ignoredPrefixes.contains(where: { name.hasPrefix($0) }) && !name.hasSuffix("rotary_emb.inv_freq")
        }
    }

    /// Loads everything and fails on any tensor the model would not use.
    public func loadAllExpertsChecked(format: WeightFormat = .file) throws -> [ExpertKey: MLPWeights] {
        let experts = try loadExperts(allExpertKeys, format: format)
        try refuseUnexpectedTensors()
        return experts
    }

    /// Checks every expert tensor's name and shape without keeping or copying any (the coordinator,
    /// which computes no expert, fails at start on a broken checkpoint), then refuses extra tensors.
    public func checkAllExperts() throws {
        for layer in spec.moeLayerIndices {
            try ExpertLoader(spec: spec, layer: layer, names: names, checkpoint: checkpoint).check()
        }
        try refuseUnexpectedTensors()
    }

    private func refuseUnexpectedTensors() throws {
        let extra = unexpectedTensors()
        if !extra.isEmpty {
            let shown = extra.prefix(5).joined(separator: ", ")
            let more = extra.count > 5 ? " (+\(extra.count - 5) more)" : ""
            throw ModelError("unexpected tensor\(extra.count > 1 ? "s" : "") in checkpoint: \(shown)\(more): "
                             + "the weights do not match config.json")
        }
    }
}

/// Finds and shape-checks the non-expert tensors.
struct DenseWeightLoader {
    let spec: ModelSpec
    let names: ModelWeightNames
    let checkpoint: Checkpoint

    func load() throws -> DenseWeights {
        let (v, h) = (spec.vocabSize, spec.hiddenSize)
        let embedding = try checkpoint.tensor(names.embed, shape: [v, h])
        let lmHead = spec.tieWordEmbeddings && !checkpoint.contains(names.lmHead)
            ? try LinearWeight(embedding) : try LinearWeight(checkpoint.tensor(names.lmHead, shape: [v, h]))
        var layers: [LayerWeights] = []
        for (index, layerSpec) in spec.layers.enumerated() {
            layers.append(try layer(index, layerSpec))
        }
        return DenseWeights(embedding: embedding, finalNorm: try vector(names.finalNorm, h), lmHead: lmHead, layers: layers)
    }

    private func layer(_ index: Int, _ layerSpec: LayerSpec) throws -> LayerWeights {
        let n = names.layer(index, layerSpec)
        let h = spec.hiddenSize
        let attention: AttentionLayerWeights
        if let latent = layerSpec.attention.latent, let latentNames = n.latent {
            attention = .latent(try latentAttention(latent, latentNames, o: n.o))
        } else {
            attention = .standard(try standardAttention(layerSpec.attention, n))
        }
        let feedForward: FeedForwardWeights
        switch (layerSpec.feedForward, n.feedForward) {
        case (.dense(let size), .dense(let mlp)):
            feedForward = .dense(try mlpWeights(mlp, intermediate: size))
        case (.moe(let moe), .moe(let moeNames)):
            let routerName = moeNames.router.first(where: checkpoint.contains) ?? moeNames.router[0]
            let shared = try moeNames.shared.map { try mlpWeights($0, intermediate: moe.sharedExpertIntermediateSize ?? moe.intermediateSize) }
            let gate = try moeNames.sharedGate.map { try linear($0, 1, h) }
            let correction = try moeNames.scoreCorrectionBias.map { try vector($0, moe.expertCount) }
            feedForward = .moe(MoEWeights(router: try linear(routerName, moe.expertCount, h), shared: shared, sharedGate: gate,
                                          scoreCorrectionBias: correction,
                                          routerBias: try moeNames.routerBias.map { try vector($0, moe.expertCount) }))
        default:
            throw TensorError.io("internal: layer \(index) names do not match its spec")
        }
        return LayerWeights(inputNorm: try vector(n.inputNorm, h), postAttentionNorm: try vector(n.postAttentionNorm, h),
                            attention: attention, feedForward: feedForward)
    }

    private func standardAttention(_ a: AttentionSpec, _ n: LayerWeightNames) throws -> AttentionWeights {
        let (h, d) = (spec.hiddenSize, spec.headDim)
        let (qWidth, kvWidth) = (spec.headCount * d, spec.kvHeadCount * d)
        let acrossHeads = a.qkNorm == .rmsAcrossHeadsBeforeRope
        let (q, k, v) = try projections(n, qWidth: qWidth, kvWidth: kvWidth)
        return AttentionWeights(
            q: q, k: k, v: v, o: try linear(n.o, h, qWidth),
            qNorm: try n.qNorm.map { try vector($0, acrossHeads ? qWidth : d) },
            kNorm: try n.kNorm.map { try vector($0, acrossHeads ? kvWidth : d) },
            qBias: a.qkvBias ? try vector(Self.bias(of: n.q), qWidth) : nil,
            kBias: a.qkvBias ? try vector(Self.bias(of: n.k), kvWidth) : nil,
            vBias: a.qkvBias ? try vector(Self.bias(of: n.v), kvWidth) : nil,
            oBias: a.outputBias ? try vector(Self.bias(of: n.o), h) : nil,
            sinks: a.sinks ? try vector(n.sinks ?? "", spec.headCount) : nil)
    }

    private func latentAttention(_ a: LatentAttentionSpec, _ n: LatentAttentionNames, o: String) throws -> LatentAttentionWeights {
        let (h, heads) = (spec.hiddenSize, spec.headCount)
        let queryWidth = heads * (a.nopeDim + a.ropeDim)
        return LatentAttentionWeights(
            queryDown: try a.queryRank.map { try linear(n.queryDown, $0, h) },
            queryDownNorm: try a.queryRank.map { try vector(n.queryDownNorm, $0) },
            query: a.queryRank == nil ? try linear(n.query, queryWidth, h) : try linear(n.queryUp, queryWidth, a.queryRank!),
            kvDown: try linear(n.kvDown, a.kvRank + a.ropeDim, h), kvDownNorm: try vector(n.kvDownNorm, a.kvRank),
            kvUp: try linear(n.kvUp, heads * (a.nopeDim + a.valueDim), a.kvRank), o: try linear(o, h, heads * a.valueDim))
    }

    /// q, k and v: three tensors, or row ranges of one fused tensor.
    private func projections(_ n: LayerWeightNames, qWidth: Int, kvWidth: Int) throws -> (LinearWeight, LinearWeight, LinearWeight) {
        let h = spec.hiddenSize
        guard let fused = n.fusedQKV else {
            return (try linear(n.q, qWidth, h), try linear(n.k, kvWidth, h), try linear(n.v, kvWidth, h))
        }
        let qkv = try linear(fused, qWidth + 2 * kvWidth, h)
        return (qkv.outputs(0..<qWidth), qkv.outputs(qWidth..<(qWidth + kvWidth)), qkv.outputs((qWidth + kvWidth)..<(qWidth + 2 * kvWidth)))
    }

    /// `…q_proj.weight` → `…q_proj.bias`.
    static func bias(of weight: String) -> String {
        (weight.hasSuffix(".weight") ? String(weight.dropLast(".weight".count)) : weight) + ".bias"
    }

    private func mlpWeights(_ n: MLPNames, intermediate: Int) throws -> MLPWeights {
        let h = spec.hiddenSize
        return MLPWeights(gate: try linear(n.gate, intermediate, h), up: try linear(n.up, intermediate, h),
                          down: try linear(n.down, h, intermediate))
    }

    private func linear(_ name: String, _ out: Int, _ inner: Int) throws -> LinearWeight {
        try LinearWeight(checkpoint.tensor(name, shape: [out, inner]))
    }

    private func vector(_ name: String, _ count: Int) throws -> [Float] {
        try checkpoint.tensor(name, shape: [count]).toFloats()
    }
}

/// Finds the routed experts of one layer in either checkpoint layout.
struct ExpertLoader {
    let spec: ModelSpec
    let layer: Int
    let names: ModelWeightNames
    let checkpoint: Checkpoint

    func load(_ experts: [Int]) throws -> [(Int, MLPWeights)] {
        guard let sources = try sources() else { return [] }
        return try experts.map { ($0, try sources.make($0)) }
    }

    /// Checks every expert tensor of the layer (names, shapes) without copying any weight.
    func check() throws {
        guard let sources = try sources(), let moe = spec.layers[layer].moe else { return }
        // Making an expert only views the checkpoint (a copy only for gpt-oss's in-major interleave,
        // whose shapes `sources` checked already).
        if !sources.copies { for expert in 0..<moe.expertCount { _ = try sources.make(expert) } }
    }

    /// The layer's expert tensors found and shape-checked, and how to make expert e's weights from
    /// them (`copies`: whether that copies weights rather than viewing the checkpoint).
    private func sources() throws -> (make: (Int) throws -> MLPWeights, copies: Bool)? {
        guard let moe = spec.layers[layer].moe, case .moe(let n) = names.layer(layer, spec.layers[layer]).feedForward else {
            return nil
        }
        let (h, i, e) = (spec.hiddenSize, moe.intermediateSize, moe.expertCount)
        if let stacked = n.stacked, checkpoint.contains(stacked.gate) {
            // [E·I, H] each, viewed as [E, I, H]; the down matrix is applied as x · w2, so in-major.
            let (gate, up, down) = try (checkpoint.tensor(stacked.gate, shape: [e * i, h]).reshaped([e, i, h]),
                                        checkpoint.tensor(stacked.up, shape: [e * i, h]).reshaped([e, i, h]),
                                        checkpoint.tensor(stacked.down, shape: [e * i, h]).reshaped([e, i, h]))
            return (make: { expert in
                MLPWeights(gate: try LinearWeight(gate.slice(expert)), up: try LinearWeight(up.slice(expert)),
                           down: try LinearWeight(inMajor: down.slice(expert)))
            }, copies: false)
        }
        let fused: FusedExperts?
        if let blocks = n.fusedGateUp.map({ $0 + "_blocks" }).first(where: checkpoint.contains) {
            fused = try mxfp4Experts(blocks, n)
        } else if let gateUpName = n.fusedGateUp.first(where: checkpoint.contains) {
            fused = try fusedExperts(gateUpName, n)
        } else {
            fused = nil
        }
        guard let fused else {
            return (make: { expert in
                let m = n.perExpert(expert)
                return MLPWeights(gate: try LinearWeight(checkpoint.tensor(m.gate, shape: [i, h])),
                                  up: try LinearWeight(checkpoint.tensor(m.up, shape: [i, h])),
                                  down: try LinearWeight(checkpoint.tensor(m.down, shape: [h, i])), activation: moe.expertActivation)
            }, copies: false)
        }
        let gateUpBias = try n.fusedGateUpBias.map { try checkpoint.tensor($0, shape: [e, 2 * i]) }
        let downBias = try n.fusedDownBias.map { try checkpoint.tensor($0, shape: [e, h]) }
        // Bias entries laid out like the outputs: interleaved (gpt-oss) or gates then ups.
        let (gates, ups) = n.interleavedGateUp
            ? (Array(stride(from: 0, to: 2 * i, by: 2)), Array(stride(from: 1, to: 2 * i, by: 2))) : (Array(0..<i), Array(i..<(2 * i)))
        return (make: { expert in
            let (gate, up) = try fused.gateAndUp(expert)
            var weights = MLPWeights(gate: gate, up: up, down: try fused.down(expert), activation: moe.expertActivation)
            if let bias = gateUpBias?.slice(expert).toFloats() {
                (weights.gateBias, weights.upBias) = (gates.map { bias[$0] }, ups.map { bias[$0] })
            }
            weights.downBias = downBias?.slice(expert).toFloats()
            return weights
        }, copies: fused.copies)
    }

    /// How to view (or copy) one expert's gate, up and down matrices out of fused tensors.
    struct FusedExperts {
        var gateAndUp: (Int) throws -> (LinearWeight, LinearWeight)
        var down: (Int) throws -> LinearWeight
        var copies: Bool
    }

    /// Fused 3-D expert tensors in either layout: [E, 2I, H] (nn.Linear storage: Mixtral/Qwen in
    /// transformers 5) or [E, H, 2I] (x @ W: Llama 4, gpt-oss).
    private func fusedExperts(_ gateUpName: String, _ n: MoENames) throws -> FusedExperts {
        guard let moe = spec.layers[layer].moe else { throw ModelError("internal: layer \(layer) has no experts") }
        let (h, i, e) = (spec.hiddenSize, moe.intermediateSize, moe.expertCount)
        let downName = n.fusedDown.first(where: checkpoint.contains) ?? n.fusedDown[0]
        let gateUp = try checkpoint.tensor(gateUpName)
        let down = try checkpoint.tensor(downName)
        let outMajor: Bool
        if gateUp.shape == [e, 2 * i, h], gateUp.shape == [e, h, 2 * i] {
            outMajor = n.fusedDefaultLayout == .outMajor
        } else if gateUp.shape == [e, 2 * i, h] {
            outMajor = true
        } else if gateUp.shape == [e, h, 2 * i] {
            outMajor = false
        } else {
            throw TensorError.shapeMismatch(name: gateUpName, expected: n.fusedDefaultLayout == .outMajor ? [e, 2 * i, h] : [e, h, 2 * i],
                                            found: gateUp.shape)
        }
        try down.expect(shape: outMajor ? [e, h, i] : [e, i, h])
        return FusedExperts(gateAndUp: { expert in
            let slice = gateUp.slice(expert)
            if n.interleavedGateUp {
                // gate in the even outputs, up in the odd ones (gpt-oss); in-major columns are copied apart.
                return outMajor
                    ? (try LinearWeight(slice).everyOtherOutput(from: 0), try LinearWeight(slice).everyOtherOutput(from: 1))
                    : (try LinearWeight(inMajor: slice.everyOtherColumn(from: 0)), try LinearWeight(inMajor: slice.everyOtherColumn(from: 1)))
            }
            // chunk(2, dim=-1): gate is the first half of the fused output features, up the second.
            let fused = outMajor ? try LinearWeight(slice) : try LinearWeight(inMajor: slice)
            return (fused.outputs(0..<i), fused.outputs(i..<(2 * i)))
        }, down: { expert in
            outMajor ? try LinearWeight(down.slice(expert)) : try LinearWeight(inMajor: down.slice(expert))
        }, copies: n.interleavedGateUp && !outMajor)
    }

    /// gpt-oss's MXFP4 experts, read in place: `gate_up_proj_blocks` [E, 2I, H/32, 16] with
    /// `_scales` [E, 2I, H/32] (rows are the outputs, gate and up interleaved), `down_proj_blocks`
    /// [E, H, I/32, 16] with `_scales` [E, H, I/32].
    private func mxfp4Experts(_ gateUpBlocksName: String, _ n: MoENames) throws -> FusedExperts {
        guard let moe = spec.layers[layer].moe else { throw ModelError("internal: layer \(layer) has no experts") }
        let (h, i, e) = (spec.hiddenSize, moe.intermediateSize, moe.expertCount)
        guard h % 32 == 0, i % 32 == 0 else {
            throw ModelError("\(gateUpBlocksName): MXFP4 needs hidden_size (\(h)) and intermediate_size (\(i)) to be multiples of 32")
        }
        let base = String(gateUpBlocksName.dropLast("_blocks".count))
        let downBase = n.fusedDown.first(where: { checkpoint.contains($0 + "_blocks") }) ?? n.fusedDown[0]
        func pair(_ name: String, rows: Int, inner: Int) throws -> (ByteTensor, ByteTensor) {
            let (blocks, scales) = (try checkpoint.byteTensor(name + "_blocks"), try checkpoint.byteTensor(name + "_scales"))
            guard blocks.shape == [e, rows, inner / 32, 16] else {
                throw TensorError.shapeMismatch(name: blocks.name, expected: [e, rows, inner / 32, 16], found: blocks.shape)
            }
            guard scales.shape == [e, rows, inner / 32] else {
                throw TensorError.shapeMismatch(name: scales.name, expected: [e, rows, inner / 32], found: scales.shape)
            }
            return (blocks, scales)
        }
        let (gateUpBlocks, gateUpScales) = try pair(base, rows: 2 * i, inner: h)
        let (downBlocks, downScales) = try pair(downBase, rows: h, inner: i)
        return FusedExperts(gateAndUp: { expert in
            let fused = try LinearWeight(mxfp4Blocks: gateUpBlocks.slice(expert), scales: gateUpScales.slice(expert))
            return n.interleavedGateUp ? (fused.everyOtherOutput(from: 0), fused.everyOtherOutput(from: 1))
                : (fused.outputs(0..<i), fused.outputs(i..<(2 * i)))
        }, down: { expert in
            try LinearWeight(mxfp4Blocks: downBlocks.slice(expert), scales: downScales.slice(expert))
        }, copies: false)
    }
}
