import Foundation

/// What a worker's health endpoint reports: written by the worker's socket thread, read by HTTP threads.
public final class WorkerHealth: @unchecked Sendable {
    public struct Snapshot: Sendable {
        /// In a session with the coordinator (hello sent, heartbeats answered).
        public var connected = false
        /// Loading experts: the loop does not turn meanwhile, and that is not being stuck.
        public var loading = false
        public var experts = 0
        public var expertBytes: UInt64 = 0
        /// The socket thread's loop turns at least every half heartbeat interval, traffic or not.
        public var lastLoopTurn = Date()
    }

    private let lock = NSLock()
    private var snapshot = Snapshot()

    public init() {}

    public var current: Snapshot { lock.withLock { snapshot } }

    func update(_ change: (inout Snapshot) -> Void) {
        lock.withLock { change(&snapshot) }
    }
}
