import Foundation

/// The resident set of this process (Linux /proc), for worker reports and tests.
public enum ProcessMemory {
    public static var residentBytes: UInt64 {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let kilobytes = line.split(separator: " ").compactMap { UInt64($0) }.first ?? 0
            return kilobytes * 1024
        }
        return 0
    }

    /// Touches one byte per page so a mapped range is resident before the first request.
    public static func prefault(_ pointer: UnsafeRawPointer, byteCount: Int) -> UInt64 {
        var sum: UInt64 = 0
        var offset = 0
        while offset < byteCount {
            sum &+= UInt64(pointer.load(fromByteOffset: offset, as: UInt8.self))
            offset += 4096
        }
        return sum
    }
}
