import Foundation
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
    private let log: @Sendable (String) -> Void
    private let lock = NSLock()
    private let wake = DispatchSemaphore(value: 0)
    private var inbox: [Submission] = []
    private var published = EngineStats()
    private var publishedReason: String? = "starting"
    /// How often a busy engine logs its pool use.
    static var logInterval: Double { 10 }

    public init(engine: InferenceEngine<Backend>, log: @escaping @Sendable (String) -> Void) {
        self.engine = engine
        self.log = log
        published = engine.stats
    }

    public func submit(_ request: GenerationRequest, isCancelled: @escaping @Sendable () -> Bool,
                       events: @escaping @Sendable (SequenceEvent) -> Void) throws {
        try engine.validate(request)
        lock.lock()
        defer { lock.unlock() }
        if let reason = publishedReason { throw EngineError(.unavailable, "not serving: \(reason)") }
        guard inbox.count + published.waiting < engine.configuration.maxWaiting else {
            throw EngineError(.busy, "the server is busy: \(engine.configuration.maxWaiting) requests are already waiting; retry shortly")
        }
        inbox.append(Submission(request: request, isCancelled: isCancelled, events: events))
        wake.signal()
    }

    public var status: (stats: EngineStats, unservedReason: String?) {
        lock.lock()
        defer { lock.unlock() }
        return (published, publishedReason)
    }

    /// The engine loop, on the calling thread, until `shouldStop`. `unservedReason` says why the
    /// engine cannot serve now (nil: it can); `betweenSteps` runs after every step and idle turn.
    public func run(shouldStop: () -> Bool, unservedReason: () -> String? = { nil },
                    betweenSteps: () throws -> Void = {}) throws {
        var lastLog = ContinuousClock.now
        while !shouldStop() {
            let reason = unservedReason()
            lock.lock()
            let arrived = inbox
            inbox = []
            lock.unlock()
            for submission in arrived {
                if let reason {
                    submission.events(.failed(EngineError(.unavailable, "not serving: \(reason)")))
                    continue
                }
                do {
                    try engine.add(submission.request, isCancelled: submission.isCancelled, emit: submission.events)
                } catch {
                    submission.events(.failed(error as? EngineError ?? EngineError(.internalError, "\(error)")))
                }
            }
            if let reason, engine.hasWork {
                engine.failAll(EngineError(.unavailable, "not serving: \(reason)"))
            }
            if engine.hasWork {
                do {
                    try engine.step()
                } catch {
                    log("step failed, its requests were failed: \(error)")
                }
            } else {
                _ = wake.wait(timeout: .now() + 0.05)
            }
            try betweenSteps()
            publish(reason)
            if engine.hasWork, (ContinuousClock.now - lastLog).seconds >= Self.logInterval {
                lastLog = ContinuousClock.now
                log(Self.describe(engine.stats))
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

    private func publish(_ reason: String?) {
        let stats = engine.stats
        lock.lock()
        published = stats
        publishedReason = reason
        lock.unlock()
    }

    /// One log line about the pool and the queue.
    public static func describe(_ stats: EngineStats) -> String {
        String(format: "engine: %d running, %d waiting; KV blocks %d/%d used (%.0f%%), %d cached; prefix hit rate %.1f%%; %d preemptions; %d tokens generated",
               stats.running, stats.waiting, stats.blocksUsed, stats.blocksTotal,
               100 * Double(stats.blocksUsed) / Double(max(1, stats.blocksTotal)), stats.blocksCached,
               100 * stats.prefixHitRate, stats.preemptions, stats.generatedTokens)
    }
}
