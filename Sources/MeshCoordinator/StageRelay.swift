import Foundation
import Logging
import MeshEngine
import MeshModels
import MeshTensors
import MeshTransport
import MeshWire

/// Stage 0's side of a pipeline of coordinators (`coordinator --stages N`): the socket the later
/// stages (`expertmesh stage`) connect to, served on a thread of its own. A micro-batch goes to
/// stage 1, from each stage straight on to the next as soon as it comes back (the relay never
/// waits for stage 0's engine thread, which meanwhile computes the next micro-batch), and from
/// the last back to the engine. A stage is given its layers at hello; a stage lost fails the
/// micro-batches in flight, and requests get 503 until it is back.
public final class StageRelay: LaterStages, @unchecked Sendable {
    public struct StageEntry: Sendable {
        public var name: String
        var routingId: Data
        public var address: String?
        public var ready = false
        /// Why it is gone, once it is.
        public var lost: String?
        var liveness: Liveness
        public var microBatches = 0
        public var busySeconds = 0.0
        public var startSeconds = 0.0
        public var workers = 0
    }

    /// One micro-batch on its way through the stages.
    private struct Flight {
        var ticket: Int
        var header: StageForwardHeader
        /// The stage it is at now.
        var stage: Int
        /// The cache epoch the engine saw when it sent it.
        var epoch: Int
        var hidden: WireTensor?
        /// When it was sent to the stage it is at (Unix seconds).
        var sentAt = 0.0
    }

