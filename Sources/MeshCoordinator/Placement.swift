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

    /// Balanced by load and bytes, deterministic for the same names and load: experts in (layer,
    /// expert) order, the hottest of a layer first (`load`: tokens routed to each, as measured;
    /// empty: not measured yet), each to the `replicas` distinct workers with room for it
    /// (`capacity`: bytes a worker may hold; absent or 0: no limit) that have the least of that
    /// layer's load so far, then the fewest assigned bytes, then the first name. Load is balanced
    /// per layer because every MoE layer's exchange waits for its busiest worker. With fewer workers
    /// than `replicas`, each expert is on every worker. Throws when the experts do not fit.
    public static func balanced(experts: [(key: ExpertKey, bytes: Int)], workers: [String], replicas: Int = 1,
                                capacity: [String: Int] = [:], load: [ExpertKey: Int] = [:]) throws -> Placement {
        let names = workers.sorted()
        guard !names.isEmpty else { return Placement(replicas: [:]) }
        var bytes = Dictionary(uniqueKeysWithValues: names.map { ($0, 0) })
        var layerLoad = LayerLoad()
        var chosen: [ExpertKey: [String]] = [:]
        let needed = min(max(1, replicas), names.count)
        let order = experts.sorted { a, b in
            (a.key.layer, -(load[a.key] ?? 0), a.key.expert) < (b.key.layer, -(load[b.key] ?? 0), b.key.expert)
        }
        for expert in order {
            let roomy = names.filter { fits(expert.bytes, on: $0, load: bytes, capacity: capacity) }
            let targets = roomy.sorted {
                (layerLoad[$0, expert.key.layer], bytes[$0]!, $0) < (layerLoad[$1, expert.key.layer], bytes[$1]!, $1)
            }.prefix(needed)
            guard targets.count == needed else {
                let total = experts.reduce(0) { $0 + $1.bytes } * needed
                throw ClusterError(String(format: "the experts do not fit the workers' --max-expert-memory: %@ needs room on %d "
                    + "workers, %d have it (%.2f GB of experts to place in all); add workers or raise their limits",
                    "\(expert.key)", needed, roomy.count,
                    Double(total) / 1e9))
            }
            chosen[expert.key] = Array(targets)
            for target in targets {
                bytes[target]! += expert.bytes
                layerLoad.add(Double(load[expert.key] ?? 0) / Double(needed), to: target, layer: expert.key.layer)
            }
        }
        return Placement(replicas: chosen)
    }

    /// Tokens each worker computes per layer, when every replica of an expert takes an equal share.
    struct LayerLoad {
        private var tokens: [String: [Int: Double]] = [:]
        subscript(worker: String, layer: Int) -> Double { tokens[worker]?[layer] ?? 0 }
        mutating func add(_ share: Double, to worker: String, layer: Int) { tokens[worker, default: [:]][layer, default: 0] += share }

        init() {}
        init(_ placement: Placement, load: [ExpertKey: Int]) {
            for (key, holders) in placement.replicas where !holders.isEmpty {
                for holder in holders { add(Double(load[key] ?? 0) / Double(holders.count), to: holder, layer: key.layer) }
            }
        }
    }

    static func fits(_ bytes: Int, on worker: String, load: [String: Int], capacity: [String: Int]) -> Bool {
        guard let limit = capacity[worker], limit > 0 else { return true }
        return load[worker, default: 0] + bytes <= limit
    }

    /// The placement with `lost`'s experts moved to `survivors`, the hottest first (`load`, as in
    /// `balanced`): each to the one that does not hold it yet, has room, and has the least of that
    /// layer's load, then the fewest bytes (ties: name order), so every expert keeps as many
    /// replicas as it can. Experts no survivor can take just lose that replica.
    public func reassigning(_ lost: String, to survivors: [String], bytes: [ExpertKey: Int],
                            capacity: [String: Int] = [:], load: [ExpertKey: Int] = [:]) -> Placement {
        var held = Dictionary(uniqueKeysWithValues: survivors.map { name in
            (name, experts(of: name).reduce(0) { $0 + (bytes[$1] ?? 0) })
        })
        var layerLoad = LayerLoad(Placement(replicas: replicas.mapValues { $0.filter { $0 != lost } }), load: load)
        var moved = replicas
        let hottestFirst = experts(of: lost).sorted {
            (-(load[$0] ?? 0), $0.layer, $0.expert) < (-(load[$1] ?? 0), $1.layer, $1.expert)
        }
        for key in hottestFirst {
            var holders = moved[key]!.filter { $0 != lost }
            let candidates = survivors.filter {
                !holders.contains($0) && Self.fits(bytes[key] ?? 0, on: $0, load: held, capacity: capacity)
            }
            if let target = candidates.min(by: {
                (layerLoad[$0, key.layer], held[$0]!, $0) < (layerLoad[$1, key.layer], held[$1]!, $1)
            }) {
                // The expert's load is now shared by one more holder.
                let share = Double(load[key] ?? 0)
                for holder in holders { layerLoad.add(share / Double(holders.count + 1) - share / Double(holders.count), to: holder, layer: key.layer) }
                holders.append(target)
                layerLoad.add(share / Double(holders.count), to: target, layer: key.layer)
                held[target]! += bytes[key] ?? 0
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
