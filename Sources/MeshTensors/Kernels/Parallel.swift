import CKernels
import COpenBLAS
import Foundation

/// Splits `0..<count` into one contiguous range per core and runs them concurrently on the
/// kernels' thread pool (CKernels' `mesh_pool_run`: threads that stay warm between the products
/// of a step). Callers run on dedicated threads (never Swift's cooperative pool): this blocks.
public enum Parallel {
    /// Threads the kernels use; `setThreadCount` changes it (and OpenBLAS's) at start-up.
    nonisolated(unsafe) public private(set) static var coreCount = max(1, ProcessInfo.processInfo.activeProcessorCount)

    public static func setThreadCount(_ count: Int) {
        coreCount = max(1, count)
        openblas_set_num_threads(Int32(coreCount))
        mesh_pool_set_threads(Int32(coreCount))
    }

    private static let pool: Void = mesh_pool_set_threads(Int32(coreCount))

    /// Before a wait much longer than the pool's spin (a reply over the network): its helper
    /// threads sleep now instead of spinning, so the cores go to whoever computes meanwhile (on
    /// one host, the workers beside their coordinator).
    public static func rest() { mesh_pool_rest() }

    /// One loop's ranges and body, read by the pool's threads through a C context pointer.
    private struct Loop {
        let count: Int
        let units: Int
        let granularity: Int
        let tasks: Int
        let body: (Range<Int>) -> Void
    }

    /// Runs `body` over contiguous ranges covering `0..<count`, concurrently. Each range holds at
    /// least `minimumPerTask` items (where there are enough) and starts at a multiple of
    /// `granularity`. There are a few ranges per thread, taken in turn as threads free up, so a
    /// thread that starts late does not hold the others back.
    public static func forRanges(_ count: Int, minimumPerTask: Int = 1, granularity: Int = 1, _ body: (Range<Int>) -> Void) {
        let granularity = max(1, granularity)
        let units = (count + granularity - 1) / granularity
        let tasks = max(1, min(4 * coreCount, units, count / max(1, minimumPerTask)))
        if tasks == 1 || coreCount == 1 {
            body(0..<count)
            return
        }
        _ = pool
        // The tasks write disjoint ranges; callers guarantee that, so the body may cross threads.
        withoutActuallyEscaping(body) { escaping in
            var loop = Loop(count: count, units: units, granularity: granularity, tasks: tasks, body: escaping)
            withUnsafeMutablePointer(to: &loop) { pointer in
                mesh_pool_run(tasks, { context, task in
                    let loop = context!.assumingMemoryBound(to: Loop.self).pointee
                    let start = min(loop.count, loop.units * task / loop.tasks * loop.granularity)
                    let end = min(loop.count, loop.units * (task + 1) / loop.tasks * loop.granularity)
                    if start < end { loop.body(start..<end) }
                }, pointer)
            }
        }
    }
}
