import MeshModels

/// Which workers serve each (layer, expert): its replicas, on distinct workers. A value: it can be
/// recomputed as workers come and go.
public struct Placement: Sendable, Equatable {
    /// Each expert's workers, in the order the placement chose them.
    public let replicas: [ExpertKey: [String]]
    /// Every worker that serves an expert, in name order.
    public let workers: [String]
    /// layer → expert → indices into `workers` (empty: unassigned). Built once: every MoE layer of
    /// every step reads it (rebuilding the worker list per layer cost ~31 ms a step at Qwen3-235B's shape).
    private let slots: [Int: [[Int]]]

    public init(replicas: [ExpertKey: [String]]) {
        self.replicas = replicas
        workers = Array(Set(replicas.values.joined())).sorted()
        let slotOf = Dictionary(uniqueKeysWithValues: workers.enumerated().map { ($1, $0) })
        var slots: [Int: [[Int]]] = [:]
        for (key, names) in replicas {
            var table = slots[key.layer] ?? []
            if table.count <= key.expert { table += [[Int]](repeating: [], count: key.expert + 1 - table.count) }
            table[key.expert] = names.map { slotOf[$0]! }
            slots[key.layer] = table
        }
        self.slots = slots
    }

    /// One worker per expert.
    public init(owner: [ExpertKey: String]) { self.init(replicas: owner.mapValues { [$0] }) }

    /// Expert → indices into `workers` of its replicas, for one layer (out of range: unassigned).
    public func workerSlots(layer: Int) -> [[Int]] { slots[layer] ?? [] }

    /// Balanced by bytes and deterministic for the same worker names: experts in (layer, expert)
    /// order, each to the `replicas` distinct workers with the fewest assigned bytes so far (ties:
    /// name order) that have room for it (`capacity`: bytes a worker may hold; absent or 0: no
    /// limit). With fewer workers than `replicas`, each expert is on every worker. Throws when the
    /// experts do not fit.
    public static func balanced(experts: [(key: ExpertKey, bytes: Int)], workers: [String], replicas: Int = 1,
                                capacity: [String: Int] = [:]) throws -> Placement {
        let names = workers.sorted()
        guard !names.isEmpty else { return Placement(replicas: [:]) }
        var load = Dictionary(uniqueKeysWithValues: names.map { ($0, 0) })
        var chosen: [ExpertKey: [String]] = [:]
        let needed = min(max(1, replicas), names.count)
        for expert in experts.sorted(by: { $0.key < $1.key }) {
            let roomy = names.filter { fits(expert.bytes, on: $0, load: load, capacity: capacity) }
            let targets = roomy.sorted { (load[$0]!, $0) < (load[$1]!, $1) }.prefix(needed)
            guard targets.count == needed else {
                let total = experts.reduce(0) { $0 + $1.bytes } * needed
                throw ClusterError(String(format: "the experts do not fit the workers' --max-expert-memory: %@ needs room on %d "
                    + "workers, %d have it (%.2f GB of experts to place in all); add workers or raise their limits",
                    "\(expert.key)", needed, roomy.count,
                    Double(total) / 1e9))
            }
            chosen[expert.key] = Array(targets)
            for target in targets { load[target]! += expert.bytes }
        }
        return Placement(replicas: chosen)
    }

    static func fits(_ bytes: Int, on worker: String, load: [String: Int], capacity: [String: Int]) -> Bool {
        guard let limit = capacity[worker], limit > 0 else { return true }
        return load[worker, default: 0] + bytes <= limit
    }

    /// The placement with `lost`'s experts moved to `survivors`: each to the one with the fewest
    /// bytes that does not hold it yet and has room (ties: name order), so every expert keeps as
    /// many replicas as it can. Experts no survivor can take just lose that replica.
    public func reassigning(_ lost: String, to survivors: [String], bytes: [ExpertKey: Int],
                            capacity: [String: Int] = [:]) -> Placement {
        var load = Dictionary(uniqueKeysWithValues: survivors.map { name in
            (name, experts(of: name).reduce(0) { $0 + (bytes[$1] ?? 0) })
        })
        var moved = replicas
        for key in experts(of: lost) {
            var holders = moved[key]!.filter { $0 != lost }
            let candidates = survivors.filter {
                !holders.contains($0) && Self.fits(bytes[key] ?? 0, on: $0, load: load, capacity: capacity)
            }
            if let target = candidates.min(by: { (load[$0]!, $0) < (load[$1]!, $1) }) {
                holders.append(target)
                load[target]! += bytes[key] ?? 0
            }
            moved[key] = holders
        }
        return Placement(replicas: moved.filter { !$0.value.isEmpty })
    }

    /// The placement with `newcomer` holding exactly what `lost` held.
    public func replacing(_ lost: String, with newcomer: String) -> Placement {
        Placement(replicas: replicas.mapValues { $0.map { $0 == lost ? newcomer : $0 } })
    }

    public func experts(of worker: String) -> [ExpertKey] {
        replicas.filter { $0.value.contains(worker) }.map(\.key).sorted()
    }

    /// Experts none of whose replicas is in `serving`.
    public func unserved(serving: Set<String>) -> [ExpertKey] {
        replicas.filter { $0.value.allSatisfy { !serving.contains($0) } }.map(\.key).sorted()
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
