import MeshModels
import MeshTensors
import MeshWire

/// The layout of one MoE layer's exchange (DeepEP's dispatch layout): for each worker that has
/// work, which tokens go to it (once each, even with several of their experts there) and with
/// which local experts and weights, already in the wire's CSR form.
public struct DispatchPlan: Sendable {
    public struct Destination: Sendable {
        public var worker: String
        /// Original token indices, ascending.
        public var tokens: [Int] = []
        /// Token i uses expertIds[offsets[i] ..< offsets[i+1]] with the same slice of weights.
        public var offsets: [UInt32] = [0]
        public var expertIds: [UInt32] = []
        public var weights: [Float] = []
    }

    public var destinations: [Destination]

    /// `usable` says which workers (by index into `placement.workers`) may get work: a lost one
    /// may not, and its experts go to their other replicas. `rotation` breaks ties between equally
    /// loaded replicas differently from one exchange to the next (the caller counts exchanges), so
    /// one token at a time does not always go to the same replica.
    public init(routes: [TokenRoute], layer: Int, placement: Placement, usable: (Int) -> Bool = { _ in true },
                rotation: Int = 0) throws {
        // expert → replica slots, from the placement's table (built once, not per layer).
        let replicas = placement.workerSlots(layer: layer)
        let usableSlot = placement.workers.indices.map(usable)
        var all = placement.workers.map { Destination(worker: $0) }
        for (token, route) in routes.enumerated() {
            for (expert, weight) in zip(route.experts, route.weights) {
                // A replica that already gets this token costs no extra row on the wire; otherwise
                // the least loaded one in this exchange (ties: the placement's order, rotated).
                var d = -1
                let choices = expert >= 0 && expert < replicas.count ? replicas[expert] : []
                for index in choices.indices {
                    let slot = choices[(index + rotation) % choices.count]
                    guard usableSlot[slot] else { continue }
                    if all[slot].tokens.last == token { d = slot; break }
                    if d < 0 || all[slot].tokens.count < all[d].tokens.count { d = slot }
                }
                guard d >= 0 else {
                    let key = ExpertKey(layer: layer, expert: expert)
                    let holders = expert >= 0 && expert < replicas.count ? replicas[expert].map { placement.workers[$0] } : []
                    throw ClusterError(holders.isEmpty ? "\(key) is not assigned to any worker"
                                       : "\(key) has no live replica: worker(s) \(holders.joined(separator: ", ")) holding it are lost",
                                       unserved: [key])
                }
                if all[d].tokens.last != token {
                    all[d].tokens.append(token)
                    all[d].offsets.append(all[d].offsets.last!)
                }
                all[d].expertIds.append(UInt32(expert))
                all[d].weights.append(weight)
                all[d].offsets[all[d].offsets.count - 1] += 1
            }
        }
        destinations = all.filter { !$0.tokens.isEmpty }
    }

    /// The request message for one destination: header + "activations" [n, H] in the wire dtype.
    public static func message(for destination: Destination, requestId: UInt64, layer: Int, input: Matrix,
                               placement: RoutingWeightPlacement, generated: [Bool], wireDType: DType) -> WireMessage {
        let header = ExpertRequestHeader(requestId: requestId, layer: UInt32(layer), tokenCount: UInt32(destination.tokens.count),
                                         hiddenSize: UInt32(input.columns), placement: placement,
                                         routeOffsets: destination.offsets, expertIds: destination.expertIds, weights: destination.weights,
                                         generatedTokens: destination.tokens.indices.filter { generated[destination.tokens[$0]] }.map(UInt32.init))
        // Gather the destination's token rows [n, H] and narrow them to the wire dtype in one pass.
        let activations = WireTensor(name: "activations", rows: destination.tokens.count, columns: input.columns, dtype: wireDType) {
            UnsafePointer(input.row(destination.tokens[$0]))
        }
        return WireMessage(.expertRequest(header), tensors: [activations])
    }
}
