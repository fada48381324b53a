import MeshEngine
import MeshModels

/// The scheduler's limits and the KV cache size, as given on the command line.
public struct ServingOptions: Sendable {
    public var maxBatchTokens = 512
    public var maxRunning = 64
    public var maxWaiting = 256
    /// Bytes for the KV cache pool; nil picks `defaultKVCacheBytes`.
    public var kvCacheBytes: Int?

    public init() {}

    /// Enough for `maxRunning` sequences at the model's full context, at most 2 GiB, and never
    /// less than one full-context sequence.
    public func defaultKVCacheBytes(_ spec: ModelSpec) -> Int {
        let perSequence = spec.cacheBlocksAtMost(positions: spec.maxPositions ?? 4096) * PagedKVCache.bytesPerBlock(spec)
        return max(perSequence, min(2 << 30, perSequence * maxRunning))
    }

    /// The engine's configuration and a line saying what was chosen.
    public func configuration(for spec: ModelSpec) -> (EngineConfiguration, String) {
        let bytes = kvCacheBytes ?? defaultKVCacheBytes(spec)
        let blocks = EngineConfiguration.blocks(forBytes: bytes, spec: spec)
        let configuration = EngineConfiguration(maxBatchTokens: maxBatchTokens, maxRunning: maxRunning,
                                                maxWaiting: maxWaiting, kvCacheBlocks: blocks)
        let size = Double(blocks * PagedKVCache.bytesPerBlock(spec)) / Double(1 << 20)
        let line = String(format: "KV cache: %d blocks of %d positions = %d tokens, %.0f MiB%@%@; "
                          + "batches of up to %d tokens, %d running, %d waiting",
                          blocks, PagedKVCache.blockSize, blocks * PagedKVCache.blockSize, size,
                          kvCacheBytes == nil ? " (default; --kv-cache-memory sets it)" : "",
                          spec.cacheGroupSummary.map { " in \($0)" } ?? "", maxBatchTokens, maxRunning, maxWaiting)
        return (configuration, line)
    }
}
