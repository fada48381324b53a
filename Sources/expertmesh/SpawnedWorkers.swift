import Foundation
import Logging

/// `coordinator --spawn-workers N`: N worker processes of this same binary on this machine, for
/// one-machine trials. They write their logs to the coordinator's stderr, end when it stops, and
/// end on their own (`--exit-with-parent`) if it is killed outright.
final class SpawnedWorkers {
    private var processes: [Process] = []
    private let logger: Logger

    /// Starts workers named `local-1` … `local-N` connecting to `endpoint` (as the coordinator bound it).
    init(count: Int, endpoint: String, model: URL, arguments: [String], logger: Logger) throws {
        self.logger = logger
        let binary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        let coordinator = Self.localEndpoint(endpoint)
        for index in 1...count {
            let process = Process()
            process.executableURL = binary
            process.arguments = ["worker", "--coordinator", coordinator, "--model", model.path, "--name", "local-\(index)",
                                 "--exit-with-parent"] + arguments
            do {
                try process.run()
            } catch {
                stop()
                throw CommandError("could not start worker local-\(index) from \(binary.path): \(error)")
            }
            processes.append(process)
        }
        let message = "started \(count) local worker processes (pids \(processes.map { String($0.processIdentifier) }.joined(separator: ", "))) "
            + "connecting to \(coordinator)"
        logger.info("\(message)")
    }

    /// Where a worker on this machine reaches a coordinator bound to `endpoint`: a wildcard
    /// address (`*`, `0.0.0.0`, `[::]`) becomes loopback; anything else is used as it is.
    static func localEndpoint(_ endpoint: String) -> String {
        for (wildcard, loopback) in [("tcp://*:", "tcp://127.0.0.1:"), ("tcp://0.0.0.0:", "tcp://127.0.0.1:"),
                                     ("tcp://[::]:", "tcp://[::1]:")] where endpoint.hasPrefix(wildcard) {
            return loopback + endpoint.dropFirst(wildcard.count)
        }
        return endpoint
    }

    /// SIGTERM to every worker, then SIGKILL to any still running after `timeout` seconds.
    func stop(timeout: Double = 10) {
        let running = processes.filter(\.isRunning)
        guard !running.isEmpty else { return }
        running.forEach { kill($0.processIdentifier, SIGTERM) }
        let deadline = Date().addingTimeInterval(timeout)
        while running.contains(where: \.isRunning), Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        for process in running where process.isRunning {
            logger.warning("worker pid \(process.processIdentifier) did not stop within \(Int(timeout)) s; killing it")
            kill(process.processIdentifier, SIGKILL)
        }
        running.forEach { $0.waitUntilExit() }
        logger.info("stopped \(running.count) local worker processes")
    }

    deinit { stop() }
}
