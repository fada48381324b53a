import CKernels

/// A weight matrix used as `y = x · Wᵀ`, with `outFeatures × inFeatures` logical shape,
/// whatever its storage: `nn.Linear` stores W as [out, in] (`.outMajor`); fused expert
/// tensors such as Llama 4's `gate_up_proj` [E, in, 2·I] store it as [in, out] (`.inMajor`).
/// `leadingDimension` is the element stride between rows of the stored matrix, so a
/// half of a fused [gate | up] tensor is a view, not a copy.
///
/// A Q8_0 weight (`quantizedQ8_0()`) holds int8 values in `data` (rows of `leadingDimension`
/// bytes) with one f16 scale per 32 values in `q8Scales` (rows of `q8ScaleStride`), or, laid out
/// `.q8Panels`, both in panels of 16 outputs (`mesh_q8_panels_pack`); its `dtype` is what it was
/// quantised from.
public struct LinearWeight: @unchecked Sendable {
    public enum Layout: Sendable {
        case outMajor, inMajor
        /// bf16 [out, in] packed at load into blocks of 32 outputs × k pairs (`mesh_bf16_panels_pack`),
        /// read by the AVX-512 BF16 panel kernel for every row; not sliced further.
        case panels
        /// Q8_0 values and scales in panels of 16 outputs, read by the int8 panel kernel for every row;
        /// a slice of outputs starts `firstOutput` outputs into its first panel.
        case q8Panels
    }

