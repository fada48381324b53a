import Foundation
import MeshTensors
import MeshTransport
import MeshWire

/// Runs expert requests on a dedicated thread, in arrival order, so the socket thread keeps
/// sending heartbeats and answering status while a large batch computes. Replies come back
/// to the socket thread through an inproc PAIR socket (`replies`), which it polls beside
/// its DEALER.
final class ComputeLane: @unchecked Sendable {
    struct Job {
        let shard: ExpertShard
        let header: ExpertRequestHeader
        let tensors: [WireTensor]
        let replyDType: DType
    }

    /// The socket thread's end: encoded reply messages arrive here.
    let replies: ZMQSocket
    private let endpoint: String
    private let context: ZMQContext
    private var jobs: [Job] = []
    private let lock = NSLock()
    private let available = DispatchSemaphore(value: 0)
    private var stopped = false
    private let finished = DispatchSemaphore(value: 0)

    init(context: ZMQContext) throws {
        self.context = context
        endpoint = "inproc://expert-compute-\(UUID().uuidString)"
        replies = try ZMQSocket(context: context, kind: .pair)
        try replies.bind(endpoint)
        let thread = Thread { [self] in work() }
        thread.name = "expert-compute"
        thread.start()
    }

    func submit(_ job: Job) {
        lock.lock(); jobs.append(job); lock.unlock()
        available.signal()
    }

    /// Finishes the job in progress, drops queued ones and ends the thread.
    func stop() {
        lock.lock(); stopped = true; jobs.removeAll(); lock.unlock()
        available.signal()
        finished.wait()
        replies.close()
    }

    private func work() {
        defer { finished.signal() }
        guard let sender = try? ZMQSocket(context: context, kind: .pair), (try? sender.connect(endpoint)) != nil else { return }
        defer { sender.close() }
        while true {
            available.wait()
            lock.lock()
            if stopped { lock.unlock(); return }
            let job = jobs.isEmpty ? nil : jobs.removeFirst()
            lock.unlock()
            guard let job else { continue }
            let reply = job.shard.serve(job.header, tensors: job.tensors, replyDType: job.replyDType)
            try? sender.send(WireCodec.encode(reply))
            Parallel.rest()   // as after an inline request (Worker): the next is a round trip away
        }
    }
}
