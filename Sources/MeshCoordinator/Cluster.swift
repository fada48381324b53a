import Foundation
import MeshModels
import MeshTensors
import MeshTransport
import MeshWire

public struct ClusterError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The coordinator's side of the mesh: the ROUTER socket, the worker table and the placement.
/// Confined to one thread (the engine thread): every call comes from it.
public final class Cluster {
    public struct WorkerEntry: Sendable {
        public var routingId: Data
        public var name: String
        public var ready = false
        public var experts: [ExpertKey] = []
        public var residentBytes: UInt64 = 0
        public var liveness: Liveness
        /// Why its results were discarded, if they were.
        public var faulty: String?
    }

    public let spec: ModelSpec
    /// Activations go to workers in `wireDType`; partial sums come back in `replyDType`.
    public let wireDType: DType
    public let replyDType: DType
    public let fingerprint: String
    public let heartbeatInterval: Double
    public private(set) var workers: [String: WorkerEntry] = [:]
    public private(set) var placement = Placement(owner: [:])
    private let expertSizes: [(key: ExpertKey, bytes: Int)]
    private let socket: ZMQSocket
    private let context = ZMQContext()
    private let log: (String) -> Void
    /// Requests sent and not yet answered: id → worker. A reply to any other id (late, after a
    /// failure, or duplicated) is dropped.
    private var pending: [UInt64: String] = [:]
    /// Replies that arrived for a pending request id (the exchange in progress collects them).
    private var replies: [UInt64: Result<WireMessage, ClusterError>] = [:]
    private var lastHeartbeat = Date().timeIntervalSince1970
    private var lastStatusRequest = Date().timeIntervalSince1970
    /// How often ready workers are asked for a status report (resident bytes for /health).
    static let statusInterval: Double = 10

    public init(model: LoadedModel, listen endpoint: String, wireDType: DType, replyDType: DType = .f32,
                heartbeatInterval: Double = 1.0, log: @escaping (String) -> Void) throws {
        spec = model.spec
        self.wireDType = wireDType
        self.replyDType = replyDType
        self.heartbeatInterval = heartbeatInterval
        self.log = log
        fingerprint = ModelFingerprint.of(model)
        let perExpert = model.spec.layers.compactMap(\.moe).first.map { 3 * $0.intermediateSize * model.spec.hiddenSize * model.dense.lmHead.dtype.byteSize } ?? 0
        expertSizes = model.allExpertKeys.map { ($0, perExpert) }
        socket = try ZMQSocket(context: context, kind: .router)
        try socket.setRouterMandatory()
        try socket.setMaxMessageSize(WireCodec.maxMessageBytes)
        try socket.bind(endpoint)
    }

    public var endpoint: String { socket.lastEndpoint }

    /// One entry per known worker, for the health endpoint.
    public var workerSummary: [[String: Any]] {
        workers.values.sorted { $0.name < $1.name }.map { worker in
            var entry: [String: Any] = ["name": worker.name, "ready": worker.ready, "alive": worker.liveness.isAlive,
                                        "experts": worker.experts.count, "resident_bytes": worker.residentBytes]
            if let faulty = worker.faulty { entry["faulty"] = faulty }
            return entry
        }
    }

    /// Tells every worker the coordinator is leaving (they reconnect with backoff).
    public func sayGoodbye(_ reason: String) {
        for worker in workers.values {
            try? send(to: worker.routingId, WireMessage(.goodbye(reason: reason)))
        }
    }

    /// A line in the coordinator's log.
    public func note(_ message: String) { log(message) }

    /// Ready and heard from lately: it gets work.
    public func isServing(_ name: String) -> Bool {
        workers[name].map { $0.ready && $0.liveness.isAlive } ?? false
    }

    /// Nil when every expert has a ready, live replica; otherwise why not.
    public var unservedReason: String? {
        if placement.replicas.isEmpty { return "waiting for workers: \(workers.count) connected, experts not assigned yet" }
        let unserved = placement.unserved(serving: Set(placement.workers.filter(isServing)))
        guard !unserved.isEmpty else { return nil }
        let down = placement.workers.filter { !isServing($0) }
        return "experts unserved: worker(s) \(down.joined(separator: ", ")) not ready or not responding, and "
            + "\(unserved.count) experts have no other replica"
    }

    // MARK: start-up

