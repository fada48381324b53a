import CKernels
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

    /// Read bandwidth in GB/s: all cores summing a buffer much larger than the caches, in huge-page
    /// memory as the weights are, with the widest loads the CPU has: plain, with non-temporal
    /// prefetches, and with prefetches into L1; the fastest of the three, so a bound computed from
    /// it is an honest one.
    public static func readBandwidthGBps(bytes: Int = 1 << 30, seconds: Double = 1.0) -> Double {
        let chunk = 256
        let count = bytes / chunk
        let memory = HugePageMemory(byteCount: count * chunk)
        let buffer = memory.pointer
        buffer.initializeMemory(as: Float.self, repeating: 1, count: count * chunk / 4)
        var best = 0.0
        var sink: Float = 0
        for hint: Int32 in [0, 1, 2] {
            let clock = ContinuousClock()
            var passes = 0
            let start = clock.now
            repeat {
                let lock = NSLock()
                Parallel.forRanges(count, minimumPerTask: 1 << 12) { range in
                    let sum = mesh_read_sum(buffer + range.lowerBound * chunk, range.count * chunk, hint)
                    lock.lock(); sink += sum; lock.unlock()
                }
                passes += 1
            } while (clock.now - start) < .seconds(seconds / 3)
            best = max(best, Double(count * chunk) * Double(passes) / (clock.now - start).seconds / 1e9)
        }
        if sink == -1 { print("") }   // keeps the reads from being optimised away
        return best
    }

    /// The loads the bandwidth probe uses.
    public static var readProbeName: String { String(cString: mesh_read_probe_name()) }
}

/// The engine's own product kernels at their limits, in the variant in use: decode-shaped products
/// streaming weights much larger than the caches (GB/s), and prefill-shaped ones on weights that
/// stay in cache (GFLOP/s). Set beside the probes above, they show how far the kernels are from
/// the machine and how far the engine is from its kernels.
public enum KernelLimits {
    /// `rows` × [out, in] products, one after another over matrices adding up to `bytes`.
    static func rate(rows: Int, outFeatures: Int, inFeatures: Int, dtype: DType, q8: Bool, bytes: Int,
                     seconds: Double) -> (bytesPerSecond: Double, flopsPerSecond: Double) {
        let matrixBytes = outFeatures * inFeatures * dtype.byteSize
        let count = max(1, bytes / matrixBytes)
        let memory = HugePageMemory(byteCount: count * matrixBytes)   // where loaded weights live
        let storage = memory.pointer
        // Small values of every sign, so no product underflows or overflows.
        let elements = count * matrixBytes / dtype.byteSize
        let pattern = (0..<4096).map { Float(($0 * 7919) % 201 - 100) / 1000 }
        pattern.withUnsafeBufferPointer { values in
            var offset = 0
            while offset < elements {
                let n = min(values.count, elements - offset)
                convertFromFloat(values.baseAddress!, count: n, to: dtype, into: storage + offset * dtype.byteSize)
                offset += n
            }
        }
        let weights = (0..<count).map {
            let weight = LinearWeight(data: storage + $0 * matrixBytes, dtype: dtype, outFeatures: outFeatures,
                                      inFeatures: inFeatures, layout: .outMajor, leadingDimension: inFeatures, owner: memory)
            // As the engine holds them: quantised, or packed into panels under AVX-512 BF16 without AMX
            // (the storage is huge-page memory already, as a loaded copy is).
            return q8 ? weight.quantizedQ8_0() : weight.packsIntoPanels ? weight.packedIntoPanels() : weight
        }
        return time(weights, rows: rows, seconds: seconds)
    }

    /// Runs `rows`-row products over `weights`, one after another, for `seconds`.
    static func time(_ weights: [LinearWeight], rows: Int, seconds: Double) -> (bytesPerSecond: Double, flopsPerSecond: Double) {
        let (outFeatures, inFeatures) = (weights[0].outFeatures, weights[0].inFeatures)
        let x = (0..<(rows * inFeatures)).map { Float($0 % 17 - 8) / 16 }
        let y = UnsafeMutablePointer<Float>.allocate(capacity: rows * outFeatures)
        defer { y.deallocate() }
        let clock = ContinuousClock()
        var products = 0
        let start = clock.now
        repeat {
            // A decode-shaped product carries a generated token (under AMX that picks its kernel).
            for weight in weights { matmul(x, rows: rows, weight, into: y, generated: rows == 1 ? [true] : nil) }
            products += weights.count
        } while (clock.now - start) < .seconds(seconds)
        let elapsed = (clock.now - start).seconds
        return (Double(products * weights[0].byteCount) / elapsed, 2.0 * Double(products * rows * outFeatures * inFeatures) / elapsed)
    }

    /// GB/s one-row products reach over 512 MB of [out, in] weights (the decode pattern), the
    /// weights in `dtype` or quantised from it to Q8_0.
    public static func decodeGBps(outFeatures: Int, inFeatures: Int, dtype: DType, q8: Bool = false,
                                  seconds: Double = 1) -> Double {
        rate(rows: 1, outFeatures: outFeatures, inFeatures: inFeatures, dtype: dtype, q8: q8, bytes: 512 << 20,
             seconds: seconds).bytesPerSecond / 1e9
    }

    /// GB/s one-row products reach over 512 MB of MXFP4 weights of gpt-oss's expert shape ([2·2880,
    /// 2880]; random codes, scales of 2^-1): the kernel gpt-oss's experts take, whatever the model.
    public static func mxfp4DecodeGBps(outFeatures: Int = 5760, inFeatures: Int = 2880, seconds: Double = 1) -> Double {
        let (codeBytes, scaleBytes) = (outFeatures * inFeatures / 2, outFeatures * inFeatures / 32)
        let count = max(1, (512 << 20) / (codeBytes + scaleBytes))
        let codes = UnsafeMutablePointer<UInt8>.allocate(capacity: count * codeBytes)
        let scales = UnsafeMutablePointer<UInt8>.allocate(capacity: count * scaleBytes)
        defer { codes.deallocate(); scales.deallocate() }
        for i in 0..<(count * codeBytes) { codes[i] = UInt8(truncatingIfNeeded: i &* 2654435761 >> 7) }
        scales.initialize(repeating: 126, count: count * scaleBytes)
        let weights = (0..<count).map {
            LinearWeight(data: codes + $0 * codeBytes, dtype: .f32, outFeatures: outFeatures, inFeatures: inFeatures,
                         layout: .outMajor, leadingDimension: inFeatures / 2, owner: NSNull(),
                         mxfp4Scales: scales + $0 * scaleBytes, mxfp4ScaleStride: inFeatures / 32)
        }
        return time(weights, rows: 1, seconds: seconds).bytesPerSecond / 1e9
    }

    /// GFLOP/s of `rows`-row products over weights that stay in the caches (the prefill pattern).
    public static func prefillGigaflops(rows: Int, outFeatures: Int, inFeatures: Int, dtype: DType, q8: Bool = false,
                                        seconds: Double = 1) -> Double {
        rate(rows: rows, outFeatures: outFeatures, inFeatures: inFeatures, dtype: dtype, q8: q8, bytes: 1 << 20,
             seconds: seconds).flopsPerSecond / 1e9
    }
}
