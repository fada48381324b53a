/// A weight matrix used as `y = x · Wᵀ`, with `outFeatures × inFeatures` logical shape,
/// whatever its storage: `nn.Linear` stores W as [out, in] (`.outMajor`); fused expert
/// tensors such as Llama 4's `gate_up_proj` [E, in, 2·I] store it as [in, out] (`.inMajor`).
/// `leadingDimension` is the element stride between rows of the stored matrix, so a
/// half of a fused [gate | up] tensor is a view, not a copy.
public struct LinearWeight: @unchecked Sendable {
    public enum Layout: Sendable { case outMajor, inMajor }

    public let data: UnsafeRawPointer
    public let dtype: DType
    public let outFeatures: Int
    public let inFeatures: Int
    public let layout: Layout
    public let leadingDimension: Int
    public let owner: AnyObject

    /// A `[out, in]` tensor (the `nn.Linear` convention).
    public init(_ view: TensorView) throws {
        guard view.shape.count == 2 else {
            throw TensorError.shapeMismatch(name: view.name, expected: [-1, -1], found: view.shape)
        }
        self.init(data: view.data, dtype: view.dtype, outFeatures: view.shape[0], inFeatures: view.shape[1],
                  layout: .outMajor, leadingDimension: view.shape[1], owner: view.owner)
    }

    /// An `[in, out]` tensor (used as `x @ W`).
    public init(inMajor view: TensorView) throws {
        guard view.shape.count == 2 else {
            throw TensorError.shapeMismatch(name: view.name, expected: [-1, -1], found: view.shape)
        }
        self.init(data: view.data, dtype: view.dtype, outFeatures: view.shape[1], inFeatures: view.shape[0],
                  layout: .inMajor, leadingDimension: view.shape[1], owner: view.owner)
    }

    public init(data: UnsafeRawPointer, dtype: DType, outFeatures: Int, inFeatures: Int,
                layout: Layout, leadingDimension: Int, owner: AnyObject) {
        self.data = data
        self.dtype = dtype
        self.outFeatures = outFeatures
        self.inFeatures = inFeatures
        self.layout = layout
        self.leadingDimension = leadingDimension
        self.owner = owner
    }

    /// Output features `range` only (e.g. the gate half of a fused gate/up projection).
    public func outputs(_ range: Range<Int>) -> LinearWeight {
        let offset = layout == .outMajor ? range.lowerBound * leadingDimension : range.lowerBound
        return LinearWeight(data: data + offset * dtype.byteSize, dtype: dtype, outFeatures: range.count,
                            inFeatures: inFeatures, layout: layout, leadingDimension: leadingDimension, owner: owner)
    }

    /// Bytes a forward pass reads from this weight.
    public var byteCount: Int { outFeatures * inFeatures * dtype.byteSize }

    /// Element (o, i) widened to f32 (reference kernels and tests).
    @inline(__always) public func element(_ o: Int, _ i: Int) -> Float {
        let index = layout == .outMajor ? o * leadingDimension + i : i * leadingDimension + o
        switch dtype {
        case .f32: return data.load(fromByteOffset: index * 4, as: Float.self)
        case .bf16: return bf16ToFloat(data.load(fromByteOffset: index * 2, as: UInt16.self))
        case .f16: return f16ToFloat(data.load(fromByteOffset: index * 2, as: UInt16.self))
        }
    }

    /// Stored row `r` (an output row for `.outMajor`, an input row for `.inMajor`).
    @inline(__always) func storedRow(_ r: Int) -> UnsafeRawPointer {
        data + r * leadingDimension * dtype.byteSize
    }

    /// Length of a stored row that belongs to this view.
    var storedRowLength: Int { layout == .outMajor ? inFeatures : outFeatures }
    var storedRowCount: Int { layout == .outMajor ? outFeatures : inFeatures }
}
