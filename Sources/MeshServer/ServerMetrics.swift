import CoreMetrics
import Foundation
import MeshEngine

/// The API's metrics, through swift-metrics (the executable chooses the backend: Prometheus for
/// `/metrics`). Names and labels are listed in the README's "Metrics" section.
enum ServerMetrics {
    static let timeToFirstToken = "expertmesh_time_to_first_token_seconds"
    static let interTokenLatency = "expertmesh_inter_token_latency_seconds"
    static let requestDuration = "expertmesh_request_duration_seconds"

    /// `expertmesh_requests_total{outcome}`: stop, length, cancelled, error.
    static func finished(_ outcome: String) {
        Counter(label: "expertmesh_requests_total", dimensions: [("outcome", outcome)]).increment()
    }
}

/// One request's latencies, measured where its events leave the engine thread: time to its first
/// token, between tokens, and from submission to the end.
struct RequestTimer {
    private let submitted = ContinuousClock.now
    private var lastToken: ContinuousClock.Instant?

    mutating func observe(_ event: SequenceEvent) {
        let now = ContinuousClock.now
        switch event {
        case .token:
            let name = lastToken == nil ? ServerMetrics.timeToFirstToken : ServerMetrics.interTokenLatency
            Timer(label: name).recordNanoseconds(Self.nanoseconds(now - (lastToken ?? submitted)))
            lastToken = now
        case .finished(let reason, _):
            Timer(label: ServerMetrics.requestDuration).recordNanoseconds(Self.nanoseconds(now - submitted))
            ServerMetrics.finished(reason.rawValue)
        case .failed:
            ServerMetrics.finished("error")
        case .promptLogprobs, .logits:
            break
        }
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
    }
}

/// The engine's counters as metrics: gauges set and counters advanced by what changed since the
/// last call (on the engine thread, after every step).
struct EngineMeters {
    private var last = EngineStats()
    private let running = Gauge(label: "expertmesh_running_sequences")
    private let waiting = Gauge(label: "expertmesh_waiting_sequences")
    private let blocksUsed = Gauge(label: "expertmesh_kv_blocks_used")
    private let blocksCached = Gauge(label: "expertmesh_kv_blocks_cached")
    private let blocksTotal = Gauge(label: "expertmesh_kv_blocks_total")
    private let promptTokens = Counter(label: "expertmesh_prompt_tokens_total")
    private let generatedTokens = Counter(label: "expertmesh_generated_tokens_total")
    private let prefixQueried = Counter(label: "expertmesh_prefix_cache_queried_tokens_total")
    private let prefixHits = Counter(label: "expertmesh_prefix_cache_hit_tokens_total")
    private let preemptions = Counter(label: "expertmesh_preemptions_total")
    private let steps = Counter(label: "expertmesh_engine_steps_total")

    mutating func update(_ stats: EngineStats) {
        running.record(stats.running)
        waiting.record(stats.waiting)
        blocksUsed.record(stats.blocksUsed)
        blocksCached.record(stats.blocksCached)
        blocksTotal.record(stats.blocksTotal)
        promptTokens.increment(by: max(0, stats.promptTokens - last.promptTokens))
        generatedTokens.increment(by: max(0, stats.generatedTokens - last.generatedTokens))
        prefixQueried.increment(by: max(0, stats.prefixQueryTokens - last.prefixQueryTokens))
        prefixHits.increment(by: max(0, stats.prefixHitTokens - last.prefixHitTokens))
        preemptions.increment(by: max(0, stats.preemptions - last.preemptions))
        steps.increment(by: max(0, stats.steps - last.steps))
        last = stats
    }
}

/// Tokens per second in and out over the last `seconds`, from the engine's running totals.
struct ThroughputWindow {
    private var samples: [(time: Double, prompt: Int, generated: Int)] = []
    let seconds: Double

    init(seconds: Double = 10) { self.seconds = seconds }

    mutating func add(_ stats: EngineStats, now: Double = Date().timeIntervalSince1970) {
        if let last = samples.last, now - last.time < 0.25 { return }
        samples.append((now, stats.promptTokens, stats.generatedTokens))
        samples.removeAll { now - $0.time > seconds }
    }

    /// (prompt tokens/s, generated tokens/s) between the oldest sample in the window and `stats`.
    func rates(_ stats: EngineStats, now: Double = Date().timeIntervalSince1970) -> (prompt: Double, generated: Double) {
        guard let first = samples.first, now - first.time > 0.5 else { return (0, 0) }
        let span = now - first.time
        return (Double(stats.promptTokens - first.prompt) / span, Double(stats.generatedTokens - first.generated) / span)
    }
}
