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
