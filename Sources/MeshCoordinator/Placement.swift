import MeshModels

/// Which worker serves each (layer, expert). A value: it can be recomputed as workers come
/// and go. Every expert is on exactly one worker (replicas come with the reliability work).
public struct Placement: Sendable, Equatable {
    public let owner: [ExpertKey: String]
    /// Every worker that serves an expert, in name order.
    public let workers: [String]
    /// layer → expert → index into `workers` (-1: unassigned). Built once: every MoE layer of every
    /// step reads it (rebuilding the worker list per layer cost ~31 ms a step at Qwen3-235B's shape).
    private let slots: [Int: [Int]]

    public init(owner: [ExpertKey: String]) {
        self.owner = owner
        workers = Array(Set(owner.values)).sorted()
        let slotOf = Dictionary(uniqueKeysWithValues: workers.enumerated().map { ($1, $0) })
        var slots: [Int: [Int]] = [:]
        for (key, name) in owner {
            var table = slots[key.layer] ?? []
            if table.count <= key.expert { table += [Int](repeating: -1, count: key.expert + 1 - table.count) }
            table[key.expert] = slotOf[name]!
            slots[key.layer] = table
        }
        self.slots = slots
    }

    /// Expert → index into `workers` for one layer (-1 or out of range: unassigned).
    public func workerSlots(layer: Int) -> [Int] { slots[layer] ?? [] }

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

    /// One line per worker: "name: N experts (layers a-b)".
    public var summary: [String] {
        workers.map { name in
            let keys = experts(of: name)
            let layers = Set(keys.map(\.layer)).sorted()
            return "\(name): \(keys.count) experts across layers \(layers.first ?? 0)-\(layers.last ?? 0)"
        }
    }
}
