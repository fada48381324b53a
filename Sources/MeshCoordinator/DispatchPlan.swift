import MeshModels
import MeshTensors
import MeshWire

/// The layout of one MoE layer's exchange (DeepEP's dispatch layout): for each worker that has
/// work, which tokens go to it (once each, even with several of their experts there) and with
/// which local experts and weights.
public struct DispatchPlan: Sendable {
    public struct Destination: Sendable {
        public var worker: String
        /// Original token indices, in order.
        public var tokens: [Int] = []
        /// Per token: experts on this worker and their weights.
        public var routes: [TokenRoute] = []
    }

    public var destinations: [Destination]

    public init(routes: [TokenRoute], layer: Int, placement: Placement) throws {
        var byWorker: [String: Destination] = [:]
        for (token, route) in routes.enumerated() {
            var local: [String: TokenRoute] = [:]
            for (expert, weight) in zip(route.experts, route.weights) {
                let key = ExpertKey(layer: layer, expert: expert)
                guard let worker = placement.owner[key] else { throw ClusterError("\(key) is not assigned to any worker") }
                local[worker, default: TokenRoute(experts: [], weights: [])].experts.append(expert)
                local[worker]!.weights.append(weight)
            }
            for (worker, route) in local {
                byWorker[worker, default: Destination(worker: worker)].tokens.append(token)
                byWorker[worker]!.routes.append(route)
            }
        }
        destinations = byWorker.values.sorted { $0.worker < $1.worker }
    }

    /// The request message for one destination: header + "activations" [n, H] in the wire dtype.
    public static func message(for destination: Destination, requestId: UInt64, layer: Int, input: Matrix,
                               placement: RoutingWeightPlacement, wireDType: DType) -> WireMessage {
        let n = destination.tokens.count
        let gathered = Matrix(rows: n, columns: input.columns)      // [n, H]
        for (row, token) in destination.tokens.enumerated() {
            gathered.row(row).update(from: input.row(token), count: input.columns)
        }
        var offsets: [UInt32] = [0]
        var ids: [UInt32] = []
        var weights: [Float] = []
        for route in destination.routes {
            ids += route.experts.map { UInt32($0) }
            weights += route.weights
            offsets.append(UInt32(ids.count))
        }
        let header = ExpertRequestHeader(requestId: requestId, layer: UInt32(layer), tokenCount: UInt32(n),
                                         hiddenSize: UInt32(input.columns), placement: placement,
                                         routeOffsets: offsets, expertIds: ids, weights: weights)
        return WireMessage(.expertRequest(header), tensors: [WireTensor(name: "activations", matrix: gathered, dtype: wireDType)])
    }
}
