/// A view of tensor bytes that live elsewhere (a memory-mapped checkpoint or an owned buffer).
/// `owner` keeps that memory alive for as long as the view exists.
public struct TensorView: @unchecked Sendable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public let data: UnsafeRawPointer
    public let owner: AnyObject

    public init(name: String, dtype: DType, shape: [Int], data: UnsafeRawPointer, owner: AnyObject) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.data = data
        self.owner = owner
    }

    public var elementCount: Int { shape.reduce(1, *) }
    public var byteCount: Int { elementCount * dtype.byteSize }

    /// The `index`-th slice along the first axis (e.g. one expert of a fused [E, out, in] tensor).
    public func slice(_ index: Int) -> TensorView {
        let inner = Array(shape.dropFirst())
        let stride = inner.reduce(1, *) * dtype.byteSize
        return TensorView(name: "\(name)[\(index)]", dtype: dtype, shape: inner, data: data + index * stride, owner: owner)
    }

    /// The same bytes seen with another shape of as many elements (e.g. [E·I, H] as [E, I, H]).
    public func reshaped(_ newShape: [Int]) -> TensorView {
        precondition(newShape.reduce(1, *) == elementCount, "reshape of \(shape) to \(newShape)")
        return TensorView(name: name, dtype: dtype, shape: newShape, data: data, owner: owner)
    }

    /// Of a 2-D [rows, 2·n] tensor whose columns alternate two matrices, the [rows, n] one in the
    /// columns `first`, `first + 2`, … (gpt-oss's interleaved gate/up), copied in the same dtype.
    public func everyOtherColumn(from first: Int) -> TensorView {
        precondition(shape.count == 2 && shape[1] % 2 == 0, "every other column of \(shape)")
        let (rows, half, size) = (shape[0], shape[1] / 2, dtype.byteSize)
        let storage = OwnedBytes(count: rows * half * size)
        for r in 0..<rows {
            for c in 0..<half {
                (storage.bytes + (r * half + c) * size).copyMemory(from: data + (r * shape[1] + 2 * c + first) * size, byteCount: size)
            }
        }
        return TensorView(name: "\(name)[:, \(first)::2]", dtype: dtype, shape: [rows, half], data: storage.bytes, owner: storage)
    }

    /// All elements widened to f32 (tests, small tensors such as norms).
    public func toFloats() -> [Float] {
        [Float](unsafeUninitializedCapacity: elementCount) { buffer, count in
            convertToFloat(data, dtype: dtype, count: elementCount, into: buffer.baseAddress!)
            count = elementCount
        }
    }

    public func expect(shape expected: [Int]) throws {
        guard shape == expected else { throw TensorError.shapeMismatch(name: name, expected: expected, found: shape) }
    }
}

/// Bytes a view owns (a copy made at load, e.g. a de-interleaved matrix).
final class OwnedBytes {
    let bytes: UnsafeMutableRawPointer
    init(count: Int) { bytes = .allocate(byteCount: max(count, 1), alignment: 64) }
    deinit { bytes.deallocate() }
}
