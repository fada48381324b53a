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

/// Σ bf16(w[i])·x[i], widening bf16 lanes with a shift as they stream in.
@inline(__always) func dotBF16(_ w: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc0 = SIMD16<Float>(), acc1 = SIMD16<Float>()
    var i = 0
    let rx = UnsafeRawPointer(x)
    while i + 32 <= n {
        let h0 = w.loadUnaligned(fromByteOffset: i * 2, as: SIMD16<UInt16>.self)
        let h1 = w.loadUnaligned(fromByteOffset: i * 2 + 32, as: SIMD16<UInt16>.self)
        let w0 = unsafeBitCast(SIMD16<UInt32>(truncatingIfNeeded: h0) &<< 16, to: SIMD16<Float>.self)
        let w1 = unsafeBitCast(SIMD16<UInt32>(truncatingIfNeeded: h1) &<< 16, to: SIMD16<Float>.self)
        acc0.addProduct(w0, rx.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self))
        acc1.addProduct(w1, rx.loadUnaligned(fromByteOffset: i * 4 + 64, as: SIMD16<Float>.self))
        i += 32
    }
    var sum = (acc0 + acc1).sum()
    let halfs = w.assumingMemoryBound(to: UInt16.self)
    while i < n { sum += bf16ToFloat(halfs[i]) * x[i]; i += 1 }
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
