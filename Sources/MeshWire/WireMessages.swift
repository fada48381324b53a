import Foundation
import MeshModels
import MeshTensors

/// The protocol version of proto/expertmesh/v1 (PROTOCOL_VERSION_CURRENT).
public let wireProtocolVersion: UInt32 = 1

/// Swift forms of the messages in proto/expertmesh/v1/mesh.proto.
public struct Hello: Sendable, Equatable {
    public var protocolVersion: UInt32 = wireProtocolVersion
    public var modelFingerprint: String
    public var workerName: String
    public var capacityBytes: UInt64 = 0
    public var threads: UInt32 = 0
    public init(protocolVersion: UInt32 = wireProtocolVersion, modelFingerprint: String, workerName: String, capacityBytes: UInt64 = 0, threads: UInt32 = 0) {
        self.protocolVersion = protocolVersion
        self.modelFingerprint = modelFingerprint
        self.workerName = workerName
        self.capacityBytes = capacityBytes
        self.threads = threads
    }
}

public struct Assignment: Sendable, Equatable {
    public var protocolVersion: UInt32 = wireProtocolVersion
    public var experts: [ExpertKey]
    /// The dtype partial sums go back in (requests carry theirs in each frame).
    public var replyDType: DType
    public var modelFingerprint: String
    public var heartbeatIntervalMilliseconds: UInt32
    public init(experts: [ExpertKey], replyDType: DType, modelFingerprint: String, heartbeatIntervalMilliseconds: UInt32) {
        self.experts = experts
        self.replyDType = replyDType
        self.modelFingerprint = modelFingerprint
        self.heartbeatIntervalMilliseconds = heartbeatIntervalMilliseconds
    }
}

public struct Ready: Sendable, Equatable {
    public var experts: [ExpertKey]
    public var expertBytes: UInt64
    public var residentBytes: UInt64
    public var loadSeconds: Double
    public init(experts: [ExpertKey], expertBytes: UInt64, residentBytes: UInt64, loadSeconds: Double) {
        self.experts = experts
        self.expertBytes = expertBytes
        self.residentBytes = residentBytes
        self.loadSeconds = loadSeconds
    }
}

/// Header of an expert request; the activations [tokenCount, hiddenSize] travel as frame 0.
public struct ExpertRequestHeader: Sendable, Equatable {
    public var requestId: UInt64
    public var layer: UInt32
    public var tokenCount: UInt32
    public var hiddenSize: UInt32
    public var placement: RoutingWeightPlacement
    /// tokenCount + 1 offsets into expertIds/weights.
    public var routeOffsets: [UInt32]
    public var expertIds: [UInt32]
    public var weights: [Float]
    public init(requestId: UInt64, layer: UInt32, tokenCount: UInt32, hiddenSize: UInt32, placement: RoutingWeightPlacement,
                routeOffsets: [UInt32], expertIds: [UInt32], weights: [Float]) {
        self.requestId = requestId
        self.layer = layer
        self.tokenCount = tokenCount
        self.hiddenSize = hiddenSize
        self.placement = placement
        self.routeOffsets = routeOffsets
        self.expertIds = expertIds
        self.weights = weights
    }

    /// The routes of every token, after validation.
    public var routes: [TokenRoute] {
        (0..<Int(tokenCount)).map { t in
            let range = Int(routeOffsets[t])..<Int(routeOffsets[t + 1])
            return TokenRoute(experts: expertIds[range].map { Int($0) }, weights: Array(weights[range]))
        }
    }
}

public struct ExpertReplyHeader: Sendable, Equatable {
    public var requestId: UInt64
    public var layer: UInt32
    public var tokenCount: UInt32
    public var computeSeconds: Double
    public init(requestId: UInt64, layer: UInt32, tokenCount: UInt32, computeSeconds: Double) {
        self.requestId = requestId
        self.layer = layer
        self.tokenCount = tokenCount
        self.computeSeconds = computeSeconds
    }
}

public enum WireErrorCode: Int, Sendable {
    case unspecified = 0, versionMismatch, modelMismatch, malformed, unknownExpert, loadFailed, `internal`, notReady
}

public struct WireFailure: Sendable, Equatable {
    public var requestId: UInt64
    public var code: WireErrorCode
    public var message: String
    public init(requestId: UInt64 = 0, code: WireErrorCode, message: String) {
        self.requestId = requestId
        self.code = code
        self.message = message
    }
}

public struct WorkerStatus: Sendable, Equatable {
    public var workerName: String
    public var experts: [ExpertKey]
    public var requestsServed: UInt64
    public var tokensServed: UInt64
    public var residentBytes: UInt64
    public var busySeconds: Double
    public init(workerName: String, experts: [ExpertKey], requestsServed: UInt64, tokensServed: UInt64, residentBytes: UInt64, busySeconds: Double) {
        self.workerName = workerName
        self.experts = experts
        self.requestsServed = requestsServed
        self.tokensServed = tokensServed
        self.residentBytes = residentBytes
        self.busySeconds = busySeconds
    }
}

public enum WireBody: Sendable, Equatable {
    case hello(Hello)
    case assignment(Assignment)
    case ready(Ready)
    case expertRequest(ExpertRequestHeader)
    case expertReply(ExpertReplyHeader)
    case heartbeat(sentUnixMilliseconds: UInt64)
    case error(WireFailure)
    case goodbye(reason: String)
    case statusRequest
    case status(WorkerStatus)
}

/// A raw tensor frame and its description. `bytes` is the frame itself (received frames are
/// not copied; see ZMQSocket.receive).
public struct WireTensor: Sendable, Equatable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    public var bytes: Data
    public init(name: String, dtype: DType, shape: [Int], bytes: Data) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    /// Narrows an f32 matrix to the wire dtype.
    public init(name: String, matrix: Matrix, dtype: DType) {
        self.init(name: name, rows: matrix.rows, columns: matrix.columns, dtype: dtype) { UnsafePointer(matrix.row($0)) }
    }

    /// Narrows `rows` rows of `columns` f32 values (row r read from `row(r)`) straight into the
    /// frame: a gather and a dtype conversion in one pass.
    public init(name: String, rows: Int, columns: Int, dtype: DType, row: (Int) -> UnsafePointer<Float>) {
        var bytes = Data(count: rows * columns * dtype.byteSize)
        bytes.withUnsafeMutableBytes { raw in
            for r in 0..<rows {
                convertFromFloat(row(r), count: columns, to: dtype, into: raw.baseAddress! + r * columns * dtype.byteSize)
            }
        }
        self.init(name: name, dtype: dtype, shape: [rows, columns], bytes: bytes)
    }

    /// Widens a 2-D frame to an f32 matrix.
    public func matrix() -> Matrix {
        let result = Matrix(rows: shape[0], columns: shape.count > 1 ? shape[1] : 1)
        bytes.withUnsafeBytes { convertToFloat($0.baseAddress!, dtype: dtype, count: result.count, into: result.data) }
        return result
    }

    /// Row `r` of a 2-D frame widened into `destination`.
    public func widenRow(_ r: Int, into destination: UnsafeMutablePointer<Float>) {
        let columns = shape.count > 1 ? shape[1] : 1
        bytes.withUnsafeBytes { convertToFloat($0.baseAddress! + r * columns * dtype.byteSize, dtype: dtype, count: columns, into: destination) }
    }
}

public struct WireMessage: Sendable, Equatable {
    public var body: WireBody
    public var tensors: [WireTensor]
    public init(_ body: WireBody, tensors: [WireTensor] = []) {
        self.body = body
        self.tensors = tensors
    }
}
