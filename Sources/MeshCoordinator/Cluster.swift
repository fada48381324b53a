import CoreMetrics
import Foundation
import Logging
import MeshModels
import MeshTensors
import MeshTransport
import MeshWire

public struct ClusterError: Error, CustomStringConvertible, Sendable {
    public let description: String
    /// Experts the error is about that no live worker holds (a wait may cure it).
    public var unserved: [ExpertKey] = []
    public init(_ description: String, unserved: [ExpertKey] = []) {
        self.description = description
        self.unserved = unserved
    }
}

/// The coordinator's side of the mesh: the ROUTER socket, the worker table and the placement.
/// Confined to one thread (the engine thread): every call comes from it.
public final class Cluster {
    public struct WorkerEntry: Sendable {
        public var routingId: Data
        public var name: String
        public var ready = false
        /// Loading a new assignment after serving an earlier one: until it reports ready again it
        /// gets no work, but the experts it held are not lost (they are only delayed).
        public var reloading = false
        public var experts: [ExpertKey] = []
        public var residentBytes: UInt64 = 0
        /// Expert bytes (as the checkpoint stores them) it may hold; 0: no limit.
        public var capacityBytes: UInt64 = 0
        public var liveness: Liveness
        /// Why its results were discarded, if they were.
        public var faulty: String?
        /// Why its work last went to a replica for being slow, until it answers in time again.
        public var degraded: String?
        public var degradedAt: Double?
        /// The IP address its connection comes from.
        public var address: String?
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
    private let listener: ListeningRouter
    private var socket: ZMQSocket { listener.socket }
    private let context = ZMQContext()
    private let logger: Logger
    /// Requests sent and not yet answered: id → worker. A reply to any other id (late, after a
    /// failure, or duplicated) is dropped.
    private var pending: [UInt64: String] = [:]
    /// Replies that arrived for a pending request id (the exchange in progress collects them).
    private var replies: [UInt64: Result<WireMessage, ClusterError>] = [:]
    /// When each pending request was sent and its reply arrived (Unix seconds), for hedging.
    private var sentAt: [UInt64: Double] = [:]
    private var arrivedAt: [UInt64: Double] = [:]
    private var replyTime = ReplyTime()
    private var lastHeartbeat = Date().timeIntervalSince1970
    private var lastStatusRequest = Date().timeIntervalSince1970
    /// How often ready workers are asked for a status report (resident bytes for /health).
    static let statusInterval: Double = 10

    /// CURVE on the workers' port: the coordinator's key pair and the workers' public keys.
    public struct Security: Sendable {
        public var certificate: CurveCertificate
        public var authorizedKeys: AuthorizedKeys
        public init(certificate: CurveCertificate, authorizedKeys: AuthorizedKeys) {
            self.certificate = certificate
            self.authorizedKeys = authorizedKeys
        }
    }

    /// Each session's routing id → the name its worker said hello with.
    private var names: [Data: String] = [:]
    /// Seconds a lost worker may take to come back before its experts move to the surviving workers
    /// (nil: they never move; a worker of the same name, or a new one, must take its place).
    public var reassignAfter: Double? = 10
    /// Seconds a request waits for an expert no live worker holds before it fails.
    public var unservedTimeout: Double = 30
    /// Seconds of silence after which a worker is lost (whole heartbeat intervals, at least 2).
    public var workerTimeout: Double = 3
    /// Seconds `collect` polls for replies without sleeping before it sleeps (`--busy-poll`): a
    /// reply that lands meanwhile costs the engine thread no wake-up. Only with a core to spare.
    public var busyPoll: Double = 0
    private var livesPerWorker: Int { max(2, Int((workerTimeout / heartbeatInterval).rounded(.up))) }
    /// Since when some expert has had no live replica (nil: every expert has one).
    private var unservedSince: Double?
    /// Tokens routed to each expert since start, by the exchanges of this coordinator.
    public private(set) var expertLoad = ExpertLoad()
    /// `expertmesh_expert_routed_tokens_total{layer, expert}`, made when an expert first gets a token.
    private var routedTokenCounters: [ExpertKey: Counter] = [:]
    /// Each worker's requests, bytes and latencies (kept across its reconnections).
    private var stats: [String: WorkerStats] = [:]
    /// Workers that hold each expert, as asked at start.
    public private(set) var replicaCount = 1
    /// Counts changes of the worker table or placement (a worker joined, became ready, was lost…):
    /// views of the cluster rebuild at once when it moves.
    public private(set) var changes = 0
    /// Called (on the engine thread) after a pump that changed the worker table, also while a step
    /// waits for workers: status views stay current during an outage.
    public var onChange: ((Cluster) -> Void)?
    private var notifiedChanges = 0
    /// Tokens routed to each expert in earlier runs (`--expert-load`): the placement at start goes by it.
    public var earlierLoad: [Int: [Int]] = [:]
    /// When each worker of the placement was lost, until it is ready again or replaced.
    private var lostAt: [String: Double] = [:]
    private var expertBytes: [ExpertKey: Int] { Dictionary(uniqueKeysWithValues: expertSizes.map { ($0.key, $0.bytes) }) }
    /// The bytes of experts each worker said it may hold (0: no limit).
    private var capacities: [String: Int] { workers.mapValues { Int(clamping: $0.capacityBytes) } }

