/// Parameter counts from a spec alone (no weights needed): what a model is and what a token uses.
public struct ParameterCount: Sendable, Equatable {
    /// Every parameter of the text model, embeddings and LM head included.
    public var total: Int
    /// What one token uses: all non-expert weights plus top-k routed experts and shared experts.
    public var active: Int
    /// Routed expert parameters of the whole model (what workers hold).
    public var routedExperts: Int
}

extension ModelSpec {
    public var parameterCount: ParameterCount {
        let (h, d) = (hiddenSize, headDim)
        var total = vocabSize * h * (tieWordEmbeddings ? 1 : 2) + h        // embeddings, LM head, final norm
        var inactive = 0
        var routed = 0
        for layer in layers {
            total += h * headCount * d * 2 + h * kvHeadCount * d * 2         // q, o; k, v
            total += 2 * h                                                   // two RMSNorms
            if layer.attention.qkNorm == .rmsBeforeRope { total += 2 * d }  // Qwen 3 q/k norm weights
            switch layer.feedForward {
            case .dense(let intermediate):
                total += 3 * h * intermediate
            case .moe(let moe):
                let expert = 3 * h * moe.intermediateSize
                total += moe.expertCount * h + moe.expertCount * expert + 3 * h * (moe.sharedExpertIntermediateSize ?? 0)
                routed += moe.expertCount * expert
                inactive += (moe.expertCount - moe.topK) * expert
            }
        }
        return ParameterCount(total: total, active: total - inactive, routedExperts: routed)
    }
}