    /// Waits until `minimum` workers said hello, assigns every expert, and waits for them to be ready.
    /// `waiting` is told why the cluster cannot serve yet, on every turn of the wait.
    public func start(minimumWorkers minimum: Int, replicas: Int = 1, timeout: Double, progress: (String) -> Void,
                      waiting: (String) throws -> Void = { _ in }) throws {
        let deadline = Date().addingTimeInterval(timeout)
        var lastCount = -1
        while workers.count < minimum {
            if workers.count != lastCount {
                progress("waiting for workers: \(workers.count)/\(minimum) connected")
                lastCount = workers.count
            }
            try waiting("waiting for workers: \(workers.count)/\(minimum) connected")
            guard Date() < deadline else { throw ClusterError("only \(workers.count) of \(minimum) workers connected within \(Int(timeout)) s; start more workers with `expertmesh worker --coordinator \(endpoint) --model DIR`") }
            try pump(timeoutMilliseconds: 200)
        }
        placement = Placement.balanced(experts: expertSizes, workers: Array(workers.keys), replicas: replicas)
        progress("placement:\n  " + placement.summary.joined(separator: "\n  "))
        for name in placement.workers { try assign(name) }
        while placement.workers.contains(where: { workers[$0]?.ready != true }) {
            try waiting(unservedReason ?? "loading experts")
            guard Date() < deadline else {
                let pending = placement.workers.filter { workers[$0]?.ready != true }
                throw ClusterError("worker(s) \(pending.joined(separator: ", ")) did not report ready within \(Int(timeout)) s")
            }
            try pump(timeoutMilliseconds: 200)
        }
        progress("all \(placement.replicas.count) experts served by \(placement.workers.count) workers"
                 + (replicas > 1 ? ", each on \(replicas) of them" : ""))
    }

    private func assign(_ name: String) throws {
        guard let worker = workers[name] else { return }
        workers[name]?.ready = false
        var assignment = Assignment(experts: placement.experts(of: name), replyDType: replyDType, modelFingerprint: fingerprint,
                                    heartbeatIntervalMilliseconds: UInt32(heartbeatInterval * 1000))
        assignment.generatedTokensOnTiles = MatmulKernels.decodeKernels == .tiles
        try send(to: worker.routingId, WireMessage(.assignment(assignment)))
    }

    // MARK: exchange

    /// Sends one message per worker, then waits for every reply (control traffic is handled meanwhile).
    /// Returns the replies by request id.
    public func send(_ requests: [(worker: String, requestId: UInt64, message: WireMessage)]) throws {
        for request in requests {
            guard let worker = workers[request.worker], worker.ready else {
                throw ClusterError("worker '\(request.worker)' is not ready; \(unservedReason ?? "")")
            }
            pending[request.requestId] = request.worker
            do {
                try send(to: worker.routingId, request.message)
            } catch let error as TransportError where error.isUnreachablePeer {
                // `collect` reports the request lost, and its work goes to replicas.
                markLost(request.worker, reason: "unreachable")
            }
        }
    }

    /// Waits for the replies to `ids` (id → worker). Requests whose worker is lost meanwhile come
    /// back in `lost` (their work can go to replicas); a worker's error reply throws.
    public func collect(_ ids: [UInt64: String], timeout: Double = 60) throws -> (replies: [UInt64: WireMessage], lost: [UInt64]) {
        defer {
            for id in ids.keys { pending[id] = nil; replies[id] = nil }
        }
        let deadline = Date().addingTimeInterval(timeout)
        var result: [UInt64: WireMessage] = [:]
        var lost: Set<UInt64> = []
        while result.count + lost.count < ids.count {
            for (id, worker) in ids where result[id] == nil && !lost.contains(id) {
                if let reply = replies.removeValue(forKey: id) {
                    switch reply {
                    case .success(let message): result[id] = message
                    case .failure(let error): throw error
                    }
                } else if workers[worker]?.ready != true {
                    lost.insert(id)
                }
            }
            if result.count + lost.count == ids.count { break }
            guard Date() < deadline else { throw ClusterError("no reply from worker(s) \(Set(ids.values).sorted().joined(separator: ", ")) within \(Int(timeout)) s") }
            try pump(timeoutMilliseconds: 50)
        }
        return (result, lost.sorted())
    }

    // MARK: control traffic

