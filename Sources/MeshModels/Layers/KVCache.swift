import MeshTensors

/// Keys and values of every layer for one sequence: per layer [positions, kvHeads · headDim].
public final class KVCache: @unchecked Sendable {
    public private(set) var length = 0
    var keys: [Matrix]
    var values: [Matrix]

    public init(spec: ModelSpec) {
        let width = spec.kvHeadCount * spec.headDim
        keys = (0..<spec.layerCount).map { _ in Matrix(rows: 0, columns: width) }
        values = (0..<spec.layerCount).map { _ in Matrix(rows: 0, columns: width) }
    }

    /// Appends T rows of k and v for `layer` (all layers append the same T before `advance`).
    func append(layer: Int, keys k: Matrix, values v: Matrix) {
        let start = length
        keys[layer].resize(rows: start + k.rows)
        values[layer].resize(rows: start + v.rows)
        keys[layer].row(start).update(from: k.data, count: k.count)
        values[layer].row(start).update(from: v.data, count: v.count)
    }

    func advance(by count: Int) { length += count }
}
