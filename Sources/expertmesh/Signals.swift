import Dispatch
import Foundation

/// SIGINT/SIGTERM set a flag that service loops poll, so they can say goodbye and close cleanly.
final class StopSignal: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    private let lock = NSLock()
    private var stopped = false

    init() {
        for number in [SIGINT, SIGTERM] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [self] in
                lock.lock(); stopped = true; lock.unlock()
            }
            source.resume()
            sources.append(source)
        }
    }

    var isStopped: Bool {
        lock.lock(); defer { lock.unlock() }
        return stopped
    }
}

/// Timestamped log lines on stderr (the executable owns logging; libraries get this closure).
func logLine(_ component: String) -> @Sendable (String) -> Void {
    { message in
        let time = ISO8601DateFormatter().string(from: Date())
        FileHandle.standardError.write(Data("\(time) [\(component)] \(message)\n".utf8))
    }
}

/// SIGHUP runs a handler (the coordinator re-reads its authorized keys).
enum ReloadSignal {
    nonisolated(unsafe) private static var sources: [DispatchSourceSignal] = []

    static func onHangup(_ handler: @escaping @Sendable () -> Void) {
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        source.setEventHandler(handler: handler)
        source.resume()
        sources.append(source)
    }
}
