import Foundation
import Logging
import MeshModels
import MeshTensors
import MeshWire
import CoreMetrics

/// Routed experts on remote workers: `dispatch` sends one message per worker with tokens and
/// returns at once; `combine` waits for the replies and adds the partial sums in token order.
/// Work whose worker is lost before it answers goes again to the experts' other replicas.
public final class RemoteExpertBackend: ExpertBackend {
    /// What `combine` needs to finish an exchange (DeepEP's handle), and to send work again.
    public struct Handle {
        var request: ExpertRequest
        var requests: [UInt64: DispatchPlan.Destination] = [:]
    }

    /// What the last exchange moved and how long the busiest worker computed.
    public struct ExchangeStats: Sendable {
        public var requestBytes: [Int] = []
        public var replyBytes: [Int] = []
        public var maxWorkerComputeSeconds: Double = 0
    }

    let cluster: Cluster
    private var nextRequestId: UInt64 = 1
    /// Exchanges planned so far: rotates the choice between equally loaded replicas.
    private var exchanges = 0
    public private(set) var lastExchange = ExchangeStats()
    /// Requests sent again to a replica because their worker was lost (since start).
    public private(set) var resentRequests = 0
    /// Requests sent to a replica because their worker was late (since start).
    public private(set) var hedgedRequests = 0
    /// When a request is late enough to send its work to a replica (nil: never).
    let hedging: Cluster.Hedging?
    /// Cut each step in two micro-batches that take turns, one computing while the other's
    /// routed work is in flight (`coordinator --overlap-exchanges`).
    public var microBatchOverlap = MicroBatchOverlap.off
    /// Exchanges sent while another was in flight (since start).
    private let overlappedCounter = Counter(label: "expertmesh_overlapped_exchanges_total")
    private var inFlight = 0

    public init(cluster: Cluster, hedging: Cluster.Hedging? = Cluster.Hedging()) {
        self.cluster = cluster
        self.hedging = hedging
    }

    public func dispatch(_ request: ExpertRequest) throws -> Handle {
        var handle = Handle(request: request)
        cluster.record(layer: request.layer, routes: request.routes)
        do {
            _ = try send(request.routes, into: &handle)
        } catch {
            cluster.abandon(Array(handle.requests.keys))   // the messages sent before the failure
            throw error
        }
        if inFlight > 0 { overlappedCounter.increment() }
        inFlight += 1
        return handle
    }

    public func abandon(_ handle: Handle) {
        inFlight -= 1
        cluster.abandon(Array(handle.requests.keys))
    }

    /// Plans `routes` over the serving replicas (but `avoiding`; and workers on probation for being
    /// slow while others can do the work), sends one message per worker, records them in `handle`;
    /// returns the new requests (id → worker).
    private func send(_ routes: [TokenRoute], into handle: inout Handle, avoiding: Set<String> = []) throws -> [UInt64: String] {
        let plan = try plan(routes, layer: handle.request.layer, avoiding: avoiding)
        var messages: [(worker: String, requestId: UInt64, message: WireMessage)] = []
        for destination in plan.destinations {
            let id = nextRequestId
            nextRequestId += 1
            handle.requests[id] = destination
            messages.append((destination.worker, id, DispatchPlan.message(
                for: destination, requestId: id, layer: handle.request.layer, input: handle.request.input,
                placement: handle.request.placement, generated: handle.request.generated, wireDType: cluster.wireDType)))
        }
        try cluster.send(messages)
        return Dictionary(uniqueKeysWithValues: messages.map { ($0.requestId, $0.worker) })
    }

    /// The exchange's layout over the serving replicas (but `avoiding`; workers on probation only
    /// if no one else can). An expert no live worker holds is waited for, while the cluster finds
    /// it a new home, up to `unservedTimeout`; then the request fails.
    private func plan(_ routes: [TokenRoute], layer: Int, avoiding: Set<String>) throws -> DispatchPlan {
        exchanges += 1
        let deadline = Date().addingTimeInterval(cluster.unservedTimeout)
        while true {
            let placement = cluster.placement
            let usable = placement.workers.map { !avoiding.contains($0) && cluster.isServing($0) }
            let preferred = placement.workers.indices.map { usable[$0] && !cluster.isOnProbation(placement.workers[$0]) }
            do {
                return try (try? DispatchPlan(routes: routes, layer: layer, placement: placement, usable: { preferred[$0] },
                                              rotation: exchanges))
                    ?? DispatchPlan(routes: routes, layer: layer, placement: placement, usable: { usable[$0] },
                                    rotation: exchanges)
            } catch let error as ClusterError where !error.unserved.isEmpty && avoiding.isEmpty && Date() < deadline {
                try cluster.pump(timeoutMilliseconds: 50)
            }
        }
    }

    /// The tokens, experts and weights of some requests, as routes to plan again.
    private func routes(of ids: [UInt64], in handle: Handle) -> [TokenRoute] {
        var routes = [TokenRoute](repeating: TokenRoute(experts: [], weights: []), count: handle.request.input.rows)
        for id in ids {
            let destination = handle.requests[id]!
            for (row, token) in destination.tokens.enumerated() {
                let share = Int(destination.offsets[row])..<Int(destination.offsets[row + 1])
                routes[token].experts += destination.expertIds[share].map(Int.init)
                routes[token].weights += destination.weights[share]
            }
        }
        return routes
    }