    /// `offloadedDense`: the slices of shared experts and dense FFN layers are placed too.
    /// `layers`: a pipeline stage places only the experts of the layers it runs.
    public init(model: LoadedModel, listen endpoint: String, wireDType: DType, replyDType: DType = .f32,
                heartbeatInterval: Double = 1.0, security: Security? = nil, offloadedDense: DenseSlices? = nil,
                layers: Range<Int>? = nil, logger: Logger) throws {
        spec = model.spec
        self.wireDType = wireDType
        self.replyDType = replyDType
        self.heartbeatInterval = heartbeatInterval
        self.logger = logger
        fingerprint = ModelFingerprint.of(model)
        let bytesPerIntermediate = 3 * model.spec.hiddenSize * model.dense.lmHead.dtype.byteSize
        let perExpert = (model.spec.layers.compactMap(\.moe).first?.intermediateSize ?? 0) * bytesPerIntermediate
        let sliceSizes = offloadedDense.map { slices in
            slices.keys(model.spec).map { ($0, (slices.range(of: $0, in: model.spec)?.count ?? 0) * bytesPerIntermediate) }
        }
        expertSizes = (model.allExpertKeys.map { ($0, perExpert) } + (sliceSizes ?? [])).filter {
            layers?.contains($0.0.layer) ?? true
        }
        listener = try ListeningRouter(context: context, endpoint: endpoint, security: security, logger: logger)
    }

    public var endpoint: String { socket.lastEndpoint }
    /// Whether any expert (or offloaded slice) is to be placed: a dense model, or a pipeline stage
    /// whose layers have none, needs no workers.
    public var hasExperts: Bool { !expertSizes.isEmpty }

    /// What a worker is doing now.
    public func state(of worker: WorkerEntry) -> WorkerState {
        if worker.faulty != nil { return .faulty }
        if !worker.liveness.isAlive { return .lost }
        if worker.ready { return worker.degraded == nil ? .ready : .degraded }
        return placement.workers.contains(worker.name) ? .loading : .connected
    }

    /// The cluster's part of `/v1/cluster` (schema in the README): a row per worker, the expert
    /// load per layer (last minute and since start) with each expert's workers. Also updates the
    /// workers' state metrics.
    public func statusObject(now: Double = Date().timeIntervalSince1970) -> [String: Any] {
        let bytes = expertBytes
        let rows: [[String: Any]] = workers.values.sorted { $0.name < $1.name }.map { worker in
            let state = state(of: worker)
            let workerStats = stats[worker.name] ?? WorkerStats(worker: worker.name)
            workerStats.publish(state: state, experts: worker.experts.count)
            var entry = workerStats.json
            entry["name"] = worker.name
            entry["address"] = worker.address ?? NSNull()
            entry["state"] = state.rawValue
            entry["ready"] = worker.ready
            entry["alive"] = worker.liveness.isAlive
            entry["experts"] = worker.experts.count
            entry["expert_bytes"] = worker.experts.reduce(0) { $0 + (bytes[$1] ?? 0) }
            entry["resident_bytes"] = worker.residentBytes
            entry["heartbeat_age_seconds"] = worker.liveness.silence(at: now)
            if let faulty = worker.faulty { entry["faulty"] = faulty }
            if let degraded = worker.degraded { entry["degraded"] = degraded }
            return entry
        }
        let recent = expertLoad.recent(now: now)
        let layers: [[String: Any]] = spec.layers.indices.compactMap { layer in
            guard let moe = spec.layers[layer].moe else { return nil }
            // Routed experts only (dense slices, counted too, are every token's).
            let pad = { (counts: [Int]?) -> [Int] in
                let values = counts ?? []
                return (0..<moe.expertCount).map { values.indices.contains($0) ? values[$0] : 0 }
            }
            let holders = (0..<moe.expertCount).map { placement.replicas[ExpertKey(layer: layer, expert: $0)] ?? [] }
            return ["layer": layer, "tokens": pad(recent[layer]), "total_tokens": pad(expertLoad.total[layer]), "workers": holders]
        }
        return ["workers": rows, "replicas": replicaCount, "model_fingerprint": fingerprint,
                "experts": ["window_seconds": ExpertLoad.windowSeconds, "layers": layers] as [String: Any]]
    }

