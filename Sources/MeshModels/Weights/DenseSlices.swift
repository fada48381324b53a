import MeshTensors

/// Shared experts and dense FFN layers cut along their intermediate dimension into slices that
/// workers hold and compute like routed experts (`coordinator --offload-dense`): every token of a
/// layer goes to every slice of it, with weight 1 (or its shared-expert gate), and the slices'
/// partial sums add up to the MLP's output in the same combine as the routed experts'.
///
/// A slice is as wide as one routed expert (`moe_intermediate_size`), so slices weigh what
/// experts weigh and are placed alike; the last slice of an MLP may be narrower. Slice s of a MoE
/// layer's shared experts has expert id `expertCount + s`; of a dense layer, id s. The cut follows
/// from the config alone, so coordinator and workers agree without saying more on the wire.
public struct DenseSlices: Sendable, Equatable {
    /// Intermediate values per slice.
    public let width: Int

    /// The slicing of `spec`'s dense parts, or nil when the model has no routed experts to size
    /// slices by (a dense model).
    public init?(spec: ModelSpec) {
        guard let width = spec.layers.lazy.compactMap(\.moe).first?.intermediateSize, width > 0 else { return nil }
        self.width = width
    }

    /// The slices of an MLP of `intermediate` values: expert-wide ranges, the last one narrower.
    public func ranges(intermediate: Int) -> [Range<Int>] {
        stride(from: 0, to: intermediate, by: width).map { $0 ..< min($0 + width, intermediate) }
    }

    /// The first slice id and the intermediate range of each slice of `layer`'s dense FFN or shared
    /// experts; nil for a layer with neither.
    public func slices(of layer: LayerSpec) -> (firstId: Int, ranges: [Range<Int>])? {
        let (firstId, intermediate): (Int, Int)
        switch layer.feedForward {
        case .dense(let size):
            (firstId, intermediate) = (0, size)
        case .moe(let moe):
            guard let shared = moe.sharedExpertIntermediateSize else { return nil }
            (firstId, intermediate) = (moe.expertCount, shared)
        }
        return (firstId, ranges(intermediate: intermediate))
    }

    /// Every slice of the model, as the expert keys the placement gives out.
    public func keys(_ spec: ModelSpec) -> [ExpertKey] {
        spec.layers.indices.flatMap { layer -> [ExpertKey] in
            guard let (firstId, ranges) = slices(of: spec.layers[layer]) else { return [] }
            return ranges.indices.map { ExpertKey(layer: layer, expert: firstId + $0) }
        }
    }

    /// The intermediate range of `key` if it names a slice of `spec` (nil: a routed expert or nothing).
    public func range(of key: ExpertKey, in spec: ModelSpec) -> Range<Int>? {
        guard spec.layers.indices.contains(key.layer), let (firstId, ranges) = slices(of: spec.layers[key.layer]),
              ranges.indices.contains(key.expert - firstId) else { return nil }
        return ranges[key.expert - firstId]
    }
}

extension MLPWeights {
    /// The MLP restricted to intermediate values `range`: rows of gate and up, columns of down
    /// (views, no copy). The down projection's bias belongs to the slice that starts at 0, so it
    /// is added once.
    public func slice(_ range: Range<Int>) -> MLPWeights {
        var slice = MLPWeights(gate: gate.outputs(range), up: up.outputs(range), down: down.inputs(range),
                               activation: activation)
        slice.gateBias = gateBias.map { Array($0[range]) }
        slice.upBias = upBias.map { Array($0[range]) }
        slice.downBias = range.lowerBound == 0 ? downBias : nil
        return slice
    }
}
