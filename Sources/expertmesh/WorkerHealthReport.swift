import Foundation
import MeshServer
import MeshWorker

extension WorkerHealth {
    /// A worker whose loop has not turned for this long (and is not loading experts) is stuck.
    static let stuckAfterSeconds = 30.0

    /// The worker's state as `worker --health` reports it.
    func report(name: String) -> @Sendable () -> HealthEndpoint.Report {
        { [self] in
            let now = current
            let ready = now.connected && now.experts > 0
            let idle = Date().timeIntervalSince(now.lastLoopTurn)
            let state = now.loading ? "loading experts" : ready ? "serving" : now.connected ? "waiting for an assignment"
                : "connecting to the coordinator"
            return HealthEndpoint.Report(
                ready: ready, live: now.loading || idle < Self.stuckAfterSeconds,
                details: ["worker": name, "state": state, "experts": now.experts, "expert_bytes": now.expertBytes,
                          "seconds_since_loop_turn": (idle * 10).rounded() / 10])
        }
    }
}