    /// Tells every worker the coordinator is leaving (they reconnect with backoff).
    public func sayGoodbye(_ reason: String) {
        for worker in workers.values {
            _ = try? send(to: worker.routingId, WireMessage(.goodbye(reason: reason)))
        }
    }

    /// A line in the coordinator's log.
    public func note(_ message: String, _ metadata: Logger.Metadata = [:]) { logger.info("\(message)", metadata: metadata) }

    /// Why requests must fail now: some expert has had no live replica for `unservedTimeout`
    /// seconds. Before that they wait for it to find a home (nil).
    public func failureReason() -> String? {
        guard let reason = unservedReason else {
            unservedSince = nil
            return nil
        }
        let now = Date().timeIntervalSince1970
        if unservedSince == nil { unservedSince = now }
        return now - unservedSince! >= unservedTimeout ? reason : nil
    }

    /// Ready and heard from lately: it gets work.
    public func isServing(_ name: String) -> Bool {
        workers[name].map { $0.ready && $0.liveness.isAlive } ?? false
    }

    /// Nil when every expert has a ready, live replica; otherwise why not.
    public var unservedReason: String? {
        guard !expertSizes.isEmpty else { return nil }   // a dense model needs no workers
        if placement.replicas.isEmpty { return "waiting for workers: \(workers.count) connected, experts not assigned yet" }
        // Asked every engine turn: only when a worker is down are the experts themselves checked.
        let down = placement.workers.filter { !isServing($0) }
        guard !down.isEmpty else { return nil }
        // A survivor loading its share of a lost worker's experts keeps those it held: they are
        // not unserved, only delayed until it reports ready again.
        let reloading = placement.workers.compactMap { workers[$0] }.filter {
            $0.reloading && $0.faulty == nil && $0.liveness.isAlive
        }
        let unserved = placement.unserved(serving: Set(placement.workers.filter(isServing))).filter { key in
            !reloading.contains { $0.experts.contains(key) && placement.replicas[key]?.contains($0.name) == true }
        }
        guard !unserved.isEmpty else { return nil }
        return "experts unserved: worker(s) \(down.joined(separator: ", ")) not ready or not responding, and "
            + "\(unserved.count) experts have no other replica"
    }

    // MARK: load

    /// Counts the tokens routed to each expert by one exchange.
    public func record(layer: Int, routes: [TokenRoute]) {
        for (expert, count) in expertLoad.record(layer: layer, routes: routes) {
            let key = ExpertKey(layer: layer, expert: expert)
            if routedTokenCounters[key] == nil {
                routedTokenCounters[key] = Counter(label: "expertmesh_expert_routed_tokens_total",
                                                   dimensions: [("layer", String(layer)), ("expert", String(expert))])
            }
            routedTokenCounters[key]!.increment(by: count)
        }
    }

    /// What placing experts goes by: the load measured lately, else since start, else in earlier runs
    /// (empty when nothing was ever measured: then bytes alone).
    var loadForPlacement: [ExpertKey: Int] {
        let measured = expertLoad.forPlacement()
        let load = measured.values.contains { $0 > 0 } ? measured : ExpertLoad.byExpert(earlierLoad)
        return load.values.contains { $0 > 0 } ? load : [:]
    }

