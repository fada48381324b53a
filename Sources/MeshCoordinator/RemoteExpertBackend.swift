import MeshModels
import MeshTensors
import MeshWire

/// Routed experts on remote workers: `dispatch` sends one message per worker with tokens and
/// returns at once; `combine` waits for the replies and adds the partial sums in token order.
public final class RemoteExpertBackend: ExpertBackend {
    /// What `combine` needs to finish an exchange (DeepEP's handle).
    public struct Handle {
        var requests: [UInt64: DispatchPlan.Destination]
        var hidden: Int
    }

    /// What the last exchange moved and how long the busiest worker computed.
    public struct ExchangeStats: Sendable {
        public var requestBytes: [Int] = []
        public var replyBytes: [Int] = []
        public var maxWorkerComputeSeconds: Double = 0
    }

    let cluster: Cluster
    private var nextRequestId: UInt64 = 1
    public private(set) var lastExchange = ExchangeStats()

    public init(cluster: Cluster) { self.cluster = cluster }

    public func dispatch(_ request: ExpertRequest) throws -> Handle {
        let plan = try DispatchPlan(routes: request.routes, layer: request.layer, placement: cluster.placement)
        var handle = Handle(requests: [:], hidden: request.input.columns)
        var messages: [(worker: String, requestId: UInt64, message: WireMessage)] = []
        for destination in plan.destinations {
            let id = nextRequestId
            nextRequestId += 1
            handle.requests[id] = destination
            messages.append((destination.worker, id, DispatchPlan.message(
                for: destination, requestId: id, layer: request.layer, input: request.input,
                placement: request.placement, generated: request.generated, wireDType: cluster.wireDType)))
        }
        try cluster.send(messages)
        return handle
    }

    public func combine(_ handle: Handle, into output: Matrix) throws {
        let replies = try cluster.collect(handle.requests.mapValues(\.worker))
        var stats = ExchangeStats()
        // Add in request-id order so the sum is the same on every run.
        for id in handle.requests.keys.sorted() {
            let destination = handle.requests[id]!
            guard let reply = replies[id], reply.tensors.count == 1, reply.tensors[0].name == "partial",
                  reply.tensors[0].shape == [destination.tokens.count, handle.hidden] else {
                throw ClusterError("worker '\(destination.worker)' sent a malformed reply to request \(id): expected one 'partial' frame [\(destination.tokens.count), \(handle.hidden)]")
            }
            if case .expertReply(let header) = reply.body { stats.maxWorkerComputeSeconds = max(stats.maxWorkerComputeSeconds, header.computeSeconds) }
            stats.replyBytes.append(reply.tensors[0].bytes.count)
            stats.requestBytes.append(destination.tokens.count * handle.hidden * cluster.wireDType.byteSize)
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: handle.hidden)
            defer { scratch.deallocate() }
            for (row, token) in destination.tokens.enumerated() {
                reply.tensors[0].widenRow(row, into: scratch)
                axpy(1, scratch, output.row(token), handle.hidden)
            }
        }
        lastExchange = stats
    }
}
