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

    public init(routes: [TokenRoute], layer: Int, placement: Placement) throws {
        // expert → destination slot, from the placement's table (built once, not per layer).
        let owner = placement.workerSlots(layer: layer)
        var all = placement.workers.map { Destination(worker: $0) }
        for (token, route) in routes.enumerated() {
            for (expert, weight) in zip(route.experts, route.weights) {
                let d = expert >= 0 && expert < owner.count ? owner[expert] : -1
                guard d >= 0 else {
                    throw ClusterError("\(ExpertKey(layer: layer, expert: expert)) is not assigned to any worker")
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