    /// Earlier runs' load plus this run's: what `--expert-load` keeps for the next start.
    public var loadToKeep: [Int: [Int]] {
        var kept = ExpertLoad(total: earlierLoad)
        kept.add(expertLoad.total)
        return kept.total
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
        placement = try Placement.balanced(experts: expertSizes, workers: Array(workers.keys), replicas: replicas,
                                           capacity: capacities, load: loadForPlacement)
        progress("placement" + (loadForPlacement.isEmpty ? " (by bytes)" : " (by the load measured in earlier runs, and bytes)")
                 + ":\n  " + placement.summary.joined(separator: "\n  "))
        for name in placement.workers { try assign(name) }
        while placement.workers.contains(where: { workers[$0]?.ready != true }) {
            try waiting(unservedReason ?? "loading experts")
            guard Date() < deadline else {
                let pending = placement.workers.filter { workers[$0]?.ready != true }
                throw ClusterError("worker(s) \(pending.joined(separator: ", ")) did not report ready within \(Int(timeout)) s")
            }
            try pump(timeoutMilliseconds: 200)
        }
        replicaCount = replicas
        progress("all \(placement.replicas.count) experts served by \(placement.workers.count) workers"
                 + (replicas > 1 ? ", each on \(replicas) of them" : ""))
    }

    private func assign(_ name: String) throws {
        guard let worker = workers[name] else { return }
        changes += 1
        workers[name]?.reloading = worker.ready
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
            sentAt[request.requestId] = Date().timeIntervalSince1970
            do {
                stats[request.worker]?.sent(bytes: try send(to: worker.routingId, request.message))
            } catch let error as TransportError where error.isUnreachablePeer {
                // `collect` reports the request lost, and its work goes to replicas.
                markLost(request.worker, reason: "unreachable")
            }
        }
    }

    /// When an outstanding request counts as late: once another reply of the same exchange has
    /// arrived, after `factor` × what the arrived replies took (the slowest, or the slowest per
    /// token times its own tokens, whichever is longer), and never before `floor` seconds.
    public struct Hedging: Sendable {
        public var factor: Double
        public var floor: Double
        public init(factor: Double = 8, floor: Double = 0.2) {
            self.factor = factor
            self.floor = floor
        }
    }

    /// Waits for the replies to `ids` (id → worker), until every one is answered or lost, or (with
    /// `hedging`) one of `hedgeable` is late. Requests whose worker is lost come back in `lost`
    /// (their work can go to replicas); late ones in `late`, still pending (`abandon` them to
    /// drop their replies). A worker's error reply throws.
    public func collect(_ ids: [UInt64: String], hedging: Hedging? = nil, hedgeable: Set<UInt64> = [],
                        tokens: [UInt64: Int] = [:], timeout: Double = 60) throws -> (replies: [UInt64: WireMessage], lost: [UInt64], late: [UInt64]) {
        var result: [UInt64: WireMessage] = [:]
        var lost: Set<UInt64> = []
        var late: [UInt64] = []
        defer { forget(Array(result.keys) + Array(lost)) }
        // Replies may have landed while this process computed (the other micro-batch, with
        // --overlap-exchanges): read them before anything counts as late.
        while try receiveOne(timeoutMilliseconds: 0) {}
        let deadline = Date().addingTimeInterval(timeout)
        while result.count + lost.count < ids.count {
            for (id, worker) in ids where result[id] == nil && !lost.contains(id) {
                if let reply = replies.removeValue(forKey: id) {
                    switch reply {
                    case .success(let message): result[id] = message
                    case .failure(let error): forget(Array(ids.keys)); throw error
                    }
                } else if workers[worker]?.ready != true {
                    lost.insert(id)
                }
            }
            if result.count + lost.count == ids.count { break }
            if let hedging {
                let now = Date().timeIntervalSince1970
                let took = ids.keys.compactMap { id in arrivedAt[id].flatMap { at in sentAt[id].map { (id, at - $0) } } }
                // With no reply of this exchange yet, recent exchanges say what a reply takes.
                if let slowest = took.map(\.1).max() ?? replyTime.seconds {
                    let perToken = took.map { $0.1 / Double(max(1, tokens[$0.0] ?? 1)) }.max() ?? replyTime.secondsPerToken
                    late = ids.keys.filter { id in
                        let limit = max(hedging.floor, hedging.factor * max(slowest, perToken * Double(tokens[id] ?? 1)))
                        return hedgeable.contains(id) && result[id] == nil && !lost.contains(id) && now - (sentAt[id] ?? now) > limit
                    }.sorted()
                    if !late.isEmpty { break }
                }
            }
            guard Date() < deadline else {
                forget(Array(ids.keys))
                throw ClusterError("no reply from worker(s) \(Set(ids.values).sorted().joined(separator: ", ")) within \(Int(timeout)) s")
            }
            Parallel.rest()
            if try !pollBusily() { try pump(timeoutMilliseconds: 10) }
        }
        return (result, lost.sorted(), late)
    }

