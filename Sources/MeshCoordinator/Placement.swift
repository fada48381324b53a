import MeshModels

/// Which worker serves each (layer, expert). A value: it can be recomputed as workers come
/// and go. Every expert is on exactly one worker (replicas come with the reliability work).
public struct Placement: Sendable, Equatable {
    public private(set) var owner: [ExpertKey: String] = [:]

    public init(owner: [ExpertKey: String]) { self.owner = owner }

    /// Balanced by bytes and deterministic for the same worker names: experts in (layer, expert)
    /// order, each to the worker with the fewest assigned bytes so far (ties: name order).
    public static func balanced(experts: [(key: ExpertKey, bytes: Int)], workers: [String]) -> Placement {
        let names = workers.sorted()
        guard !names.isEmpty else { return Placement(owner: [:]) }
        var load = Dictionary(uniqueKeysWithValues: names.map { ($0, 0) })
        var owner: [ExpertKey: String] = [:]
        for expert in experts.sorted(by: { $0.key < $1.key }) {
            let target = names.min { (load[$0]!, $0) < (load[$1]!, $1) }!
            owner[expert.key] = target
            load[target]! += expert.bytes
        }
        return Placement(owner: owner)
    }

    public func experts(of worker: String) -> [ExpertKey] {
        owner.filter { $0.value == worker }.map(\.key).sorted()
    }

    public var workers: [String] { Array(Set(owner.values)).sorted() }

    /// One line per worker: "name: N experts (layers a-b)".
    public var summary: [String] {
        workers.map { name in
            let keys = experts(of: name)
            let layers = Set(keys.map(\.layer)).sorted()
            return "\(name): \(keys.count) experts across layers \(layers.first ?? 0)-\(layers.last ?? 0)"
        }
    }
}
