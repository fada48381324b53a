import MeshModels
import MeshTensors

extension ExpertRequestHeader {
    /// Checks an expert request against what the receiver holds before any data is touched:
    /// one "activations" frame [tokenCount, hidden], consistent routes, finite weights, and
    /// only experts in `held`. Returns the activations widened to f32.
    public func validatedActivations(_ tensors: [WireTensor], hiddenSize expectedHidden: Int,
                                     holds: (ExpertKey) -> Bool) throws -> Matrix {
        guard Int(hiddenSize) == expectedHidden else {
            throw WireError(.malformed, "request \(requestId): hidden_size \(hiddenSize) but this model's hidden size is \(expectedHidden)")
        }
        guard tensors.count == 1, tensors[0].name == "activations" else {
            throw WireError(.malformed, "request \(requestId): expected exactly one frame named 'activations', got \(tensors.map(\.name))")
        }
        let shape = [Int(tokenCount), Int(hiddenSize)]
        guard tensors[0].shape == shape else {
            throw WireError(.malformed, "request \(requestId): activations have shape \(tensors[0].shape), expected \(shape)")
        }
        guard routeOffsets.count == Int(tokenCount) + 1, routeOffsets.first == 0 else {
            throw WireError(.malformed, "request \(requestId): route_offsets must have token_count + 1 = \(Int(tokenCount) + 1) entries starting at 0, got \(routeOffsets.count)")
        }
        for i in 1..<routeOffsets.count where routeOffsets[i] < routeOffsets[i - 1] {
            throw WireError(.malformed, "request \(requestId): route_offsets decrease at token \(i - 1)")
        }
        guard Int(routeOffsets.last!) == expertIds.count, expertIds.count == weights.count else {
            throw WireError(.malformed, "request \(requestId): route_offsets end at \(routeOffsets.last!) but there are \(expertIds.count) expert ids and \(weights.count) weights")
        }
        for (index, token) in generatedTokens.enumerated()
        where token >= tokenCount || (index > 0 && token <= generatedTokens[index - 1]) {
            throw WireError(.malformed, "request \(requestId): generated_tokens must be ascending indices below token_count \(tokenCount), got \(token) at \(index)")
        }
        if let bad = weights.first(where: { !$0.isFinite }) {
            throw WireError(.malformed, "request \(requestId): routing weight \(bad) is not finite")
        }
        for expert in Set(expertIds) {
            let key = ExpertKey(layer: Int(layer), expert: Int(expert))
            guard holds(key) else { throw WireError(.unknownExpert, "request \(requestId): \(key) is not held by this worker") }
        }
        return tensors[0].matrix()
    }
}