    public let spec: ModelSpec
    public let stageLayers: [Range<Int>]
    public let kvCacheBlocks: Int
    public let microBatches: Int
    public let stepsInFlight: Int
    public let fingerprint: String
    public let heartbeatInterval: Double
    /// Seconds of silence after which an idle stage is lost.
    public var stageTimeout: Double = 3
    /// Seconds a stage may take to answer a micro-batch before it is lost (a stage computing sends
    /// no heartbeat; one whose process died is lost at once, when a send to it fails).
    public var computeTimeout: Double = 60
    /// Called on the engine thread while it waits for a micro-batch (the cluster's heartbeats).
    public var whileWaiting: (() -> Void)?
    private let logger: Logger
    private let context = ZMQContext()
    private let listener: ListeningRouter
    private var socket: ZMQSocket { listener.socket }
    private let wakeSender: ZMQSocket
    private let wakeReceiver: ZMQSocket
    private let lock = NSCondition()
    // Guarded by `lock`.
    private var outbox: [Flight] = []
    private var results: [Int: Result<Matrix, EngineError>] = [:]
    private var stages: [Int: StageEntry] = [:]
    private var epoch = 0
    private var stopping = false
    // The engine thread's own.
    private var nextTicket = 1
    private var epochSeen = 0
    // The relay thread's own.
    private var inFlight: [UInt64: Flight] = [:]
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)

    /// `security`: CURVE on the stages' port (the stages' public keys among the authorized keys).
    /// `stepsInFlight` default: one per stage; `microBatches` default: 1 (steps are not cut).
    public init(model: LoadedModel, stages count: Int, listen endpoint: String, kvCacheBlocks: Int,
                stepsInFlight: Int? = nil, microBatches: Int? = nil, heartbeatInterval: Double = 1,
                security: Cluster.Security? = nil, logger: Logger) throws {
        guard count >= 2 else { throw ModelError("a pipeline needs at least 2 stages (--stages \(count))") }
        spec = model.spec
        stageLayers = try model.spec.stageLayers(count)
        self.kvCacheBlocks = kvCacheBlocks
        self.microBatches = max(1, microBatches ?? 1)
        self.stepsInFlight = max(1, stepsInFlight ?? count)
        self.heartbeatInterval = heartbeatInterval
        self.logger = logger
        fingerprint = ModelFingerprint.of(model)
        listener = try ListeningRouter(context: context, endpoint: endpoint, security: security, logger: logger)
        let wake = "inproc://stage-relay-\(UUID().uuidString)"
        wakeReceiver = try ZMQSocket(context: context, kind: .pair)
        try wakeReceiver.bind(wake)
        wakeSender = try ZMQSocket(context: context, kind: .pair)
        try wakeSender.connect(wake)
        let thread = Thread { [self] in loop() }
        thread.name = "stage relay"
        self.thread = thread
        thread.start()
    }

    /// The bound endpoint (port 0 resolved).
    public var endpoint: String { socket.lastEndpoint }
    public var stageCount: Int { stageLayers.count }

    /// Stops the relay thread, telling the stages stage 0 is going.
    public func stop() {
        lock.withLock {
            stopping = true
            lock.broadcast()
        }
        if thread != nil { finished.wait() }
        thread = nil
    }

    // MARK: the engine thread's side (LaterStages)

    public var cacheEpoch: Int {
        epochSeen = lock.withLock { epoch }
        return epochSeen
    }

    public func dispatch(_ x: Matrix, batch: ForwardBatch) throws -> Int {
        if let reason = unavailableReason { throw EngineError(.unavailable, reason) }
        let ticket = nextTicket
        nextTicket += 1
        let flight = Flight(ticket: ticket, header: StageForwardHeader(requestId: UInt64(ticket), batch: batch), stage: 1,
                            epoch: epochSeen, hidden: WireTensor(name: "hidden", matrix: x, dtype: .f32))
        lock.withLock { outbox.append(flight) }
        try wakeSender.send([Data([1])])
        return ticket
    }

    public func collect(_ ticket: Int) throws -> Matrix {
        while true {
            let result: Result<Matrix, EngineError>? = lock.withLock {
                if results[ticket] == nil, !stopping { _ = lock.wait(until: Date().addingTimeInterval(0.1)) }
                // Older tickets nobody collects (their step failed) are dropped with this one.
                defer { results = results.filter { $0.key > ticket } }
                return results[ticket] ?? (stopping ? .failure(EngineError(.unavailable, "the coordinator is stopping")) : nil)
            }
            if let result { return try result.get() }
            whileWaiting?()
        }
    }

    // MARK: state for the engine and /health

    /// Nil when every later stage is connected and ready; otherwise why requests cannot run.
    public var unavailableReason: String? {
        let stages = lock.withLock { self.stages }
        for stage in 1..<stageCount {
            let layers = "layers \(stageLayers[stage].span)"
            guard let entry = stages[stage] else {
                return "pipeline stage \(stage) of \(stageCount) (\(layers)) is not connected: start `expertmesh stage "
                    + "--stage \(stage)/\(stageCount) --join \(endpoint) --model DIR` with its workers"
            }
            if let lost = entry.lost {
                return "pipeline stage \(stage) of \(stageCount) ('\(entry.name)', \(layers)) was lost (\(lost)); "
                    + "requests are refused until it reconnects"
            }
            if !entry.ready { return "pipeline stage \(stage) of \(stageCount) ('\(entry.name)') is loading \(layers)" }
        }
        return nil
    }

    /// Waits until every later stage is ready (start-up). `waiting` hears why not, on every turn.
    public func waitUntilReady(timeout: Double, progress: (String) -> Void, waiting: (String) throws -> Void) throws {
        let deadline = Date().addingTimeInterval(timeout)
        var said: String?
        while let reason = unavailableReason {
            if reason != said {
                progress(reason)
                said = reason
            }
            try waiting(reason)
            guard Date() < deadline else {
                throw ModelError("the pipeline was not complete within \(Int(timeout)) s: \(reason)")
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        progress("pipeline of \(stageCount) stages ready: " + stageLayers.enumerated().map { stage, layers in
            "stage \(stage) layers \(layers.span)"
        }.joined(separator: ", ") + "; \(stepsInFlight) steps in flight, \(microBatches) micro-batch(es) per step")
    }

    /// The stages for `/health` and `/v1/cluster`.
    public var statusObject: [String: Any] {
        let stages = lock.withLock { self.stages }
        let rows: [[String: Any]] = (0..<stageCount).map { stage in
            var row: [String: Any] = ["stage": stage, "layers": [stageLayers[stage].lowerBound, stageLayers[stage].upperBound]]
            if stage == 0 { row["name"] = "stage 0 (this coordinator)"; row["state"] = "serving"; return row }
            guard let entry = stages[stage] else { row["state"] = "not connected"; return row }
            row["name"] = entry.name
            row["address"] = entry.address ?? ""
            row["state"] = entry.lost.map { "lost: \($0)" } ?? (entry.ready ? "serving" : "loading")
            row["micro_batches"] = entry.microBatches
            row["busy_seconds"] = entry.busySeconds
            row["workers"] = entry.workers
            return row
        }
        return ["stages": rows, "steps_in_flight": stepsInFlight, "micro_batches_per_step": microBatches,
                "endpoint": endpoint]
    }

    // MARK: the relay thread

    private func loop() {
        defer {
            for (stage, entry) in lock.withLock({ stages }) where entry.lost == nil {
                _ = try? send(to: entry.routingId, WireMessage(.goodbye(reason: "stage 0 shutting down")))
                logger.debug("said goodbye to stage \(stage)")
            }
            finished.signal()
        }
        while !lock.withLock({ stopping }) {
            do {
                let readable = try ZMQPoller.readable([socket, wakeReceiver], timeoutMilliseconds: Int(heartbeatInterval * 250))
                if readable[1] {
                    while try wakeReceiver.receive(timeoutMilliseconds: 0) != nil {}
                    startFlights()
                }
                if readable[0] {
                    while let parts = try socket.receive(timeoutMilliseconds: 0) {
                        guard parts.count >= 2 else { continue }
                        handle(from: parts[0], Array(parts.dropFirst()), address: socket.lastPeerAddress)
                    }
                }
                keepAlive()
            } catch {
                logger.error("stage relay: \(error)")
                Thread.sleep(forTimeInterval: 0.01)
            }
        }
    }

    private func startFlights() {
        let flights = lock.withLock {
            defer { outbox = [] }
            return outbox
        }
        let current = lock.withLock { epoch }
        for flight in flights {
            if flight.epoch != current {
                finish(flight, .failure(EngineError(.unavailable, "a pipeline stage restarted while this step ran; "
                                                     + "its KV cache is gone")))
            } else if let reason = unavailableReason {
                finish(flight, .failure(EngineError(.unavailable, reason)))
            } else {
                send(flight)
            }
        }
    }

    /// Sends `flight` to the stage it is at; a stage that cannot be reached is lost.
    private func send(_ flight: Flight) {
        guard let entry = lock.withLock({ stages[flight.stage] }), entry.lost == nil, let hidden = flight.hidden else {
            return finish(flight, .failure(EngineError(.unavailable, unavailableReason ?? "pipeline stage \(flight.stage) is gone")))
        }
        var moving = flight
        moving.hidden = nil
        moving.sentAt = Date().timeIntervalSince1970
        inFlight[flight.header.requestId] = moving
        do {
            try send(to: entry.routingId, WireMessage(.stageForward(flight.header), tensors: [hidden]))
        } catch {
            lose(flight.stage, because: "unreachable: \(error)")
        }
    }

    private func handle(from routingId: Data, _ frames: [Data], address: String?) {
        let message: WireMessage
        do {
            message = try WireCodec.decode(frames)
        } catch {
            logger.warning("stage port: refused a malformed message from \(address ?? "?"): \(error)")
            _ = try? send(to: routingId, WireMessage(.error(WireFailure(code: .malformed, message: "\(error)"))))
            return
        }
        if case .stageHello(let hello) = message.body { return welcome(hello, from: routingId, address: address) }
        let now = Date().timeIntervalSince1970
        guard let stage = lock.withLock({ stages.first { $0.value.routingId == routingId && $0.value.lost == nil }?.key }) else {
            // A stranger, or a stage from before a restart: it must say hello first.
            _ = try? send(to: routingId, WireMessage(.error(WireFailure(code: .notReady, message: "say StageHello first"))))
            return
        }
        update(stage) { $0.liveness.heard(at: now) }
        switch message.body {
        case .stageReady(let ready):
            update(stage) {
                $0.ready = true
                $0.workers = Int(ready.workers)
                $0.startSeconds = ready.startSeconds
            }
            let layers = stageLayers[stage]
            let line = "pipeline stage \(stage) ready: layers \(layers.span), "
                + "\(ready.workers) workers, started in \(String(format: "%.1f", ready.startSeconds)) s"
            logger.notice("\(line)")
        case .stageReply(let reply):
            guard var flight = inFlight[reply.requestId], flight.stage == stage else { return }   // late or duplicate
            inFlight[reply.requestId] = nil
            update(stage) {
                $0.microBatches += 1
                $0.busySeconds += reply.computeSeconds
            }
            if let problem = problem(with: message.tensors, rows: flight.header.rowCount) {
                return finish(flight, .failure(EngineError(.internalError, "pipeline stage \(stage) returned \(problem)")))
            }
            flight.hidden = message.tensors[0]
            if stage + 1 < stageCount {
                flight.stage = stage + 1
                send(flight)
            } else {
                finish(flight, .success(message.tensors[0].matrix()))
            }
        case .error(let failure):
            logger.warning("pipeline stage \(stage) reported: \(failure.message)")
            if let flight = inFlight.removeValue(forKey: failure.requestId) {
                finish(flight, .failure(EngineError(.internalError, "pipeline stage \(stage): \(failure.message)")))
            }
        case .goodbye(let reason):
            lose(stage, because: "said goodbye: \(reason)")
        default:
            break
        }
    }

    /// Why a stage's reply cannot be used, or nil.
    private func problem(with tensors: [WireTensor], rows: Int) -> String? {
        guard tensors.count == 1, tensors[0].name == "hidden", tensors[0].dtype == .f32 else {
            return "a malformed reply: expected one f32 'hidden' frame, got \(tensors.map(\.name))"
        }
        guard tensors[0].shape == [rows, spec.hiddenSize] else {
            return "hidden states of shape \(tensors[0].shape), expected [\(rows), \(spec.hiddenSize)]"
        }
        return tensors[0].firstNonFinite.map { "a NaN or infinite hidden value (row \($0 / spec.hiddenSize))" }
    }

    private func welcome(_ hello: StageHello, from routingId: Data, address: String?) {
        func refuse(_ code: WireErrorCode, _ text: String) {
            logger.warning("refused a pipeline stage: \(text)")
            _ = try? send(to: routingId, WireMessage(.error(WireFailure(code: code, message: text))))
        }
        let stage = Int(hello.stage)
        guard hello.protocolVersion == wireProtocolVersion else {
            return refuse(.versionMismatch, "protocol version mismatch: stage '\(hello.name)' speaks \(hello.protocolVersion), "
                          + "stage 0 speaks \(wireProtocolVersion)")
        }
        guard hello.modelFingerprint == fingerprint else {
            return refuse(.modelMismatch, "model mismatch: stage '\(hello.name)' has \(hello.modelFingerprint), stage 0 has "
                          + "\(fingerprint); give every stage a copy of the same model")
        }
        guard Int(hello.stageCount) == stageCount, stage >= 1, stage < stageCount else {
            return refuse(.malformed, "stage '\(hello.name)' said it is stage \(hello.stage)/\(hello.stageCount), but this "
                          + "pipeline has \(stageCount) stages: start it as --stage K/\(stageCount) with 1 ≤ K < \(stageCount)")
        }
        let now = Date().timeIntervalSince1970
        if let existing = lock.withLock({ stages[stage] }), existing.routingId != routingId, existing.lost == nil,
           (try? send(to: existing.routingId, WireMessage(.heartbeat(sentUnixMilliseconds: UInt64(now * 1000))))) != nil {
            return refuse(.nameInUse, "stage \(stage) is already served by '\(existing.name)' (\(existing.address ?? "?")); "
                          + "stop it first or start this one as another stage")
        }
        if lock.withLock({ stages[stage] }) != nil { failFlights("pipeline stage \(stage) restarted") }
        let lives = max(2, Int((stageTimeout / heartbeatInterval).rounded(.up)))
        lock.withLock {
            stages[stage] = StageEntry(name: hello.name, routingId: routingId, address: address,
                                       liveness: Liveness(interval: heartbeatInterval, maxLives: lives, now: now))
            // Whatever this stage's cache held (if it ever served) is gone: the engine forgets it too.
            epoch += 1
        }
        let layers = stageLayers[stage]
        let line = "pipeline stage \(stage) '\(hello.name)' connected from \(address ?? "?"): it runs layers "
            + "\(layers.span) with \(kvCacheBlocks) KV cache blocks"
        logger.info("\(line)")
        do {
            try send(to: routingId, WireMessage(.stageAssignment(StageAssignment(
                layers: layers, kvCacheBlocks: kvCacheBlocks, heartbeatIntervalMilliseconds: UInt32(heartbeatInterval * 1000)))))
        } catch {
            lose(stage, because: "unreachable: \(error)")
        }
    }

    /// Heartbeats to every stage; an idle stage silent too long, or one a send cannot reach, is lost.
    private func keepAlive() {
        let now = Date().timeIntervalSince1970
        for (stage, entry) in lock.withLock({ stages }) where entry.lost == nil {
            let computing = inFlight.values.filter { $0.stage == stage }
            if let oldest = computing.map(\.sentAt).min(), now - oldest > computeTimeout {
                lose(stage, because: String(format: "no answer to a micro-batch for %.1f s", now - oldest))
                continue
            }
            var liveness = entry.liveness
            if computing.isEmpty {
                liveness.tick(at: now)
                if !liveness.isAlive {
                    lose(stage, because: String(format: "silent for %.1f s", liveness.silence(at: now)))
                    continue
                }
            }
            if liveness.shouldSendHeartbeat(at: now) {
                do {
                    try send(to: entry.routingId, WireMessage(.heartbeat(sentUnixMilliseconds: UInt64(now * 1000))))
                } catch {
                    lose(stage, because: "unreachable: \(error)")
                    continue
                }
            }
            update(stage) { $0.liveness = liveness }
        }
    }

    private func lose(_ stage: Int, because reason: String) {
        guard let entry = lock.withLock({ stages[stage] }), entry.lost == nil else { return }
        update(stage) {
            $0.lost = reason
            $0.ready = false
        }
        let line = "pipeline stage \(stage) ('\(entry.name)') lost: \(reason); its micro-batches in flight fail, and "
            + "requests are refused until it reconnects"
        logger.error("\(line)")
        failFlights("pipeline stage \(stage) ('\(entry.name)') was lost: \(reason)")
    }

    /// Fails every micro-batch in flight (each passes through every stage).
    private func failFlights(_ reason: String) {
        let flights = inFlight.values
        inFlight = [:]
        for flight in flights { finish(flight, .failure(EngineError(.unavailable, reason))) }
    }

    private func finish(_ flight: Flight, _ result: Result<Matrix, EngineError>) {
        lock.withLock {
            results[flight.ticket] = result
            lock.broadcast()
        }
    }

    private func update(_ stage: Int, _ change: (inout StageEntry) -> Void) {
        lock.withLock {
            if var entry = stages[stage] {
                change(&entry)
                stages[stage] = entry
            }
        }
    }

    private func send(to routingId: Data, _ message: WireMessage) throws {
        try socket.send([routingId] + WireCodec.encode(message))
    }
}
