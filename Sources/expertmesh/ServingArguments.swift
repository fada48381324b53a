import ArgumentParser
import Foundation
import MeshServer

/// The engine's flags, shared by `serve` and `coordinator`.
struct ServingArguments: ParsableArguments {
    @Option(help: "Tokens in one forward pass: every running decode token plus prefill chunks of long prompts.")
    var maxBatchTokens = 512

    @Option(help: "Requests generating at once (each holds KV cache blocks).")
    var maxRunning = 64

    @Option(help: "Requests allowed to wait; more get HTTP 429 with Retry-After.")
    var maxWaiting = 256

    @Option(help: "KV cache pool size, e.g. 512MiB, 4GiB or bytes. Default: enough for --max-running full-context sequences, at most 2 GiB (printed at start).")
    var kvCacheMemory: String?

    func validate() throws {
        guard maxBatchTokens >= 1 else { throw ValidationError("--max-batch-tokens must be at least 1") }
        guard maxRunning >= 1 else { throw ValidationError("--max-running must be at least 1") }
        guard maxWaiting >= 0 else { throw ValidationError("--max-waiting must be at least 0") }
        if let kvCacheMemory, Self.bytes(kvCacheMemory) == nil {
            throw ValidationError("--kv-cache-memory must be a size such as 512MiB, 4GiB or 1073741824, got '\(kvCacheMemory)'")
        }
    }

    var options: ServingOptions {
        var options = ServingOptions()
        options.maxBatchTokens = maxBatchTokens
        options.maxRunning = maxRunning
        options.maxWaiting = maxWaiting
        options.kvCacheBytes = kvCacheMemory.flatMap(Self.bytes)
        return options
    }

    /// "512MiB", "4GiB", "1.5G", "800M", "65536" → bytes (K/M/G and KiB/MiB/GiB are powers of 1024).
    static func bytes(_ text: String) -> Int? {
        let (kib, mib, gib) = (1024.0, 1024.0 * 1024, 1024.0 * 1024 * 1024)
        let units: [(String, Double)] = [("KiB", kib), ("MiB", mib), ("GiB", gib), ("KB", kib), ("MB", mib), ("GB", gib),
                                         ("K", kib), ("M", mib), ("G", gib), ("B", 1)]
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        for (suffix, scale) in units where trimmed.uppercased().hasSuffix(suffix.uppercased()) {
            guard let value = Double(trimmed.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), value > 0 else { return nil }
            return Int(value * scale)
        }
        return Int(trimmed).flatMap { $0 > 0 ? $0 : nil }
    }
}
