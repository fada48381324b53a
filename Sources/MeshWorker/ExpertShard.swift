import Foundation
import MeshModels
import MeshTensors
import MeshWire

/// The experts one worker holds, and the expert computation on them.
public final class ExpertShard {
    public let model: LoadedModel
    public let experts: [ExpertKey: MLPWeights]
    public let keys: [ExpertKey]
    /// Counters written by the compute thread and read for status reports.
    public struct Counters: Sendable {
        public var requestsServed: UInt64 = 0
        public var tokensServed: UInt64 = 0
        public var busySeconds: Double = 0
    }
    private var counts = Counters()
    private let lock = NSLock()

    public var counters: Counters {
        lock.lock(); defer { lock.unlock() }
        return counts
    }

    /// Loads `keys` from the worker's local model copy. Only the pages of these experts are read
    /// (the checkpoint is memory-mapped); they are copied (`file`: huge-page memory; `int8`:
    /// quantised), or touched now (`mapped`) so the first request is not slow. Experts `previous` holds
    /// already are kept as they are (a new assignment that adds experts loads only those).
    public init(model: LoadedModel, keys: [ExpertKey], format: WeightFormat = .file, keeping previous: ExpertShard? = nil) throws {
        self.model = model
        self.keys = keys.sorted()
        let fresh = keys.filter { previous?.experts[$0] == nil }
        var experts = try model.loadExperts(fresh, format: format)
        for key in keys where experts[key] == nil { experts[key] = previous?.experts[key] }
        self.experts = experts
        var sink: UInt64 = 0
        for weights in fresh.compactMap({ experts[$0] }) {
            for matrix in [weights.gate, weights.up, weights.down] where !matrix.isQ8_0 {
                sink &+= ProcessMemory.prefault(matrix.data, byteCount: matrix.rowsByteSpan)
            }
        }
        if sink == 1 { print("", terminator: "") }   // keeps the page touches
    }

    public var expertBytes: UInt64 { UInt64(experts.values.reduce(0) { $0 + $1.byteCount }) }

    /// Validates and computes one request; returns the reply message (an error reply if invalid).
    public func serve(_ header: ExpertRequestHeader, tensors: [WireTensor], replyDType: DType) -> WireMessage {
        let clock = ContinuousClock()
        let start = clock.now
        do {
            let activations = try header.validatedActivations(tensors, hiddenSize: model.spec.hiddenSize) { experts[$0] != nil }
            let request = ExpertRequest(layer: Int(header.layer), input: activations, routes: header.routes, placement: header.placement,
                                        generated: header.generatedRows)
            let partial = try ExpertCompute.run(request) { experts[ExpertKey(layer: Int(header.layer), expert: $0)] }
            let seconds = (clock.now - start).seconds
            lock.lock()
            counts.requestsServed += 1
            counts.tokensServed += UInt64(header.tokenCount)
            counts.busySeconds += seconds
            lock.unlock()
            return WireMessage(.expertReply(ExpertReplyHeader(requestId: header.requestId, layer: header.layer,
                                                              tokenCount: header.tokenCount, computeSeconds: seconds)),
                               tensors: [WireTensor(name: "partial", matrix: partial, dtype: replyDType)])
        } catch let error as WireError {
            return WireMessage(.error(WireFailure(requestId: header.requestId, code: error.code, message: error.description)))
        } catch {
            return WireMessage(.error(WireFailure(requestId: header.requestId, code: .internal, message: "\(error)")))
        }
    }
}
