/// Element types a checkpoint or a wire frame may hold.
/// Weights keep their file dtype in memory; kernels widen to f32 as they read.
public enum DType: String, Sendable, CaseIterable, Codable {
    case f32 = "F32"
    case bf16 = "BF16"
    case f16 = "F16"

    public var byteSize: Int {
        switch self {
        case .f32: return 4
        case .bf16, .f16: return 2
        }
    }

    /// Parses the names used by safetensors ("BF16") and by users ("bf16", "float32").
    public init?(name: String) {
        switch name.lowercased() {
        case "f32", "float32", "float": self = .f32
        case "bf16", "bfloat16": self = .bf16
        case "f16", "float16", "half": self = .f16
        default: return nil
        }
    }

    public var displayName: String { rawValue.lowercased() }
}

/// bf16 is the top half of an IEEE f32: widening is a shift.
@inline(__always) public func bf16ToFloat(_ bits: UInt16) -> Float {
    Float(bitPattern: UInt32(bits) << 16)
}

/// Round-to-nearest-even narrowing, as torch does (NaN stays NaN).
@inline(__always) public func floatToBF16(_ value: Float) -> UInt16 {
    let bits = value.bitPattern
    if value.isNaN { return UInt16(truncatingIfNeeded: (bits >> 16) | 0x40) }
    let rounding = ((bits >> 16) & 1) &+ 0x7FFF
    return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
}

@inline(__always) public func f16ToFloat(_ bits: UInt16) -> Float {
    Float(Float16(bitPattern: bits))
}

@inline(__always) public func floatToF16(_ value: Float) -> UInt16 {
    Float16(value).bitPattern
}

/// Widens `count` elements of `dtype` at `source` into f32 `destination`.
public func convertToFloat(_ source: UnsafeRawPointer, dtype: DType, count: Int, into destination: UnsafeMutablePointer<Float>) {
    switch dtype {
    case .f32:
        destination.update(from: source.assumingMemoryBound(to: Float.self), count: count)
    case .bf16:
        // A plain loop: the compiler vectorises it (zero-extend, shift); generic SIMD
        // conversions are not specialised and run far slower.
        let halfs = source.assumingMemoryBound(to: UInt16.self)
        for i in 0..<count { destination[i] = Float(bitPattern: UInt32(halfs[i]) << 16) }
    case .f16:
        let halfs = source.assumingMemoryBound(to: Float16.self)
        for i in 0..<count { destination[i] = Float(halfs[i]) }
    }
}

/// Narrows f32 values into `dtype` bytes (used for the wire and for writing checkpoints).
public func convertFromFloat(_ source: UnsafePointer<Float>, count: Int, to dtype: DType, into destination: UnsafeMutableRawPointer) {
    switch dtype {
    case .f32:
        destination.copyMemory(from: source, byteCount: count * 4)
    case .bf16:
        let out = destination.assumingMemoryBound(to: UInt16.self)
        for i in 0..<count { out[i] = floatToBF16(source[i]) }
    case .f16:
        let out = destination.assumingMemoryBound(to: UInt16.self)
        for i in 0..<count { out[i] = floatToF16(source[i]) }
    }
}