    /// Handles incoming messages for up to `timeoutMilliseconds`, and sends due heartbeats.
    public func pump(timeoutMilliseconds: Int) throws {
        var wait = timeoutMilliseconds
        while let parts = try socket.receive(timeoutMilliseconds: wait) {
            wait = 0
            guard parts.count >= 2 else { continue }
            handle(from: parts[0], Array(parts.dropFirst()))
        }
        let now = Date().timeIntervalSince1970
        for name in workers.keys {
            workers[name]?.liveness.tick(at: now)
            // Workers heartbeat even while computing (their compute runs on its own thread), so
            // silence means the worker or the network is gone.
            guard let worker = workers[name], worker.ready, !worker.liveness.isAlive else { continue }
            markLost(name, reason: String(format: "silent for %.1f s", worker.liveness.silence(at: now)))
        }
        if now - lastStatusRequest >= Self.statusInterval {
            lastStatusRequest = now
            for worker in workers.values where worker.ready {
                try? send(to: worker.routingId, WireMessage(.statusRequest))
            }
        }
        if now - lastHeartbeat >= heartbeatInterval {
            lastHeartbeat = now
            for worker in workers.values where worker.liveness.isAlive {
                try? send(to: worker.routingId, WireMessage(.heartbeat(sentUnixMilliseconds: UInt64(now * 1000))))
            }
        }
    }

    /// A worker whose results cannot be trusted: it gets no more work until it says hello again.
    public func markFaulty(_ name: String, reason: String) {
        guard workers[name]?.ready == true else { return }
        workers[name]?.ready = false
        workers[name]?.faulty = reason
        log("worker '\(name)' is faulty, its results discarded: \(reason)")
    }

    private func markLost(_ name: String, reason: String) {
        guard workers[name]?.ready == true else { return }
        workers[name]?.ready = false
        log("worker '\(name)' lost: \(reason)")
    }

    private func handle(from routingId: Data, _ frames: [Data]) {
        let name = String(decoding: routingId, as: UTF8.self)
        let message: WireMessage
        do {
            message = try WireCodec.decode(frames)
        } catch {
            log("malformed message from '\(name)': \(error)")
            try? send(to: routingId, WireMessage(.error(WireFailure(code: .malformed, message: "\(error)"))))
            return
        }
        let now = Date().timeIntervalSince1970
        workers[name]?.liveness.heard(at: now)
        switch message.body {
        case .hello(let hello):
            guard hello.protocolVersion == wireProtocolVersion else {
                let text = "protocol version mismatch: worker '\(hello.workerName)' speaks \(hello.protocolVersion), coordinator speaks \(wireProtocolVersion)"
                log(text)
                try? send(to: routingId, WireMessage(.error(WireFailure(code: .versionMismatch, message: text))))
                return
            }
            guard hello.modelFingerprint == fingerprint else {
                let text = "model mismatch: worker '\(hello.workerName)' has \(hello.modelFingerprint), coordinator has \(fingerprint); give the worker a copy of the same model"
                log(text)
                try? send(to: routingId, WireMessage(.error(WireFailure(code: .modelMismatch, message: text))))
                return
            }
            let known = workers[name] != nil
            workers[name] = WorkerEntry(routingId: routingId, name: name, liveness: Liveness(interval: heartbeatInterval, now: now))
            log("worker '\(name)' \(known ? "reconnected" : "connected")")
            if !placement.experts(of: name).isEmpty { try? assign(name) }
        case .ready(let ready):
            guard workers[name] != nil else { return }
            workers[name]?.ready = ready.experts == placement.experts(of: name)
            workers[name]?.experts = ready.experts
            workers[name]?.residentBytes = ready.residentBytes
            log(String(format: "worker '%@' ready: %d experts, %.1f MB of expert weights, resident set %.1f MB",
                       name, ready.experts.count, Double(ready.expertBytes) / 1e6, Double(ready.residentBytes) / 1e6))
        case .expertReply(let reply):
            if pending[reply.requestId] == name { replies[reply.requestId] = .success(message) }
        case .error(let failure):
            log("worker '\(name)' reported: \(failure.message)")
            if pending[failure.requestId] == name { replies[failure.requestId] = .failure(ClusterError("worker '\(name)': \(failure.message)")) }
        case .goodbye(let reason):
            log("worker '\(name)' left: \(reason)")
            markLost(name, reason: "said goodbye")
            workers[name]?.liveness = Liveness(interval: heartbeatInterval, maxLives: 0, now: now)
        case .status(let status):
            workers[name]?.residentBytes = status.residentBytes
        case .heartbeat, .assignment, .expertRequest, .statusRequest:
            break
        }
    }

    private func send(to routingId: Data, _ message: WireMessage) throws {
        try socket.send([routingId] + WireCodec.encode(message))
    }
}
