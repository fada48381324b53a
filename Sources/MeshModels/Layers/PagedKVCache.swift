import Foundation
import MeshTensors

/// Keys and values of every layer for every running sequence, in fixed-size blocks from one pool
/// (vLLM's paged attention idea). Layers come in KV cache groups (`ModelSpec.cacheGroups`: one
/// for most models; sliding and full layers apart for gpt-oss). A sequence owns a block table per
/// group; position p of a layer of group g lives in slot `tables[g][p / blockSize] · blockSize +
/// p % blockSize` of that layer's [blocks · blockSize, width] key and value arrays. The i-th layer
/// of every group shares one pair of arrays: a block belongs to one group at a time, so their
/// slots never meet. Which blocks belong to whom is the engine's business (its block manager);
/// this type only stores.
public final class PagedKVCache: @unchecked Sendable {
    public static let blockSize = 16
    public let blockCount: Int
    public let groups: [KVCacheGroup]
    /// Values per token and layer in the key and value arrays (kvHeads · headDim each, or MLA's
    /// latent and rotated key).
    public let keyWidth: Int
    public let valueWidth: Int
    private let groupOfLayer: [Int]
    private let arrayOfLayer: [Int]
    private let keys: [UnsafeMutablePointer<Float>]
    private let values: [UnsafeMutablePointer<Float>]

    /// Bytes one block takes (keys and values, f32, for the layers of one group).
    public static func bytesPerBlock(_ spec: ModelSpec) -> Int {
        let widths = spec.cacheWidths
        let layers = spec.cacheGroups.first?.layers.count ?? 0
        return layers * blockSize * (widths.key + widths.value) * MemoryLayout<Float>.size
    }

    /// A pool of `blockCount` blocks for `layers` (a pipeline stage's share; default: every layer).
    public init(spec: ModelSpec, blockCount: Int, layers: Range<Int>? = nil) throws {
        precondition(blockCount > 0, "a KV cache needs at least one block")
        self.blockCount = blockCount
        groups = spec.cacheGroups
        (keyWidth, valueWidth) = spec.cacheWidths
        let held = layers ?? 0..<spec.layerCount
        var groupOfLayer = [Int](repeating: 0, count: spec.layerCount)
        var arrayOfLayer = groupOfLayer
        // Only the arrays some held layer uses are made; they are numbered in order of use.
        var arrayNumbers: [Int: Int] = [:]
        for (group, members) in groups.enumerated() {
            for (array, layer) in members.layers.enumerated() {
                groupOfLayer[layer] = group
                if held.contains(layer) {
                    arrayOfLayer[layer] = arrayNumbers[array] ?? arrayNumbers.count
                    arrayNumbers[array] = arrayOfLayer[layer]
                }
            }
        }
        self.groupOfLayer = groupOfLayer
        self.arrayOfLayer = arrayOfLayer
        let size = "\(blockCount) blocks (\(Self.bytesPerBlock(spec) * blockCount) bytes)"
        keys = try Self.allocate(arrayNumbers.count, of: blockCount * Self.blockSize * keyWidth, describing: size)
        do {
            values = try Self.allocate(arrayNumbers.count, of: blockCount * Self.blockSize * valueWidth, describing: size)
        } catch {
            keys.forEach { free($0) }
            throw error
        }
    }

    /// `count` zeroed arrays of `floats` values. calloc: pages are mapped lazily, so memory is used
    /// only as blocks fill.
    private static func allocate(_ count: Int, of floats: Int, describing size: String) throws -> [UnsafeMutablePointer<Float>] {
        var arrays: [UnsafeMutablePointer<Float>] = []
        for _ in 0..<count {
            guard let raw = calloc(floats, MemoryLayout<Float>.size) else {
                arrays.forEach { free($0) }
                throw ModelError("cannot allocate a KV cache of \(size): give a smaller --kv-cache-memory")
            }
            arrays.append(raw.assumingMemoryBound(to: Float.self))
        }
        return arrays
    }

    deinit { (keys + values).forEach { free($0) } }

    /// The group whose block table holds `layer`'s positions.
    @inline(__always) func group(ofLayer layer: Int) -> Int { groupOfLayer[layer] }
    @inline(__always) func key(layer: Int, slot: Int) -> UnsafeMutablePointer<Float> {
        keys[arrayOfLayer[layer]] + slot * keyWidth
    }
    @inline(__always) func value(layer: Int, slot: Int) -> UnsafeMutablePointer<Float> {
        values[arrayOfLayer[layer]] + slot * valueWidth
    }
}
