extension ModelSpec {
    /// The layers each of `stages` pipeline stages runs: consecutive runs, as even as the count
    /// allows (stage 0 also runs the embedding and the head). Throws when the split is impossible.
    public func stageLayers(_ stages: Int) throws -> [Range<Int>] {
        try Self.stageLayers(layerCount: layerCount, stages: stages)
    }

    /// The same for a model of `layerCount` layers (`expertmesh plan` splits a `ModelShape` by it).
    public static func stageLayers(layerCount: Int, stages: Int) throws -> [Range<Int>] {
        guard stages >= 1, stages <= layerCount else {
            throw ModelError("\(stages) pipeline stages for \(layerCount) layers: give between 1 and \(layerCount) stages")
        }
        return (0..<stages).map { layerCount * $0 / stages ..< layerCount * ($0 + 1) / stages }
    }
}

extension Range where Bound == Int {
    /// "4–7" for 4..<8: how logs and `plan` name a stage's layers.
    public var span: String { "\(lowerBound)–\(upperBound - 1)" }
}