    public let data: UnsafeRawPointer
    public let dtype: DType
    public let q8Scales: UnsafePointer<UInt16>?
    public let outFeatures: Int
    public let inFeatures: Int
    public let layout: Layout
    public let leadingDimension: Int
    public let owner: AnyObject
    /// MXFP4 (gpt-oss experts): `data` holds 16 bytes of E2M1 codes per 32 values (rows of
    /// `leadingDimension` bytes), these one E8M0 scale per 32 values (rows of `mxfp4ScaleStride`).
    public let mxfp4Scales: UnsafePointer<UInt8>?
    public let mxfp4ScaleStride: Int
    /// `.q8Panels`: where output 0 lies in the first panel (a slice of outputs need not start on one).
    public let firstOutput: Int

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
                layout: Layout, leadingDimension: Int, owner: AnyObject, q8Scales: UnsafePointer<UInt16>? = nil,
                mxfp4Scales: UnsafePointer<UInt8>? = nil, mxfp4ScaleStride: Int = 0, firstOutput: Int = 0) {
        self.firstOutput = firstOutput
        self.mxfp4Scales = mxfp4Scales
        self.mxfp4ScaleStride = mxfp4ScaleStride
        self.data = data
        self.dtype = dtype
        self.q8Scales = q8Scales
        self.outFeatures = outFeatures
        self.inFeatures = inFeatures
        self.layout = layout
        self.leadingDimension = leadingDimension
        self.owner = owner
    }

    /// An MXFP4 weight [out, in] from its `*_blocks` [out, in/32, 16] and `*_scales` [out, in/32], read in
    /// place. Its nominal dtype is f32 (what the kernel computes in).
    public init(mxfp4Blocks blocks: ByteTensor, scales: ByteTensor) throws {
        guard blocks.shape.count == 3, blocks.shape[2] == 16, scales.shape == Array(blocks.shape.prefix(2)) else {
            throw TensorError.shapeMismatch(name: "\(blocks.name) and \(scales.name)", expected: [-1, -1, 16],
                                            found: blocks.shape + scales.shape)
        }
        let (out, groups) = (blocks.shape[0], blocks.shape[1])
        self.init(data: blocks.data, dtype: .f32, outFeatures: out, inFeatures: groups * 32, layout: .outMajor,
                  leadingDimension: groups * 16, owner: blocks.owner, mxfp4Scales: scales.data, mxfp4ScaleStride: groups)
    }

    public var isMXFP4: Bool { mxfp4Scales != nil }

    /// Output features `range` only (e.g. the gate half of a fused gate/up projection).
    public func outputs(_ range: Range<Int>) -> LinearWeight {
        precondition(layout != .panels, "outputs of a weight packed into panels")
        if layout == .q8Panels {
            let first = firstOutput + range.lowerBound
            return LinearWeight(data: data + first / 16 * mesh_q8_panels_bytes(16, inFeatures), dtype: dtype,
                                outFeatures: range.count, inFeatures: inFeatures, layout: .q8Panels,
                                leadingDimension: 0, owner: owner, firstOutput: first % 16)
        }
        if let mxfp4Scales {
            return LinearWeight(data: data + range.lowerBound * leadingDimension, dtype: dtype, outFeatures: range.count,
                                inFeatures: inFeatures, layout: .outMajor, leadingDimension: leadingDimension, owner: owner,
                                mxfp4Scales: mxfp4Scales + range.lowerBound * mxfp4ScaleStride, mxfp4ScaleStride: mxfp4ScaleStride)
        }
        if let q8Scales {
            return LinearWeight(data: data + range.lowerBound * leadingDimension, dtype: dtype, outFeatures: range.count,
                                inFeatures: inFeatures, layout: .outMajor, leadingDimension: leadingDimension, owner: owner,
                                q8Scales: q8Scales + range.lowerBound * q8ScaleStride)
        }
        let offset = layout == .outMajor ? range.lowerBound * leadingDimension : range.lowerBound
        return LinearWeight(data: data + offset * dtype.byteSize, dtype: dtype, outFeatures: range.count,
                            inFeatures: inFeatures, layout: layout, leadingDimension: leadingDimension, owner: owner)
    }

    /// Input features `range` only (the columns of a down projection that one slice of the
    /// intermediate values feeds). Not for a Q8_0 weight: slice first, then quantise.
    public func inputs(_ range: Range<Int>) -> LinearWeight {
        precondition(!isQ8_0 && layout != .panels && range.lowerBound >= 0 && range.upperBound <= inFeatures,
                     "inputs \(range) of this weight")
        if let mxfp4Scales {
            precondition(range.lowerBound % 32 == 0 && range.count % 32 == 0, "MXFP4 inputs come in blocks of 32")
            return LinearWeight(data: data + range.lowerBound / 2, dtype: dtype, outFeatures: outFeatures,
                                inFeatures: range.count, layout: .outMajor, leadingDimension: leadingDimension, owner: owner,
                                mxfp4Scales: mxfp4Scales + range.lowerBound / 32, mxfp4ScaleStride: mxfp4ScaleStride)
        }
        let offset = layout == .outMajor ? range.lowerBound : range.lowerBound * leadingDimension
        return LinearWeight(data: data + offset * dtype.byteSize, dtype: dtype, outFeatures: outFeatures,
                            inFeatures: range.count, layout: layout, leadingDimension: leadingDimension, owner: owner)
    }

    /// Of an [out, in] weight (not quantised) whose outputs alternate two matrices, the one in
    /// outputs `first`, `first + 2`, …: a view that steps over every other row.
    public func everyOtherOutput(from first: Int) -> LinearWeight {
        precondition(layout == .outMajor && !isQ8_0 && outFeatures % 2 == 0, "every other output of this weight")
        if let mxfp4Scales {
            return LinearWeight(data: data + first * leadingDimension, dtype: dtype, outFeatures: outFeatures / 2,
                                inFeatures: inFeatures, layout: .outMajor, leadingDimension: 2 * leadingDimension, owner: owner,
                                mxfp4Scales: mxfp4Scales + first * mxfp4ScaleStride, mxfp4ScaleStride: 2 * mxfp4ScaleStride)
        }
        return LinearWeight(data: data + first * leadingDimension * dtype.byteSize, dtype: dtype, outFeatures: outFeatures / 2,
                            inFeatures: inFeatures, layout: .outMajor, leadingDimension: 2 * leadingDimension, owner: owner)
    }

    /// Bytes from `data` to the start of the last stored row, plus one: the range its rows lie in
    /// (pages to touch before first use).
    public var rowsByteSpan: Int {
        if layout == .panels { return mesh_bf16_panels_count(outFeatures, inFeatures) * 2 }
        if layout == .q8Panels { return mesh_q8_panels_bytes(firstOutput + outFeatures, inFeatures) }
        let rows = layout == .outMajor ? outFeatures : inFeatures
        let elementBytes = isMXFP4 || isQ8_0 ? 1 : dtype.byteSize   // their leading dimension counts bytes
        return (rows - 1) * leadingDimension * elementBytes + 1
    }

    /// Bytes a forward pass reads from this weight.
    public var byteCount: Int {
        if isMXFP4 { return outFeatures * inFeatures / 32 * 17 }
        if layout == .q8Panels { return mesh_q8_panels_bytes(firstOutput + outFeatures, inFeatures) }
        return isQ8_0 ? outFeatures * (inFeatures + 31) / 32 * 34 : outFeatures * inFeatures * dtype.byteSize
    }

    public var isQ8_0: Bool { q8Scales != nil || layout == .q8Panels }
    var q8ScaleStride: Int { mesh_q8_scale_stride(inFeatures) }

    /// Element (o, i) widened to f32 (reference kernels and tests).
    @inline(__always) public func element(_ o: Int, _ i: Int) -> Float {
        if let mxfp4Scales {
            return mesh_mxfp4_value(data.assumingMemoryBound(to: UInt8.self) + o * leadingDimension,
                                    mxfp4Scales + o * mxfp4ScaleStride, i)
        }
        if layout == .q8Panels {
            return Float(mesh_q8_panels_value(data, inFeatures, firstOutput + o, i))
                * f16ToFloat(mesh_q8_panels_scale(data, inFeatures, firstOutput + o, i))
        }
        if let q8Scales {
            let value = data.load(fromByteOffset: o * leadingDimension + i, as: Int8.self)
            return Float(value) * f16ToFloat(q8Scales[o * q8ScaleStride + i / 32])
        }
        let index: Int
        switch layout {
        case .outMajor: index = o * leadingDimension + i
        case .inMajor: index = i * leadingDimension + o
        case .panels: index = ((o / 32) * 16 * ((inFeatures + 31) / 32) + i / 2) * 64 + (o % 32) * 2 + i % 2
        case .q8Panels: preconditionFailure("handled above")
        }
        switch dtype {
        case .f32: return data.load(fromByteOffset: index * 4, as: Float.self)
        case .bf16: return bf16ToFloat(data.load(fromByteOffset: index * 2, as: UInt16.self))
        case .f16: return f16ToFloat(data.load(fromByteOffset: index * 2, as: UInt16.self))
        }
    }
}

