/// Small SIMD building blocks shared by the kernels.

/// Σ a[i]·b[i] over f32.
@inline(__always) public func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc0 = SIMD16<Float>(), acc1 = SIMD16<Float>()
    var i = 0
    let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
    while i + 32 <= n {
        acc0.addProduct(ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self), rb.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self))
        acc1.addProduct(ra.loadUnaligned(fromByteOffset: i * 4 + 64, as: SIMD16<Float>.self), rb.loadUnaligned(fromByteOffset: i * 4 + 64, as: SIMD16<Float>.self))
        i += 32
    }
    var sum = (acc0 + acc1).sum()
    while i < n { sum += a[i] * b[i]; i += 1 }
    return sum
}

/// Σ bf16(w[i])·x[i] with x given deinterleaved (xEven[j] = x[2j], xOdd[j] = x[2j+1]).
/// Each 32-bit lane of the weights holds an (even, odd) pair of bf16 values: shifting left by
/// 16 gives the even one as f32, masking the low half gives the odd one, so widening costs two
/// bitwise operations and no shuffles.
@inline(__always) func dotBF16(_ w: UnsafeRawPointer, even xEven: UnsafePointer<Float>, odd xOdd: UnsafePointer<Float>, _ n: Int) -> Float {
    var accE0 = SIMD8<Float>(), accO0 = SIMD8<Float>(), accE1 = SIMD8<Float>(), accO1 = SIMD8<Float>()
    let mask = SIMD8<UInt32>(repeating: 0xFFFF_0000)
    let pairs = n / 2
    let re = UnsafeRawPointer(xEven), ro = UnsafeRawPointer(xOdd)
    var j = 0
    while j + 16 <= pairs {
        let v0 = w.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<UInt32>.self)
        let v1 = w.loadUnaligned(fromByteOffset: j * 4 + 32, as: SIMD8<UInt32>.self)
        accE0.addProduct(unsafeBitCast(v0 &<< 16, to: SIMD8<Float>.self), re.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self))
        accO0.addProduct(unsafeBitCast(v0 & mask, to: SIMD8<Float>.self), ro.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self))
        accE1.addProduct(unsafeBitCast(v1 &<< 16, to: SIMD8<Float>.self), re.loadUnaligned(fromByteOffset: j * 4 + 32, as: SIMD8<Float>.self))
        accO1.addProduct(unsafeBitCast(v1 & mask, to: SIMD8<Float>.self), ro.loadUnaligned(fromByteOffset: j * 4 + 32, as: SIMD8<Float>.self))
        j += 16
    }
    var sum = (accE0 + accO0 + accE1 + accO1).sum()
    let halfs = w.assumingMemoryBound(to: UInt16.self)
    for i in (2 * j)..<n {
        sum += bf16ToFloat(halfs[i]) * (i % 2 == 0 ? xEven[i / 2] : xOdd[i / 2])
    }
    return sum
}

/// y[i] += a · x[i].
@inline(__always) public func axpy(_ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    var i = 0
    let scale = SIMD16<Float>(repeating: a)
    let rx = UnsafeRawPointer(x), ry = UnsafeMutableRawPointer(y)
    while i + 16 <= n {
        var v = ry.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
        v.addProduct(scale, rx.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self))
        ry.storeBytes(of: v, toByteOffset: i * 4, as: SIMD16<Float>.self)
        i += 16
    }
    while i < n { y[i] += a * x[i]; i += 1 }
}