    public func combine(_ handle: Handle, into output: Matrix) throws {
        inFlight -= 1
        var handle = handle
        let replies: [UInt64: WireMessage]
        do {
            replies = try collectReplies(&handle)
        } catch {
            // Nothing of this exchange stays pending: a reply to it now is dropped.
            cluster.abandon(Array(handle.requests.keys))
            throw error
        }
        var stats = ExchangeStats()
        let hidden = handle.request.input.columns
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: hidden)
        defer { scratch.deallocate() }
        // Add in request-id order so the sum is the same on every run.
        for id in handle.requests.keys.sorted() {
            let destination = handle.requests[id]!
            let reply = replies[id]!
            if case .expertReply(let header) = reply.body { stats.maxWorkerComputeSeconds = max(stats.maxWorkerComputeSeconds, header.computeSeconds) }
            stats.replyBytes.append(reply.tensors[0].bytes.count)
            stats.requestBytes.append(destination.tokens.count * hidden * cluster.wireDType.byteSize)
            for (row, token) in destination.tokens.enumerated() {
                reply.tensors[0].widenRow(row, into: scratch)
                axpy(1, scratch, output.row(token), hidden)
            }
        }
        lastExchange = stats
    }

    /// Waits for every reply of `handle`'s requests; work of lost, faulty or late workers goes to
    /// replicas (recorded in `handle`). Returns the replies by request id.
    private func collectReplies(_ handle: inout Handle) throws -> [UInt64: WireMessage] {
        var replies: [UInt64: WireMessage] = [:]
        var waiting = handle.requests.mapValues(\.worker)
        // Requests that may still be hedged: each piece of work moves for being late at most once.
        var hedgeable = Set(waiting.keys)
        while !waiting.isEmpty {
            var (answered, lost, late) = try cluster.collect(waiting, hedging: hedging, hedgeable: hedgeable,
                                                             tokens: handle.requests.mapValues(\.tokens.count))
            // A reply of the wrong shape or with NaN or infinite values is never added: its worker
            // is marked faulty and its work handled as a lost worker's.
            for (id, reply) in answered {
                if let problem = Self.problem(with: reply, for: handle.requests[id]!, hidden: handle.request.input.columns) {
                    cluster.markFaulty(handle.requests[id]!.worker, reason: "request \(id): \(problem)")
                    answered[id] = nil
                    lost.append(id)
                }
            }
            replies.merge(answered) { first, _ in first }
            cluster.markTimely(Set(answered.keys.filter { hedgeable.contains($0) }.map { handle.requests[$0]!.worker }))
            for id in answered.keys { waiting[id] = nil }
            if !lost.isEmpty {
                // The lost workers' share (the same tokens, experts and weights) goes to other replicas.
                for id in lost {
                    cluster.note("layer \(handle.request.layer): worker '\(handle.requests[id]!.worker)' was lost with request "
                                 + "\(id) (\(handle.requests[id]!.tokens.count) tokens); sending its work to replicas",
                                 ["worker": "\(handle.requests[id]!.worker)", "layer": "\(handle.request.layer)", "request": "\(id)"])
                    waiting[id] = nil
                }
                let again = routes(of: lost, in: handle)
                lost.forEach { handle.requests[$0] = nil }
                resentRequests += lost.count
                let sent = try send(again, into: &handle)
                waiting.merge(sent) { first, _ in first }
                hedgeable.formUnion(sent.keys)
            }
            if !late.isEmpty {
                // Late work goes to other replicas if it can; if none is free it keeps waiting.
                let slow = Set(late.map { handle.requests[$0]!.worker })
                hedgeable.subtract(late)
                if let sent = try? send(routes(of: late, in: handle), into: &handle, avoiding: slow) {
                    for id in late {
                        cluster.markDegraded(handle.requests[id]!.worker, reason: "request \(id) of layer \(handle.request.layer) late")
                        handle.requests[id] = nil
                        waiting[id] = nil
                    }
                    cluster.abandon(late)
                    hedgedRequests += late.count
                    waiting.merge(sent) { first, _ in first }
                }
            }
        }
        return replies
    }

    /// Why a reply cannot be combined, or nil when it can.
    static func problem(with reply: WireMessage, for destination: DispatchPlan.Destination, hidden: Int) -> String? {
        guard reply.tensors.count == 1, reply.tensors[0].name == "partial" else {
            return "malformed reply: expected one 'partial' frame, got \(reply.tensors.map(\.name))"
        }
        guard reply.tensors[0].shape == [destination.tokens.count, hidden] else {
            return "reply of shape \(reply.tensors[0].shape), expected [\(destination.tokens.count), \(hidden)]"
        }
        if let index = reply.tensors[0].firstNonFinite {
            return "NaN or infinite value in its reply (row \(index / hidden), column \(index % hidden))"
        }
        return nil
    }
}