/// Q8_0 copies of weights: int8 values (in huge-page memory, streamed at every step) and f16
/// scales, owned together.
final class Q8Storage {
    let valueMemory: HugePageMemory
    let scales: UnsafeMutablePointer<UInt16>
    var values: UnsafeMutablePointer<Int8> { valueMemory.pointer.assumingMemoryBound(to: Int8.self) }

    init(outFeatures: Int, inFeatures: Int) {
        valueMemory = HugePageMemory(byteCount: outFeatures * mesh_q8_row_bytes(inFeatures))
        scales = .allocate(capacity: outFeatures * mesh_q8_scale_stride(inFeatures))
    }

    deinit { scales.deallocate() }
}

extension LinearWeight {
    /// Whether this CPU runs the int8 kernels (AVX-512 F, BW, VL and VNNI).
    public static var q8Supported: Bool { mesh_q8_supported() == 1 }

    /// Whether Q8_0 copies made now go into panels: wherever the int8 kernels serve every row (not
    /// under AMX, whose tiles read the rows of prompt tokens). Panels read 16 rows of x at ~4x the
    /// speed of rows, and one row as fast.
    public static var q8PanelsByDefault: Bool { MatmulKernels.current != .amxBF16 }

    /// This weight quantised to Q8_0 (llama.cpp's q8_0 blocks: 32 values, one f16 scale), stored
    /// [out, in] whatever the source layout, in rows or in panels of 16 outputs. The source is read
    /// once, in parallel.
    public func quantizedQ8_0(panels: Bool = LinearWeight.q8PanelsByDefault) -> LinearWeight {
        if isQ8_0 || isMXFP4 { return self }   // MXFP4 is smaller than int8 already
        let storage = Q8Storage(outFeatures: outFeatures, inFeatures: inFeatures)
        Parallel.forRanges(outFeatures, minimumPerTask: 16) { range in
            mesh_quantize_q8_0(data, dtype.kernelCode, layout == .inMajor ? 1 : 0, inFeatures, leadingDimension,
                               range.lowerBound, range.upperBound, storage.values, storage.scales)
        }
        guard panels else {
            return LinearWeight(data: UnsafeRawPointer(storage.values), dtype: dtype, outFeatures: outFeatures,
                                inFeatures: inFeatures, layout: .outMajor,
                                leadingDimension: mesh_q8_row_bytes(inFeatures), owner: storage,
                                q8Scales: UnsafePointer(storage.scales))
        }
        let memory = HugePageMemory(byteCount: mesh_q8_panels_bytes(outFeatures, inFeatures))
        Parallel.forRanges((outFeatures + 15) / 16) { range in
            mesh_q8_panels_pack(storage.values, storage.scales, outFeatures, inFeatures, range.lowerBound,
                                range.upperBound, memory.pointer)
        }
        return LinearWeight(data: UnsafeRawPointer(memory.pointer), dtype: dtype, outFeatures: outFeatures,
                            inFeatures: inFeatures, layout: .q8Panels, leadingDimension: 0, owner: memory)
    }
}
