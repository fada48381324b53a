import COpenBLAS
import Dispatch
import Foundation

/// Splits `0..<count` into one contiguous range per core and runs them concurrently.
/// Callers run on dedicated threads (never Swift's cooperative pool): this blocks.
public enum Parallel {
    /// Threads the kernels use; `setThreadCount` changes it (and OpenBLAS's) at start-up.
    nonisolated(unsafe) public private(set) static var coreCount = max(1, ProcessInfo.processInfo.activeProcessorCount)

    public static func setThreadCount(_ count: Int) {
        coreCount = max(1, count)
        openblas_set_num_threads(Int32(coreCount))
    }

    public static func forRanges(_ count: Int, minimumPerTask: Int = 1, _ body: (Range<Int>) -> Void) {
        let tasks = max(1, min(coreCount, count / max(1, minimumPerTask)))
        if tasks == 1 {
            body(0..<count)
            return
        }
        // The tasks write disjoint ranges; callers guarantee that, so the closure may cross threads.
        withoutActuallyEscaping(body) { escaping in
            let shared = UncheckedSendable(escaping)
            DispatchQueue.concurrentPerform(iterations: tasks) { task in
                let start = count * task / tasks
                let end = count * (task + 1) / tasks
                if start < end { shared.value(start..<end) }
            }
        }
    }
}

/// Carries a value across threads where the caller guarantees there is no data race.
public struct UncheckedSendable<Value>: @unchecked Sendable {
    public let value: Value
    public init(_ value: Value) { self.value = value }
}
