import ExpertMeshProtoC
import Foundation
import MeshModels
import MeshTensors

extension WireCodec {
    /// Decodes [header, frames…], checking the frame count and each frame's dtype, shape and byte
    /// length against the header before any tensor data is used.
    public static func decode(_ parts: [Data]) throws -> WireMessage {
        guard let header = parts.first else { throw WireError(.malformed, "empty message: expected a protobuf header frame") }
        let unpacked = header.withUnsafeBytes { raw in
            expertmesh__v1__envelope__unpack(nil, raw.count, raw.baseAddress?.assumingMemoryBound(to: UInt8.self))
        }
        guard let envelope = unpacked else {
            throw WireError(.malformed, "header frame (\(header.count) bytes) is not a valid expertmesh.v1.Envelope")
        }
        defer { expertmesh__v1__envelope__free_unpacked(envelope, nil) }
        let declared = Int(envelope.pointee.n_frames)
        guard declared == parts.count - 1 else {
            throw WireError(.malformed, "header describes \(declared) tensor frame(s) but \(parts.count - 1) followed")
        }
        var tensors: [WireTensor] = []
        for index in 0..<declared {
            guard let frame = envelope.pointee.frames[index]?.pointee else { throw WireError(.malformed, "frame \(index) has no description") }
            let name = frame.name.map { String(cString: $0) } ?? ""
            guard let dtype = dtype(frame.dtype) else {
                throw WireError(.malformed, "frame '\(name)' has unsupported dtype \(frame.dtype.rawValue); supported: f32, bf16, f16")
            }
            let shape = (0..<frame.n_shape).map { Int(clamping: frame.shape[$0]) }
            let (elements, overflow) = shape.reduce((1, false)) { acc, dim in
                let (product, o) = acc.0.multipliedReportingOverflow(by: dim)
                return (product, acc.1 || o)
            }
            let actual = parts[index + 1].count
            guard !overflow, UInt64(actual) == frame.byte_length, elements * dtype.byteSize == actual else {
                throw WireError(.malformed, "frame '\(name)': header says \(frame.byte_length) bytes of \(dtype.displayName) shape \(shape), frame has \(actual) bytes")
            }
            tensors.append(WireTensor(name: name, dtype: dtype, shape: shape, bytes: parts[index + 1]))
        }
        return WireMessage(try body(envelope.pointee), tensors: tensors)
    }

    private static func keys(_ count: Int, _ ids: UnsafeMutablePointer<UnsafeMutablePointer<Expertmesh__V1__ExpertId>?>?) -> [ExpertKey] {
        (0..<count).compactMap { i in ids?[i].map { ExpertKey(layer: Int($0.pointee.layer), expert: Int($0.pointee.expert)) } }
    }

    private static func string(_ pointer: UnsafeMutablePointer<CChar>?) -> String {
        pointer.map { String(cString: $0) } ?? ""
    }

