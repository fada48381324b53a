#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory mapping of a whole file. Pages are loaded on first touch, so a
/// process that reads only some tensors only pays (in RSS) for those.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let byteCount: Int
    public let base: UnsafeRawPointer

    public init(path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw TensorError.io("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw TensorError.io("cannot stat \(path): \(String(cString: strerror(errno)))")
        }
        self.path = path
        self.byteCount = Int(info.st_size)
        if byteCount == 0 {
            // mmap refuses empty files; an empty file is simply truncated.
            base = UnsafeRawPointer(UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 16))
            isMapped = false
            return
        }
        guard let mapped = mmap(nil, byteCount, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else {
            throw TensorError.io("cannot map \(path): \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(mapped)
        isMapped = true
    }

    private let isMapped: Bool

    /// Drops this process's mapping of the pages holding `pointer ..< pointer + byteCount` (part of
    /// this file) once their contents were copied elsewhere: they leave the resident set while the
    /// page cache keeps them, and a later read maps them again from the file (the mapping is private
    /// and never written), so pages shared with neighbouring tensors are safe to drop.
    public func releasePages(_ pointer: UnsafeRawPointer, byteCount: Int) {
        #if os(Linux)
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let (mapStart, mapEnd) = (Int(bitPattern: base), Int(bitPattern: base) + self.byteCount)
        let start = max(mapStart, Int(bitPattern: pointer) / page * page)
        let end = min(mapEnd, (Int(bitPattern: pointer) + byteCount + page - 1) / page * page)
        guard isMapped, byteCount > 0, start < end, let first = UnsafeMutableRawPointer(bitPattern: start) else { return }
        _ = madvise(first, end - start, Int32(MADV_DONTNEED))
        #endif
    }

    deinit {
        if isMapped {
            munmap(UnsafeMutableRawPointer(mutating: base), byteCount)
        } else {
            UnsafeMutableRawPointer(mutating: base).deallocate()
        }
    }
}
