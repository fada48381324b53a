import MeshTensors

/// The experts one token goes to, with their routing weights.
public struct TokenRoute: Sendable, Equatable {
    public var experts: [Int]
    public var weights: [Float]
    public init(experts: [Int], weights: [Float]) {
        self.experts = experts
        self.weights = weights
    }
}

extension MoESpec {
    /// Routes each row of router logits [T, E] (transformers' router forward, per architecture).
    public func route(logits: Matrix) -> [TokenRoute] {
        (0..<logits.rows).map { t in
            let row = logits.row(t)
            switch routing {
            case .softmaxTopK(let normalize):
                // softmax in f32 over all experts, then top-k of the probabilities.
                var probabilities = logits.rowArray(t)
                probabilities.withUnsafeMutableBufferPointer { softmax($0.baseAddress!, count: expertCount) }
                let chosen = probabilities.withUnsafeBufferPointer { MeshTensors.topK($0.baseAddress!, count: expertCount, k: topK) }
                var weights = chosen.map { probabilities[$0] }
                if normalize {
                    let sum = weights.reduce(0, +)
                    weights = weights.map { $0 / sum }
                }
                return TokenRoute(experts: chosen, weights: weights)
            case .topKSigmoid:
                let chosen = MeshTensors.topK(row, count: expertCount, k: topK)
                return TokenRoute(experts: chosen, weights: chosen.map { sigmoid(row[$0]) })
            }
        }
    }
}
