import CKernels
import COpenBLAS
import Foundation

/// Splits `0..<count` into contiguous ranges and runs them concurrently on the
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
        let granularity: Int
        /// Task i covers units bounds[i]..<bounds[i + 1].
        let bounds: UnsafeBufferPointer<Int>
        let body: (Range<Int>) -> Void
    }

    /// Runs `body` over contiguous ranges covering `0..<count`, concurrently. Each range holds at
    /// least `minimumPerTask` items (where there are enough) and starts at a multiple of
    /// `granularity`. Ranges shrink as the loop goes (each a 1/(2 · threads) share of what is
    /// left, guided scheduling) and are taken in turn as threads free up: the first ones are long
    /// streams for the prefetchers, the last ones short, so threads finish within a short range of
    /// each other (with equal ranges, a decode step's threads waited on each other for ~13% of it).
    public static func forRanges(_ count: Int, minimumPerTask: Int = 1, granularity: Int = 1, _ body: (Range<Int>) -> Void) {
        let granularity = max(1, granularity)
        let units = (count + granularity - 1) / granularity
        let minimumUnits = max(1, (max(1, minimumPerTask) + granularity - 1) / granularity)
        if coreCount == 1 || units < 2 * minimumUnits || count < 2 * minimumPerTask {
            body(0..<count)
            return
        }
        _ = pool
        var bounds = [0]
        bounds.reserveCapacity(64)
        while let last = bounds.last, last < units {
            let next = last + max(minimumUnits, (units - last + 2 * coreCount - 1) / (2 * coreCount))
            bounds.append(units - next < minimumUnits ? units : next)   // no range shorter than the minimum
        }
        // The tasks write disjoint ranges; callers guarantee that, so the body may cross threads.
        withoutActuallyEscaping(body) { escaping in
            bounds.withUnsafeBufferPointer { bounds in
                var loop = Loop(count: count, granularity: granularity, bounds: bounds, body: escaping)
                withUnsafeMutablePointer(to: &loop) { pointer in
                    mesh_pool_run(bounds.count - 1, { context, task in
                        let loop = context!.assumingMemoryBound(to: Loop.self).pointee
                        let start = min(loop.count, loop.bounds[task] * loop.granularity)
                        let end = min(loop.count, loop.bounds[task + 1] * loop.granularity)
                        if start < end { loop.body(start..<end) }
                    }, pointer)
                }
            }
        }
    }
}
