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
    /// `correctionBias` [E]: the score-correction bias of grouped sigmoid routing.
    public func route(logits: Matrix, correctionBias: [Float]? = nil) -> [TokenRoute] {
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
            case .groupedSigmoid(let rule):
                return groupedSigmoid(logits.rowArray(t), rule, correctionBias: correctionBias)
            case .topKSoftmax:
                let chosen = MeshTensors.topK(row, count: expertCount, k: topK)
                var weights = chosen.map { row[$0] }
                weights.withUnsafeMutableBufferPointer { softmax($0.baseAddress!, count: topK) }
                return TokenRoute(experts: chosen, weights: weights)
            }
        }
    }

    /// `Glm4MoeTopkRouter` / `DeepseekV3TopkRouter` for one token's logits [E].
    private func groupedSigmoid(_ logits: [Float], _ rule: GroupedSigmoid, correctionBias: [Float]?) -> TokenRoute {
        let scores = logits.map(sigmoid)
        var forChoice = zip(scores, correctionBias ?? [Float](repeating: 0, count: expertCount)).map { $0 + $1 }
        let perGroup = expertCount / rule.groups
        // A group's score: the sum of its two best biased scores.
        let groupScores = (0..<rule.groups).map { g -> Float in
            let best = forChoice[(g * perGroup)..<((g + 1) * perGroup)].sorted(by: >)
            return best.prefix(2).reduce(0, +)
        }
        let keptGroups = Set(groupScores.withUnsafeBufferPointer { MeshTensors.topK($0.baseAddress!, count: rule.groups, k: rule.topKGroups) })
        for expert in 0..<expertCount where !keptGroups.contains(expert / perGroup) { forChoice[expert] = -.infinity }
        let chosen = forChoice.withUnsafeBufferPointer { MeshTensors.topK($0.baseAddress!, count: expertCount, k: topK) }
        var weights = chosen.map { scores[$0] }
        if rule.normalize {
            let sum = weights.reduce(0, +) + 1e-20
            weights = weights.map { $0 / sum }
        }
        return TokenRoute(experts: chosen, weights: weights.map { $0 * rule.scale })
    }
}