    private static func array<T>(_ count: Int, _ pointer: UnsafeMutablePointer<T>?) -> [T] {
        guard let pointer, count > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: pointer, count: count))
    }

    private static func body(_ e: Expertmesh__V1__Envelope) throws -> WireBody {
        switch e.body_case {
        case EXPERTMESH__V1__ENVELOPE__BODY_HELLO:
            let m = e.hello.pointee
            return .hello(Hello(protocolVersion: m.protocol_version, modelFingerprint: string(m.model_fingerprint),
                                workerName: string(m.worker_name), capacityBytes: m.capacity_bytes, threads: m.threads))
        case EXPERTMESH__V1__ENVELOPE__BODY_ASSIGNMENT:
            let m = e.assignment.pointee
            guard let reply = dtype(m.reply_dtype) else { throw WireError(.malformed, "assignment has no valid reply_dtype") }
            var assignment = Assignment(experts: keys(m.n_experts, m.experts), replyDType: reply,
                                        modelFingerprint: string(m.model_fingerprint), heartbeatIntervalMilliseconds: m.heartbeat_interval_ms)
            assignment.protocolVersion = m.protocol_version
            assignment.generatedTokensOnTiles = m.generated_tokens_on_tiles != 0
            return .assignment(assignment)
        case EXPERTMESH__V1__ENVELOPE__BODY_READY:
            let m = e.ready.pointee
            return .ready(Ready(experts: keys(m.n_experts, m.experts), expertBytes: m.expert_bytes,
                                residentBytes: m.resident_bytes, loadSeconds: m.load_seconds))
        case EXPERTMESH__V1__ENVELOPE__BODY_EXPERT_REQUEST:
            let m = e.expert_request.pointee
            return .expertRequest(ExpertRequestHeader(
                requestId: m.request_id, layer: m.layer, tokenCount: m.token_count, hiddenSize: m.hidden_size,
                placement: m.placement == EXPERTMESH__V1__WEIGHT_PLACEMENT__WEIGHT_PLACEMENT_INPUT ? .input : .output,
                routeOffsets: array(m.n_route_offsets, m.route_offsets), expertIds: array(m.n_expert_ids, m.expert_ids),
                weights: array(m.n_weights, m.weights), generatedTokens: array(m.n_generated_tokens, m.generated_tokens)))
        case EXPERTMESH__V1__ENVELOPE__BODY_EXPERT_REPLY:
            let m = e.expert_reply.pointee
            return .expertReply(ExpertReplyHeader(requestId: m.request_id, layer: m.layer, tokenCount: m.token_count, computeSeconds: m.compute_seconds))
        case EXPERTMESH__V1__ENVELOPE__BODY_HEARTBEAT:
            return .heartbeat(sentUnixMilliseconds: e.heartbeat.pointee.sent_unix_ms)
        case EXPERTMESH__V1__ENVELOPE__BODY_ERROR:
            let m = e.error.pointee
            return .error(WireFailure(requestId: m.request_id, code: WireErrorCode(rawValue: Int(m.code.rawValue)) ?? .unspecified, message: string(m.message)))
        case EXPERTMESH__V1__ENVELOPE__BODY_GOODBYE:
            return .goodbye(reason: string(e.goodbye.pointee.reason))
        case EXPERTMESH__V1__ENVELOPE__BODY_STATUS_REQUEST:
            return .statusRequest
        case EXPERTMESH__V1__ENVELOPE__BODY_STATUS:
            let m = e.status.pointee
            return .status(WorkerStatus(workerName: string(m.worker_name), experts: keys(m.n_experts, m.experts), requestsServed: m.requests_served,
                                        tokensServed: m.tokens_served, residentBytes: m.resident_bytes, busySeconds: m.busy_seconds))
        case EXPERTMESH__V1__ENVELOPE__BODY_STAGE_HELLO:
            let m = e.stage_hello.pointee
            var hello = StageHello(modelFingerprint: string(m.model_fingerprint), stage: m.stage, stageCount: m.stage_count,
                                   name: string(m.name))
            hello.protocolVersion = m.protocol_version
            return .stageHello(hello)
        case EXPERTMESH__V1__ENVELOPE__BODY_STAGE_ASSIGNMENT:
            let m = e.stage_assignment.pointee
            let first = Int(m.first_layer)
            var assignment = StageAssignment(layers: first ..< first + Int(m.layer_count), kvCacheBlocks: Int(m.kv_cache_blocks),
                                             heartbeatIntervalMilliseconds: m.heartbeat_interval_ms)
            assignment.protocolVersion = m.protocol_version
            return .stageAssignment(assignment)
        case EXPERTMESH__V1__ENVELOPE__BODY_STAGE_READY:
            let m = e.stage_ready.pointee
            return .stageReady(StageReady(workers: m.workers, startSeconds: m.start_seconds))
        case EXPERTMESH__V1__ENVELOPE__BODY_STAGE_FORWARD:
            let m = e.stage_forward.pointee
            var segments: [StageForwardHeader.Segment] = []
            for index in 0..<m.n_segments {
                guard let s = m.segments[index]?.pointee else { throw WireError(.malformed, "stage segment \(index) is empty") }
                let lengths = array(s.n_table_lengths, s.table_lengths).map(Int.init)
                let blocks = array(s.n_blocks, s.blocks)
                guard lengths.reduce(0, +) == blocks.count else {
                    throw WireError(.malformed, "stage segment \(index): table lengths \(lengths) do not add up to its "
                                    + "\(blocks.count) blocks")
                }
                var tables: [[UInt32]] = []
                var offset = 0
                for length in lengths {
                    tables.append(Array(blocks[offset ..< offset + length]))
                    offset += length
                }
                segments.append(.init(rows: s.rows, start: s.start, promptLength: s.prompt_length, blockTables: tables))
            }
            return .stageForward(StageForwardHeader(requestId: m.request_id, segments: segments))
        case EXPERTMESH__V1__ENVELOPE__BODY_STAGE_REPLY:
            let m = e.stage_reply.pointee
            return .stageReply(StageReplyHeader(requestId: m.request_id, computeSeconds: m.compute_seconds))
        default:
            throw WireError(.malformed, "header frame carries no known message (body case \(e.body_case.rawValue))")
        }
    }
}