    /// Polls for up to `busyPoll` seconds without sleeping; true once a message was handled.
    private func pollBusily() throws -> Bool {
        guard busyPoll > 0 else { return false }
        let until = Date().timeIntervalSince1970 + busyPoll
        repeat {
            if try receiveOne(timeoutMilliseconds: 0) { return true }
        } while Date().timeIntervalSince1970 < until
        return false
    }

    /// Handles one incoming message, waiting up to `timeoutMilliseconds`; false if none came.
    private func receiveOne(timeoutMilliseconds: Int) throws -> Bool {
        guard let parts = try socket.receive(timeoutMilliseconds: timeoutMilliseconds) else { return false }
        if parts.count >= 2 { handle(from: parts[0], Array(parts.dropFirst()), address: socket.lastPeerAddress) }
        return true
    }

    /// Drops requests the exchange no longer waits for: a reply to them is ignored.
    public func abandon(_ ids: [UInt64]) { forget(ids) }

    private func forget(_ ids: [UInt64]) {
        for id in ids {
            pending[id] = nil
            replies[id] = nil
            sentAt[id] = nil
            arrivedAt[id] = nil
        }
    }

    /// Marks a worker that was too slow to answer (its work went to a replica); cleared when it
    /// answers in time again. Meanwhile its replicas get the work, and after `probation` seconds it
    /// gets work again to show whether it is still slow.
    public func markDegraded(_ name: String, reason: String) {
        guard workers[name] != nil else { return }
        if workers[name]?.degraded == nil {
            changes += 1
            logger.warning("worker '\(name)' is degraded: \(reason); its work went to replicas", metadata: ["worker": "\(name)"])
        }
        workers[name]?.degraded = reason
        workers[name]?.degradedAt = Date().timeIntervalSince1970
    }

    static let probation = 5.0

    /// Degraded lately: its replicas get its work while they can.
    public func isOnProbation(_ name: String) -> Bool {
        guard let at = workers[name]?.degradedAt else { return false }
        return Date().timeIntervalSince1970 - at < Self.probation
    }

    public func markTimely(_ names: Set<String>) {
        for name in names where workers[name]?.degraded != nil {
            changes += 1
            workers[name]?.degraded = nil
            workers[name]?.degradedAt = nil
            logger.info("worker '\(name)' answers in time again", metadata: ["worker": "\(name)"])
        }
    }

    // MARK: control traffic

    /// Handles incoming messages for up to `timeoutMilliseconds`, and sends due heartbeats.
    public func pump(timeoutMilliseconds: Int) throws {
        var wait = timeoutMilliseconds
        while try receiveOne(timeoutMilliseconds: wait) { wait = 0 }
        let now = Date().timeIntervalSince1970
        for name in workers.keys {
            workers[name]?.liveness.tick(at: now)
            // Workers heartbeat even while computing (their compute runs on its own thread), so
            // silence means the worker or the network is gone.
            guard let worker = workers[name], worker.ready, !worker.liveness.isAlive else { continue }
            markLost(name, reason: String(format: "silent for %.1f s", worker.liveness.silence(at: now)))
        }
        try maintainPlacement(now: now)
        if changes != notifiedChanges {
            notifiedChanges = changes
            onChange?(self)
        }
        if now - lastStatusRequest >= Self.statusInterval {
            lastStatusRequest = now
            for worker in workers.values where worker.ready {
                _ = try? send(to: worker.routingId, WireMessage(.statusRequest))
            }
        }
        if now - lastHeartbeat >= heartbeatInterval {
            lastHeartbeat = now
            for worker in workers.values where worker.liveness.isAlive {
                _ = try? send(to: worker.routingId, WireMessage(.heartbeat(sentUnixMilliseconds: UInt64(now * 1000))))
            }
        }
    }

