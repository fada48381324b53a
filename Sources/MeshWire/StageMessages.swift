import Foundation
import MeshModels
import MeshTensors

/// Swift forms of the pipeline-stage messages of proto/expertmesh/v1/mesh.proto.
public struct StageHello: Sendable, Equatable {
    public var protocolVersion: UInt32 = wireProtocolVersion
    public var modelFingerprint: String
    /// K and N of `--stage K/N`.
    public var stage: UInt32
    public var stageCount: UInt32
    public var name: String
    public init(modelFingerprint: String, stage: UInt32, stageCount: UInt32, name: String) {
        self.modelFingerprint = modelFingerprint
        self.stage = stage
        self.stageCount = stageCount
        self.name = name
    }
}

public struct StageAssignment: Sendable, Equatable {
    public var protocolVersion: UInt32 = wireProtocolVersion
    public var layers: Range<Int>
    public var kvCacheBlocks: Int
    public var heartbeatIntervalMilliseconds: UInt32
    public init(layers: Range<Int>, kvCacheBlocks: Int, heartbeatIntervalMilliseconds: UInt32) {
        self.layers = layers
        self.kvCacheBlocks = kvCacheBlocks
        self.heartbeatIntervalMilliseconds = heartbeatIntervalMilliseconds
    }
}

public struct StageReady: Sendable, Equatable {
    public var workers: UInt32
    public var startSeconds: Double
    public init(workers: UInt32, startSeconds: Double) {
        self.workers = workers
        self.startSeconds = startSeconds
    }
}

/// A micro-batch's rows for a later stage: per sequence, its rows, positions and block tables
/// (the tokens stay with stage 0; the hidden states travel as frame 0).
public struct StageForwardHeader: Sendable, Equatable {
    public struct Segment: Sendable, Equatable {
        public var rows: UInt32
        public var start: UInt32
        public var promptLength: UInt32
        public var blockTables: [[UInt32]]
        public init(rows: UInt32, start: UInt32, promptLength: UInt32, blockTables: [[UInt32]]) {
            self.rows = rows
            self.start = start
            self.promptLength = promptLength
            self.blockTables = blockTables
        }
    }

    public var requestId: UInt64
    public var segments: [Segment]
    public init(requestId: UInt64, segments: [Segment]) {
        self.requestId = requestId
        self.segments = segments
    }

    public init(requestId: UInt64, batch: ForwardBatch) {
        self.init(requestId: requestId, segments: batch.segments.map { segment in
            Segment(rows: UInt32(segment.rows.count), start: UInt32(segment.start), promptLength: UInt32(segment.promptLength),
                    blockTables: segment.blockTables.map { $0.map { UInt32($0) } })
        })
    }

    public var rowCount: Int { segments.reduce(0) { $0 + Int($1.rows) } }
}

public struct StageReplyHeader: Sendable, Equatable {
    public var requestId: UInt64
    public var computeSeconds: Double
    public init(requestId: UInt64, computeSeconds: Double) {
        self.requestId = requestId
        self.computeSeconds = computeSeconds
    }
}

extension StageForwardHeader {
    /// The micro-batch a later stage runs, checked against its model and KV cache before any data
    /// is used: the hidden states [rows, H] (frame 0, f32) and the batch (no tokens: they stay
    /// with stage 0). Throws a `WireError` saying what is wrong.
    public func validated(_ tensors: [WireTensor], spec: ModelSpec, kvCacheBlocks: Int) throws -> (ForwardBatch, Matrix) {
        let rows = rowCount
        guard tensors.count == 1, tensors[0].name == "hidden", tensors[0].dtype == .f32 else {
            throw WireError(.malformed, "stage request \(requestId): expected one f32 'hidden' frame, got "
                            + "\(tensors.map { "\($0.name) \($0.dtype.displayName)" })")
        }
        guard rows > 0, tensors[0].shape == [rows, spec.hiddenSize] else {
            throw WireError(.malformed, "stage request \(requestId): 'hidden' has shape \(tensors[0].shape); its segments "
                            + "say [\(rows), \(spec.hiddenSize)]")
        }
        if let index = tensors[0].firstNonFinite {
            throw WireError(.malformed, "stage request \(requestId): NaN or infinite hidden value at row "
                            + "\(index / spec.hiddenSize)")
        }
        var batch = ForwardBatch()
        for (index, segment) in segments.enumerated() {
            let end = Int(segment.start) + Int(segment.rows)
            guard segment.rows > 0, segment.blockTables.count == spec.cacheGroups.count else {
                throw WireError(.malformed, "stage request \(requestId) segment \(index): \(segment.rows) rows and "
                                + "\(segment.blockTables.count) block tables; expected rows and one table per KV cache "
                                + "group (\(spec.cacheGroups.count))")
            }
            let needed = (end - 1) / PagedKVCache.blockSize + 1
            for table in segment.blockTables {
                guard table.count >= needed, table.allSatisfy({ Int($0) < kvCacheBlocks }) else {
                    throw WireError(.malformed, "stage request \(requestId) segment \(index): a block table of "
                                    + "\(table.count) blocks for positions up to \(end) (needs \(needed), each below "
                                    + "\(kvCacheBlocks))")
                }
            }
            batch.append(ArraySlice(repeating: 0, count: Int(segment.rows)), start: Int(segment.start),
                         blockTables: segment.blockTables.map { $0.map(Int.init) }, promptLength: Int(segment.promptLength))
        }
        return (batch, tensors[0].matrix())
    }
}
