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

    deinit {
        if isMapped {
            munmap(UnsafeMutableRawPointer(mutating: base), byteCount)
        } else {
            UnsafeMutableRawPointer(mutating: base).deallocate()
        }
    }
}
