import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Replaces a file's contents all at once: a crash mid-write leaves the old file whole.
/// (Foundation's `.atomic` on Linux stages the bytes in a `/tmp/TemporaryDirectory.*` folder that it
/// never removes: one stray folder a write for a process that saves every few minutes.)
public enum AtomicFile {
    /// Writes `data` to a temporary file beside `url`, flushes it to disk, then renames it over `url`.
    public static func write(_ data: Data, to url: URL) throws {
        let staging = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).\(getpid()).\(UUID().uuidString.prefix(8)).tmp")
        guard FileManager.default.createFile(atPath: staging.path, contents: nil),
              let handle = FileHandle(forWritingAtPath: staging.path) else {
            throw TensorError.io("cannot create \(staging.path): check the directory exists and is writable")
        }
        do {
            try handle.write(contentsOf: data)
            try handle.synchronize()
            try handle.close()
            guard rename(staging.path, url.path) == 0 else {
                throw TensorError.io("cannot replace \(url.path): \(String(cString: strerror(errno)))")
            }
        } catch {
            try? FileManager.default.removeItem(at: staging)
            throw error
        }
    }
}
