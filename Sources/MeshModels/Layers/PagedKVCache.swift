import Foundation
import MeshTensors

/// Keys and values of every layer for every running sequence, in fixed-size blocks from one pool
/// (vLLM's paged attention idea). A sequence owns a block table; position p of that sequence
/// lives in slot `table[p / blockSize] · blockSize + p % blockSize` of each layer's
/// [blocks · blockSize, kvHeads · headDim] key and value arrays. Which blocks belong to whom is
/// the engine's business (its block manager); this type only stores.
public final class PagedKVCache: @unchecked Sendable {
    public static let blockSize = 16
    public let blockCount: Int
    /// Values per token and layer in the key and value arrays (kvHeads · headDim each, or MLA's
    /// latent and rotated key).
    public let keyWidth: Int
    public let valueWidth: Int
    private let keys: [UnsafeMutablePointer<Float>]
    private let values: [UnsafeMutablePointer<Float>]

    /// Bytes one block takes over all layers (keys and values, f32).
    public static func bytesPerBlock(_ spec: ModelSpec) -> Int {
        let widths = spec.cacheWidths
        return spec.layerCount * blockSize * (widths.key + widths.value) * MemoryLayout<Float>.size
    }

    public init(spec: ModelSpec, blockCount: Int) throws {
        precondition(blockCount > 0, "a KV cache needs at least one block")
        self.blockCount = blockCount
        (keyWidth, valueWidth) = spec.cacheWidths
        // calloc: the pages are mapped lazily, so memory is used only as blocks fill.
        var keys: [UnsafeMutablePointer<Float>] = []
        var values: [UnsafeMutablePointer<Float>] = []
        for _ in 0..<(2 * spec.layerCount) {
            let width = keys.count < spec.layerCount ? keyWidth : valueWidth
            guard let raw = calloc(blockCount * Self.blockSize * width, MemoryLayout<Float>.size) else {
                (keys + values).forEach { free($0) }
                throw ModelError("cannot allocate a KV cache of \(blockCount) blocks (\(Self.bytesPerBlock(spec) * blockCount) bytes): give a smaller --kv-cache-memory")
            }
            let pointer = raw.assumingMemoryBound(to: Float.self)
            if keys.count < spec.layerCount { keys.append(pointer) } else { values.append(pointer) }
        }
        self.keys = keys
        self.values = values
    }

    deinit { (keys + values).forEach { free($0) } }

    @inline(__always) func key(layer: Int, slot: Int) -> UnsafeMutablePointer<Float> { keys[layer] + slot * keyWidth }
    @inline(__always) func value(layer: Int, slot: Int) -> UnsafeMutablePointer<Float> { values[layer] + slot * valueWidth }
}
