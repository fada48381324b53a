import CoreMetrics
import Foundation

/// What one worker did, for `/v1/cluster` and `/metrics`: requests answered, bytes each way, and
/// the round trips and compute times of its last replies (percentiles over `SampleWindow`).
struct WorkerStats {
    var requests = 0
    /// Coordinator → worker, and back.
    var bytesOut = 0
    var bytesIn = 0
    var roundTrips = SampleWindow()
    var computeTimes = SampleWindow()
    private let meters: Meters

    init(worker: String) { meters = Meters(worker: worker) }

    mutating func sent(bytes: Int) {
        bytesOut += bytes
        meters.bytesOut.increment(by: bytes)
    }

    mutating func answered(bytes: Int, roundTrip: Double, compute: Double) {
        requests += 1
        bytesIn += bytes
        roundTrips.add(roundTrip)
        computeTimes.add(compute)
        meters.requests.increment()
        meters.bytesIn.increment(by: bytes)
        meters.roundTrip.recordSeconds(roundTrip)
        meters.compute.recordSeconds(compute)
    }

    /// The worker's state as a gauge per state (1 for the current one), and its expert count.
    func publish(state: WorkerState, experts: Int) {
        for (candidate, gauge) in meters.states { gauge.record(candidate == state ? 1 : 0) }
        meters.up.record(state == .ready || state == .degraded ? 1 : 0)
        meters.experts.record(experts)
    }

    var json: [String: Any] {
        ["requests": requests, "bytes_out": bytesOut, "bytes_in": bytesIn,
         "round_trip_seconds": roundTrips.summary, "compute_seconds": computeTimes.summary]
    }

    private struct Meters {
        let requests: Counter, bytesOut: Counter, bytesIn: Counter
        let roundTrip: CoreMetrics.Timer, compute: CoreMetrics.Timer
        let up: Gauge, experts: Gauge
        /// `expertmesh_worker_state{worker, state}`, one per state.
        let states: [(WorkerState, Gauge)]

        init(worker: String) {
            let label = [("worker", worker)]
            requests = Counter(label: "expertmesh_worker_requests_total", dimensions: label)
            bytesOut = Counter(label: "expertmesh_worker_sent_bytes_total", dimensions: label)
            bytesIn = Counter(label: "expertmesh_worker_received_bytes_total", dimensions: label)
            roundTrip = CoreMetrics.Timer(label: "expertmesh_worker_round_trip_seconds", dimensions: label)
            compute = CoreMetrics.Timer(label: "expertmesh_worker_compute_seconds", dimensions: label)
            up = Gauge(label: "expertmesh_worker_up", dimensions: label)
            experts = Gauge(label: "expertmesh_worker_experts", dimensions: label)
            states = WorkerState.allCases.map {
                ($0, Gauge(label: "expertmesh_worker_state", dimensions: label + [("state", $0.rawValue)]))
            }
        }
    }
}

/// What a worker is doing, as status and metrics show it.
public enum WorkerState: String, CaseIterable, Sendable {
    /// Serving its experts.
    case ready
    /// Given experts, not ready with them yet.
    case loading
    /// Serving, but its work goes to replicas for a while: it was too slow.
    case degraded
    /// Its results were discarded (NaN, infinite values, wrong shape) until it says hello again.
    case faulty
    /// Silent past --worker-timeout, or gone.
    case lost
    /// Connected, holding no experts (a spare, until a worker is lost).
    case connected
}

/// The last `capacity` samples of a duration, for percentiles.
struct SampleWindow {
    static let capacity = 512
    private var samples: [Double] = []
    private var next = 0

    mutating func add(_ value: Double) {
        if samples.count < Self.capacity {
            samples.append(value)
        } else {
            samples[next] = value
            next = (next + 1) % Self.capacity
        }
    }

    /// The nearest-rank percentile `p` (0…100) of the window; nil when empty.
    func percentile(_ p: Double) -> Double? {
        guard !samples.isEmpty else { return nil }
        let sorted = samples.sorted()
        let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
        return sorted[min(sorted.count - 1, max(0, rank - 1))]
    }

    var summary: [String: Any] {
        ["p50": percentile(50).map { $0 as Any } ?? NSNull(), "p99": percentile(99).map { $0 as Any } ?? NSNull(),
         "samples": samples.count]
    }
}

extension CoreMetrics.Timer {
    func recordSeconds(_ seconds: Double) { recordNanoseconds(Int64(max(0, seconds) * 1e9)) }
}