    /// Gives lost workers' experts a new home: a worker that joined since (not in the placement)
    /// takes over a lost one's whole share at once; after `reassignAfter` seconds the surviving
    /// workers share it out. Each affected worker is sent its new assignment.
    private func maintainPlacement(now: Double) throws {
        guard !placement.replicas.isEmpty, !lostAt.isEmpty else { return }
        for lost in lostAt.keys.sorted() {
            let newcomers = workers.values.filter { !placement.workers.contains($0.name) && $0.liveness.isAlive && $0.faulty == nil }
            if let newcomer = newcomers.map(\.name).sorted().first {
                placement = placement.replacing(lost, with: newcomer)
                lostAt[lost] = nil
                logger.notice("worker '\(newcomer)' takes over the \(placement.experts(of: newcomer).count) experts of lost worker '\(lost)'",
                              metadata: ["worker": "\(newcomer)", "replaces": "\(lost)"])
                try assign(newcomer)
            } else if let reassignAfter, let since = lostAt[lost], now - since >= reassignAfter {
                let survivors = placement.workers.filter { $0 != lost && isServing($0) }
                guard !survivors.isEmpty else { continue }
                let before = placement
                placement = placement.reassigning(lost, to: survivors, bytes: expertBytes, capacity: capacities,
                                                  load: loadForPlacement)
                lostAt[lost] = nil
                let changed = survivors.filter { before.experts(of: $0) != placement.experts(of: $0) }
                let line = String(format: "worker '%@' lost for %.0f s: its %d experts move to %@", lost, now - since,
                           before.experts(of: lost).count, changed.joined(separator: ", "))
                logger.notice("\(line)", metadata: ["worker": "\(lost)"])
                for name in changed { try assign(name) }
            }
        }
    }

    /// A worker whose results cannot be trusted: it gets no more work until it says hello again.
    public func markFaulty(_ name: String, reason: String) {
        guard workers[name]?.ready == true else { return }
        changes += 1
        workers[name]?.ready = false
        workers[name]?.faulty = reason
        if placement.workers.contains(name) { lostAt[name] = Date().timeIntervalSince1970 }
        logger.error("worker '\(name)' is faulty, its results discarded: \(reason)", metadata: ["worker": "\(name)"])
    }

    private func markLost(_ name: String, reason: String) {
        guard workers[name]?.ready == true else { return }
        changes += 1
        workers[name]?.ready = false
        if placement.workers.contains(name) { lostAt[name] = Date().timeIntervalSince1970 }
        logger.warning("worker '\(name)' lost: \(reason)", metadata: ["worker": "\(name)"])
    }

    private func handle(from routingId: Data, _ frames: [Data], address: String?) {
        let message: WireMessage
        do {
            message = try WireCodec.decode(frames)
        } catch {
            logger.warning("malformed message from '\(names[routingId] ?? "a peer that never said hello")': \(error)",
                           metadata: ["worker": "\(names[routingId] ?? "unknown")"])
            _ = try? send(to: routingId, WireMessage(.error(WireFailure(code: .malformed, message: "\(error)"))))
            return
        }
        let now = Date().timeIntervalSince1970
        if case .hello(let hello) = message.body { return welcome(hello, from: routingId, address: address, now: now) }
        // Only the session a worker's name belongs to is heard: not a stranger, not a replaced session.
        guard let name = names[routingId], workers[name]?.routingId == routingId else {
            _ = try? send(to: routingId, WireMessage(.error(WireFailure(code: .notReady, message: "say hello first"))))
            return
        }
        workers[name]?.liveness.heard(at: now)
        switch message.body {
        case .hello:
            break
        case .ready(let ready):
            guard workers[name] != nil else { return }
            changes += 1
            workers[name]?.ready = ready.experts == placement.experts(of: name)
            if workers[name]?.ready == true {
                lostAt[name] = nil
                workers[name]?.reloading = false
            }
            workers[name]?.experts = ready.experts
            workers[name]?.residentBytes = ready.residentBytes
            let line = String(format: "worker '%@' ready: %d experts, %.1f MB of expert weights, resident set %.1f MB",
                       name, ready.experts.count, Double(ready.expertBytes) / 1e6, Double(ready.residentBytes) / 1e6)
            logger.info("\(line)",
                        metadata: ["worker": "\(name)"])
        case .expertReply(let reply):
            if pending[reply.requestId] == name {
                replies[reply.requestId] = .success(message)
                arrivedAt[reply.requestId] = now
                if let sent = sentAt[reply.requestId] {
                    replyTime.add(seconds: now - sent, tokens: Int(reply.tokenCount))
                    stats[name]?.answered(bytes: frames.reduce(0) { $0 + $1.count }, roundTrip: now - sent,
                                          compute: reply.computeSeconds)
                }
            }
        case .error(let failure):
            logger.warning("worker '\(name)' reported: \(failure.message)", metadata: ["worker": "\(name)", "request": "\(failure.requestId)"])
            if pending[failure.requestId] == name { replies[failure.requestId] = .failure(ClusterError("worker '\(name)': \(failure.message)")) }
        case .goodbye(let reason):
            logger.notice("worker '\(name)' left: \(reason)", metadata: ["worker": "\(name)"])
            markLost(name, reason: "said goodbye")
            workers[name]?.liveness = Liveness(interval: heartbeatInterval, maxLives: 0, now: now)
        case .status(let status):
            workers[name]?.residentBytes = status.residentBytes
        case .heartbeat, .assignment, .expertRequest, .statusRequest, .stageHello, .stageAssignment, .stageReady,
             .stageForward, .stageReply:
            break
        }
    }

