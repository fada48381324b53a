import Foundation
import Logging
import MeshEngine
import MeshModels

/// What the HTTP side needs from whoever runs the engine: hand it a request, read its status.
public protocol GenerationService: AnyObject, Sendable {
    /// Queues a request; `events` is called on the engine thread. Throws `EngineError` at once
    /// for a bad request or a full queue (nothing is queued then).
    func submit(_ request: GenerationRequest, isCancelled: @escaping @Sendable () -> Bool,
                events: @escaping @Sendable (SequenceEvent) -> Void) throws
    /// The engine's counters and, when it cannot serve, why.
    var status: (stats: EngineStats, unservedReason: String?) { get }
    /// Prompt and generated tokens per second lately.
    var tokensPerSecond: (prompt: Double, generated: Double) { get }
}

/// Runs an `InferenceEngine` on one dedicated thread (the caller of `run`): takes requests
/// from HTTP threads through a locked inbox, steps the engine while it has work, and between
/// steps lets the owner do its housekeeping (the coordinator's ZeroMQ traffic).
public final class EngineRunner<Backend: ExpertBackend>: GenerationService, @unchecked Sendable {
    private struct Submission {
        var request: GenerationRequest
        var isCancelled: @Sendable () -> Bool
        var events: @Sendable (SequenceEvent) -> Void
    }

    private let engine: InferenceEngine<Backend>
    private let logger: Logger
    private let lock = NSLock()
    private let wake = DispatchSemaphore(value: 0)
    private var inbox: [Submission] = []
    private var published = EngineStats()
    private var publishedReason: String? = "starting"
    private var publishedRates: (prompt: Double, generated: Double) = (0, 0)
    /// Engine thread only.
    private var meters = EngineMeters()
    private var draining = false
    private var throughput = ThroughputWindow()
    /// How often a busy engine logs its pool use.
    static var logInterval: Double { 10 }

    public init(engine: InferenceEngine<Backend>, logger: Logger) {
        self.engine = engine
        self.logger = logger
        published = engine.stats
    }

    public func submit(_ request: GenerationRequest, isCancelled: @escaping @Sendable () -> Bool,
                       events: @escaping @Sendable (SequenceEvent) -> Void) throws {
        try engine.validate(request)
        lock.lock()
        defer { lock.unlock() }
        if let reason = publishedReason { throw EngineError(.unavailable, "not serving: \(reason)") }
        guard inbox.count + published.waiting < engine.configuration.maxWaiting else {
            throw EngineError(.busy, "the server is busy: \(engine.configuration.maxWaiting) requests are already "
                              + "waiting; retry shortly")
        }
        inbox.append(Submission(request: request, isCancelled: isCancelled, events: events))
        wake.signal()
    }

    public var status: (stats: EngineStats, unservedReason: String?) {
        lock.lock()
        defer { lock.unlock() }
        return (published, publishedReason)
    }

    /// Prompt and generated tokens per second over the last 10 s.
    public var tokensPerSecond: (prompt: Double, generated: Double) {
        lock.lock()
        defer { lock.unlock() }
        return publishedRates
    }

    /// The engine loop, on the calling thread, until the HTTP front end has stopped.
    /// `unservedReason` says why the engine cannot serve now (nil: it can; `/health` says it);
    /// `failureReason` why requests must fail now rather than wait (by default the same);
    /// `betweenSteps` runs after every step and idle turn. Once shutdown
    /// begins, new requests are refused and running ones finish, or fail after the drain timeout.
    public func run(until frontEnd: HTTPFrontEnd, unservedReason: () -> String? = { nil },
                    failureReason: (() -> String?)? = nil, betweenSteps: () throws -> Void = {}) throws {
        var lastLog = ContinuousClock.now
        var drainStart: ContinuousClock.Instant?
        while !frontEnd.isStopped {
            let clusterReason = failureReason.map { $0() } ?? unservedReason()
            if drainStart == nil, frontEnd.drainRequested {
                drainStart = .now
                draining = true
                let message = "shutting down: finishing \(engine.stats.running + engine.stats.waiting) request(s), "
                    + "at most \(Int(frontEnd.drainTimeout)) s"
                logger.notice("\(message)")
            }
            lock.lock()
            let arrived = inbox
            inbox = []
            lock.unlock()
            for submission in arrived {
                if let clusterReason {
                    submission.events(.failed(EngineError(.unavailable, "not serving: \(clusterReason)")))
                    continue
                }
                do {
                    try engine.add(submission.request, isCancelled: submission.isCancelled, emit: submission.events)
                } catch {
                    submission.events(.failed(error as? EngineError ?? EngineError(.internalError, "\(error)")))
                }
            }
            if let clusterReason, engine.hasWork {
                engine.failAll(EngineError(.unavailable, "not serving: \(clusterReason)"))
            }
            if let drainStart, engine.hasWork, (ContinuousClock.now - drainStart).seconds > frontEnd.drainTimeout {
                engine.failAll(EngineError(.unavailable, "the server shut down before this request finished"))
            }
            if engine.hasWork {
                do {
                    try engine.step()
                } catch {
                    logger.error("step failed, its requests were failed: \(error)")
                }
            } else {
                if drainStart != nil { frontEnd.drained() }
                _ = wake.wait(timeout: .now() + 0.05)
            }
            try betweenSteps()
            // Asked again: a step can take long, and the cluster may have changed meanwhile.
            // Requests taken before shutdown began are finished; `submit` refuses new ones.
            publish(drainStart != nil ? "the server is shutting down" : unservedReason())
            if engine.hasWork, (ContinuousClock.now - lastLog).seconds >= Self.logInterval {
                lastLog = ContinuousClock.now
                logger.info("\(Self.describe(engine.stats))")
            }
        }
        publish("shutting down")
        lock.lock()
        let left = inbox
        inbox = []
        lock.unlock()
        let failure = EngineError(.unavailable, "the server is shutting down")
        left.forEach { $0.events(.failed(failure)) }
        engine.failAll(failure)
    }

    /// Says why the engine cannot serve yet, before `run` starts (e.g. waiting for workers).
    public func setUnservedReason(_ reason: String) { publish(reason) }

    /// Says whether the engine can serve, from the engine thread outside the loop's own turns (the
    /// cluster changed while a step waits for workers), so `/health` follows an outage at once.
    /// Ignored once shutdown has begun.
    public func refresh(unservedReason reason: String?) {
        guard !draining else { return }
        publish(reason)
    }

    private func publish(_ reason: String?) {
        let stats = engine.stats
        meters.update(stats)
        throughput.add(stats)
        let rates = throughput.rates(stats)
        lock.lock()
        published = stats
        publishedReason = reason
        publishedRates = rates
        lock.unlock()
    }

    /// One log line about the pool and the queue.
    public static func describe(_ stats: EngineStats) -> String {
        String(format: "engine: %d running, %d waiting; KV blocks %d/%d used (%.0f%%), %d cached; "
               + "prefix hit rate %.1f%%; %d preemptions; %d tokens generated",
               stats.running, stats.waiting, stats.blocksUsed, stats.blocksTotal,
               100 * Double(stats.blocksUsed) / Double(max(1, stats.blocksTotal)), stats.blocksCached,
               100 * stats.prefixHitRate, stats.preemptions, stats.generatedTokens)
    }
}
