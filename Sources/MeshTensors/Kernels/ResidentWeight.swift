import CKernels

/// Copies of weights in anonymous huge-page memory (`HugePageMemory`): what decode streams at
/// every step, read faster there than from the checkpoint's mapped page-cache pages.
extension LinearWeight {
    /// This weight's stored rows copied, packed (the leading dimension becomes the row width, so
    /// a view of every other row or of some outputs becomes a plain matrix), into huge-page
    /// memory, in parallel. The source pages leave this process's resident set when they belong
    /// to a mapped file. Q8_0 weights are copies already and come back as they are.
    ///
    /// Under AVX-512 BF16 without AMX (the variant in use when it is copied), a bf16 [out, in]
    /// weight is packed into panels instead (`Layout.panels`): every row, prompt or generated,
    /// then streams it once with broadcast activations, where dot products read 3-16 rows at
    /// 10-14 GB/s and the panels 25-32 GB/s (one thread, measured on AMD Zen 5).
    public func residentCopy() -> LinearWeight {
        if isQ8_0 { return self }
        if packsIntoPanels { return packedIntoPanels() }
        let storedRows = layout == .outMajor ? outFeatures : inFeatures
        // Bytes of one stored row and the stride between them (MXFP4 strides count bytes).
        let rowBytes = isMXFP4 ? inFeatures / 2 : (layout == .outMajor ? inFeatures : outFeatures) * dtype.byteSize
        let strideBytes = isMXFP4 ? leadingDimension : leadingDimension * dtype.byteSize
        let scaleBytes = isMXFP4 ? inFeatures / 32 : 0
        let memory = HugePageMemory(byteCount: storedRows * (rowBytes + scaleBytes))
        let (source, target) = (data, memory.pointer)
        let scales = target + storedRows * rowBytes
        Parallel.forRanges(storedRows, minimumPerTask: max(1, (1 << 16) / max(1, rowBytes))) { range in
            for row in range {
                (target + row * rowBytes).copyMemory(from: source + row * strideBytes, byteCount: rowBytes)
                if let mxfp4Scales {
                    (scales + row * scaleBytes).copyMemory(from: mxfp4Scales + row * mxfp4ScaleStride, byteCount: scaleBytes)
                }
            }
        }
        if let file = owner as? MappedFile {
            file.releasePages(data, byteCount: (storedRows - 1) * strideBytes + rowBytes)
            if let mxfp4Scales { file.releasePages(mxfp4Scales, byteCount: (storedRows - 1) * mxfp4ScaleStride + scaleBytes) }
        }
        let leading = isMXFP4 ? rowBytes : rowBytes / dtype.byteSize
        return LinearWeight(data: UnsafeRawPointer(target), dtype: dtype, outFeatures: outFeatures, inFeatures: inFeatures,
                            layout: layout, leadingDimension: leading, owner: memory,
                            mxfp4Scales: isMXFP4 ? UnsafePointer(scales.assumingMemoryBound(to: UInt8.self)) : nil,
                            mxfp4ScaleStride: scaleBytes)
    }

    /// Whether a copy of this weight is packed into panels: bf16 [out, in] under AVX-512 BF16 without AMX.
    var packsIntoPanels: Bool { takesBF16DotProducts && MatmulKernels.current == .avx512BF16 }

    /// This bf16 [out, in] weight packed into panels of 32 outputs, in parallel.
    func packedIntoPanels() -> LinearWeight {
        let memory = HugePageMemory(byteCount: mesh_bf16_panels_count(outFeatures, inFeatures) * 2)
        let (source, target) = (data.assumingMemoryBound(to: UInt16.self), memory.pointer.assumingMemoryBound(to: UInt16.self))
        Parallel.forRanges((outFeatures + 31) / 32) { blocks in
            mesh_bf16_panels_pack(source, leadingDimension, outFeatures, inFeatures, blocks.lowerBound, blocks.upperBound, target)
        }
        if let file = owner as? MappedFile { file.releasePages(data, byteCount: (outFeatures - 1) * leadingDimension * 2 + inFeatures * 2) }
        return LinearWeight(data: UnsafeRawPointer(target), dtype: dtype, outFeatures: outFeatures, inFeatures: inFeatures,
                            layout: .panels, leadingDimension: inFeatures, owner: memory)
    }
}