    /// A worker's hello: refused on a protocol or model mismatch, or when a live worker already has
    /// its name; otherwise the name is its session's, and it gets its experts if it has any.
    private func welcome(_ hello: Hello, from routingId: Data, address: String?, now: Double) {
        func refuse(_ code: WireErrorCode, _ text: String) {
            logger.warning("\(text)", metadata: ["worker": "\(hello.workerName)"])
            _ = try? send(to: routingId, WireMessage(.error(WireFailure(code: code, message: text))))
        }
        let name = hello.workerName
        guard hello.protocolVersion == wireProtocolVersion else {
            return refuse(.versionMismatch, "protocol version mismatch: worker '\(name)' speaks \(hello.protocolVersion), "
                          + "coordinator speaks \(wireProtocolVersion)")
        }
        guard hello.modelFingerprint == fingerprint else {
            return refuse(.modelMismatch, "model mismatch: worker '\(name)' has \(hello.modelFingerprint), coordinator has "
                          + "\(fingerprint); give the worker a copy of the same model")
        }
        guard !name.isEmpty else { return refuse(.malformed, "a worker said hello without a name") }
        // The other session is asked whether it is there (a process that died has no connection
        // left, and the send fails at once), so a restarted worker does not wait out the heartbeats.
        if let existing = workers[name], existing.routingId != routingId, existing.liveness.isAlive,
           (try? send(to: existing.routingId, WireMessage(.heartbeat(sentUnixMilliseconds: UInt64(now * 1000))))) != nil {
            return refuse(.nameInUse, "refused a second worker named '\(name)': a live worker already has that name; "
                          + "give this one another --name, or stop the other first")
        }
        if let previous = workers[name]?.routingId, previous != routingId { names[previous] = nil }
        names[routingId] = name
        let known = workers[name] != nil
        workers[name] = WorkerEntry(routingId: routingId, name: name, capacityBytes: hello.capacityBytes,
                                    liveness: Liveness(interval: heartbeatInterval, maxLives: livesPerWorker, now: now),
                                    address: address)
        if stats[name] == nil { stats[name] = WorkerStats(worker: name) }
        changes += 1
        logger.info("worker '\(name)' \(known ? "reconnected" : "connected")", metadata: ["worker": "\(name)", "address": "\(address ?? "?")"])
        if !placement.experts(of: name).isEmpty { try? assign(name) }
    }

    /// Returns the bytes sent.
    @discardableResult
    private func send(to routingId: Data, _ message: WireMessage) throws -> Int {
        let frames = WireCodec.encode(message)
        try socket.send([routingId] + frames)
        return frames.reduce(0) { $0 + $1.count }
    }
}

/// What replies take lately, over every worker: moving averages of a reply's seconds and of its
/// seconds per token (recent replies weigh most: the last ~20).
struct ReplyTime {
    private(set) var seconds: Double?
    private(set) var secondsPerToken: Double = 0

    mutating func add(seconds taken: Double, tokens: Int) {
        let perToken = taken / Double(max(1, tokens))
        guard let average = seconds else {
            (seconds, secondsPerToken) = (taken, perToken)
            return
        }
        let weight = 0.05
        seconds = average + weight * (taken - average)
        secondsPerToken += weight * (perToken - secondsPerToken)
    }
}
