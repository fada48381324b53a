import Foundation

/// Times the threads of some processes blocked and were woken again (Linux's voluntary context
/// switches, summed over /proc/PID/task/*/status): the hand-offs an exchange costs on each side.
struct ThreadWakeups {
    let processes: [Int32]
    private(set) var start: [Int]

    init(_ processes: [Int32]) {
        self.processes = processes
        start = processes.map(Self.count)
    }

    /// Wake-ups of each process since `init` or the last `restart`, per `rounds` (a thread that
    /// ended meanwhile takes its count with it: never below 0).
    func perRound(_ rounds: Int) -> [Double] {
        zip(processes, start).map { Double(max(0, Self.count($0) - $1)) / Double(max(1, rounds)) }
    }

    mutating func restart() { start = processes.map(Self.count) }

    static func count(_ pid: Int32) -> Int {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.reduce(0) { total, task in
            let status = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/status", encoding: .utf8)) ?? ""
            let line = status.split(separator: "\n").first { $0.hasPrefix("voluntary_ctxt_switches:") }
            return total + (line.flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0)
        }
    }
}
