import COpenBLAS
import Foundation

/// The machine's limits, measured in the same run as a benchmark so ratios hold on a noisy host.
public enum MachineLimits {
    /// sgemm throughput in GFLOP/s for y[m, n] = x[m, k] · W[n, k]ᵀ (the engine's product shape).
    public static func gemmGigaflops(m: Int, n: Int, k: Int, seconds: Double = 1.0) -> Double {
        let x = [Float](repeating: 0.5, count: m * k)
        let w = [Float](repeating: 0.25, count: n * k)
        var y = [Float](repeating: 0, count: m * n)
        let clock = ContinuousClock()
        var runs = 0
        let start = clock.now
        repeat {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 1, x, Int32(k), w, Int32(k), 0, &y, Int32(n))
            runs += 1
        } while (clock.now - start) < .seconds(seconds)
        let seconds = (clock.now - start).seconds
        return 2.0 * Double(m * n * k) * Double(runs) / seconds / 1e9
    }

    /// Read bandwidth in GB/s: all cores summing a buffer much larger than the caches.
    public static func readBandwidthGBps(bytes: Int = 1 << 30, seconds: Double = 1.0) -> Double {
        let count = bytes / 4
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: count)
        defer { buffer.deallocate() }
        buffer.initialize(repeating: 1, count: count)
        let clock = ContinuousClock()
        var passes = 0
        var sink: Float = 0
        let start = clock.now
        repeat {
            let lock = NSLock()
            Parallel.forRanges(count, minimumPerTask: 1 << 20) { range in
                var acc = SIMD16<Float>()
                var i = range.lowerBound
                let raw = UnsafeRawPointer(buffer)
                while i + 16 <= range.upperBound {
                    acc += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
                    i += 16
                }
                lock.lock(); sink += acc.sum(); lock.unlock()
            }
            passes += 1
        } while (clock.now - start) < .seconds(seconds)
        let seconds = (clock.now - start).seconds
        if sink == -1 { print("") }   // keeps the reads from being optimised away
        return Double(count * 4) * Double(passes) / seconds / 1e9
    }
}
