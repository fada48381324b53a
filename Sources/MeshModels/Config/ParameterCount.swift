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
    public var parameterCount: ParameterCount { ModelShape(spec: self).parameterCount }
}
