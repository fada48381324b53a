import ExpertMeshProtoC
import Foundation
import MeshModels
import MeshTensors

/// Encodes and decodes multipart messages: [protobuf Envelope header, raw tensor frames…].
public enum WireCodec {
    /// Largest message a peer accepts (libzmq drops larger ones): 1 GiB.
    public static let maxMessageBytes: Int64 = 1 << 30

    // MARK: encode

    public static func encode(_ message: WireMessage) -> [Data] {
        let arena = CArena()
        var envelope = Expertmesh__V1__Envelope()
        expertmesh__v1__envelope__init(&envelope)
        fill(&envelope, message.body, arena)
        let frames: [UnsafeMutablePointer<Expertmesh__V1__TensorFrame>?] = message.tensors.map { tensor in
            var frame = Expertmesh__V1__TensorFrame()
            expertmesh__v1__tensor_frame__init(&frame)
            frame.name = arena.string(tensor.name)
            frame.dtype = wireDType(tensor.dtype)
            frame.n_shape = tensor.shape.count
            frame.shape = arena.array(tensor.shape.map { UInt64($0) })
            frame.byte_length = UInt64(tensor.bytes.count)
            return arena.value(frame)
        }
        envelope.n_frames = frames.count
        envelope.frames = arena.array(frames)
        let size = expertmesh__v1__envelope__get_packed_size(&envelope)
        var header = Data(count: size)
        header.withUnsafeMutableBytes { raw in
            _ = expertmesh__v1__envelope__pack(&envelope, raw.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        return [header] + message.tensors.map(\.bytes)
    }

    private static func expertIds(_ keys: [ExpertKey], _ arena: CArena) -> (Int, UnsafeMutablePointer<UnsafeMutablePointer<Expertmesh__V1__ExpertId>?>?) {
        let pointers: [UnsafeMutablePointer<Expertmesh__V1__ExpertId>?] = keys.map { key in
            var id = Expertmesh__V1__ExpertId()
            expertmesh__v1__expert_id__init(&id)
            id.layer = UInt32(key.layer)
            id.expert = UInt32(key.expert)
            return arena.value(id)
        }
        return (pointers.count, arena.array(pointers))
    }

    private static func fill(_ envelope: inout Expertmesh__V1__Envelope, _ body: WireBody, _ arena: CArena) {
        switch body {
        case .hello(let hello):
            var m = Expertmesh__V1__Hello()
            expertmesh__v1__hello__init(&m)
            m.protocol_version = hello.protocolVersion
            m.model_fingerprint = arena.string(hello.modelFingerprint)
            m.worker_name = arena.string(hello.workerName)
            m.capacity_bytes = hello.capacityBytes
            m.threads = hello.threads
            envelope.body_case = EXPERTMESH__V1__ENVELOPE__BODY_HELLO
            envelope.hello = arena.value(m)
        case .assignment(let assignment):
            var m = Expertmesh__V1__Assignment()
            expertmesh__v1__assignment__init(&m)
            m.protocol_version = assignment.protocolVersion
            (m.n_experts, m.experts) = expertIds(assignment.experts, arena)
            m.reply_dtype = wireDType(assignment.replyDType)
            m.model_fingerprint = arena.string(assignment.modelFingerprint)
            m.heartbeat_interval_ms = assignment.heartbeatIntervalMilliseconds
            m.generated_tokens_on_tiles = assignment.generatedTokensOnTiles ? 1 : 0
            envelope.body_case = EXPERTMESH__V1__ENVELOPE__BODY_ASSIGNMENT
            envelope.assignment = arena.value(m)
        case .ready(let ready):
            var m = Expertmesh__V1__Ready()
            expertmesh__v1__ready__init(&m)
            (m.n_experts, m.experts) = expertIds(ready.experts, arena)
            m.expert_bytes = ready.expertBytes
            m.resident_bytes = ready.residentBytes
            m.load_seconds = ready.loadSeconds
            envelope.body_case = EXPERTMESH__V1__ENVELOPE__BODY_READY
            envelope.ready = arena.value(m)
        case .expertRequest(let request):
            var m = Expertmesh__V1__ExpertRequest()
            expertmesh__v1__expert_request__init(&m)
            m.request_id = request.requestId
            m.layer = request.layer
            m.token_count = request.tokenCount
            m.hidden_size = request.hiddenSize
            m.placement = request.placement == .input ? EXPERTMESH__V1__WEIGHT_PLACEMENT__WEIGHT_PLACEMENT_INPUT : EXPERTMESH__V1__WEIGHT_PLACEMENT__WEIGHT_PLACEMENT_OUTPUT
            m.n_route_offsets = request.routeOffsets.count
            m.route_offsets = arena.array(request.routeOffsets)
            m.n_expert_ids = request.expertIds.count
            m.expert_ids = arena.array(request.expertIds)
            m.n_weights = request.weights.count
            m.weights = arena.array(request.weights)
            m.n_generated_tokens = request.generatedTokens.count
            m.generated_tokens = arena.array(request.generatedTokens)
            envelope.body_case = EXPERTMESH__V1__ENVELOPE__BODY_EXPERT_REQUEST
            envelope.expert_request = arena.value(m)
        case .expertReply(let reply):
            var m = Expertmesh__V1__ExpertReply()
            expertmesh__v1__expert_reply__init(&m)
            m.request_id = reply.requestId
            m.layer = reply.layer
            m.token_count = reply.tokenCount
            m.compute_seconds = reply.computeSeconds
            envelope.body_case = EXPERTMESH__V1__ENVELOPE__BODY_EXPERT_REPLY
            envelope.expert_reply = arena.value(m)
        case .heartbeat(let sent):
            var m = Expertmesh__V1__Heartbeat()
            expertmesh__v1__heartbeat__init(&m)
            m.sent_unix_ms = sent
            envelope.body_case = EXPERTMESH__V1__ENVELOPE__BODY_HEARTBEAT
            envelope.heartbeat = arena.value(m)
        case .error(let failure):
            var m = Expertmesh__V1__Error()
            expertmesh__v1__error__init(&m)
            m.request_id = failure.requestId
            m.code = Expertmesh__V1__ErrorCode(rawValue: UInt32(failure.code.rawValue))
            m.message = arena.string(failure.message)
            envelope.body_case = EXPERTMESH__V1__ENVELOPE__BODY_ERROR
            envelope.error = arena.value(m)
        case .goodbye(let reason):
            var m = Expertmesh__V1__Goodbye()
            expertmesh__v1__goodbye__init(&m)
            m.reason = arena.string(reason)
            envelope.body_case = EXPERTMESH__V1__ENVELOPE__BODY_GOODBYE
            envelope.goodbye = arena.value(m)
        case .statusRequest:
            var m = Expertmesh__V1__StatusRequest()
            expertmesh__v1__status_request__init(&m)
            envelope.body_case = EXPERTMESH__V1__ENVELOPE__BODY_STATUS_REQUEST
            envelope.status_request = arena.value(m)
        case .status(let status):
            var m = Expertmesh__V1__Status()
            expertmesh__v1__status__init(&m)
            m.worker_name = arena.string(status.workerName)
            (m.n_experts, m.experts) = expertIds(status.experts, arena)
            m.requests_served = status.requestsServed
            m.tokens_served = status.tokensServed
            m.resident_bytes = status.residentBytes
            m.busy_seconds = status.busySeconds
            envelope.body_case = EXPERTMESH__V1__ENVELOPE__BODY_STATUS
            envelope.status = arena.value(m)
        case .stageHello, .stageAssignment, .stageReady, .stageForward, .stageReply:
            fillStage(&envelope, body, arena)
        }
    }

    private static func fillStage(_ envelope: inout Expertmesh__V1__Envelope, _ body: WireBody, _ arena: CArena) {
        switch body {
        case .stageHello(let hello):
            var m = Expertmesh__V1__StageHello()
            expertmesh__v1__stage_hello__init(&m)
            m.protocol_version = hello.protocolVersion
            m.model_fingerprint = arena.string(hello.modelFingerprint)
            m.stage = hello.stage
            m.stage_count = hello.stageCount
            m.name = arena.string(hello.name)
            envelope.body_case = EXPERTMESH__V1__ENVELOPE__BODY_STAGE_HELLO
            envelope.stage_hello = arena.value(m)
        case .stageAssignment(let assignment):
            var m = Expertmesh__V1__StageAssignment()
            expertmesh__v1__stage_assignment__init(&m)
            m.protocol_version = assignment.protocolVersion
            m.first_layer = UInt32(assignment.layers.lowerBound)
            m.layer_count = UInt32(assignment.layers.count)
            m.kv_cache_blocks = UInt32(assignment.kvCacheBlocks)
            m.heartbeat_interval_ms = assignment.heartbeatIntervalMilliseconds
            envelope.body_case = EXPERTMESH__V1__ENVELOPE__BODY_STAGE_ASSIGNMENT
            envelope.stage_assignment = arena.value(m)
        case .stageReady(let ready):
            var m = Expertmesh__V1__StageReady()
            expertmesh__v1__stage_ready__init(&m)
            m.workers = ready.workers
            m.start_seconds = ready.startSeconds
            envelope.body_case = EXPERTMESH__V1__ENVELOPE__BODY_STAGE_READY
            envelope.stage_ready = arena.value(m)
        case .stageForward(let forward):
            var m = Expertmesh__V1__StageForward()
            expertmesh__v1__stage_forward__init(&m)
            m.request_id = forward.requestId
            let segments: [UnsafeMutablePointer<Expertmesh__V1__StageSegment>?] = forward.segments.map { segment in
                var s = Expertmesh__V1__StageSegment()
                expertmesh__v1__stage_segment__init(&s)
                s.rows = segment.rows
                s.start = segment.start
                s.prompt_length = segment.promptLength
                s.n_table_lengths = segment.blockTables.count
                s.table_lengths = arena.array(segment.blockTables.map { UInt32($0.count) })
                let blocks = Array(segment.blockTables.joined())
                s.n_blocks = blocks.count
                s.blocks = arena.array(blocks)
                return arena.value(s)
            }
            m.n_segments = segments.count
            m.segments = arena.array(segments)
            envelope.body_case = EXPERTMESH__V1__ENVELOPE__BODY_STAGE_FORWARD
            envelope.stage_forward = arena.value(m)
        case .stageReply(let reply):
            var m = Expertmesh__V1__StageReply()
            expertmesh__v1__stage_reply__init(&m)
            m.request_id = reply.requestId
            m.compute_seconds = reply.computeSeconds
            envelope.body_case = EXPERTMESH__V1__ENVELOPE__BODY_STAGE_REPLY
            envelope.stage_reply = arena.value(m)
        default:
            break
        }
    }

    static func wireDType(_ dtype: DType) -> Expertmesh__V1__DType {
        switch dtype {
        case .f32: return EXPERTMESH__V1__DTYPE__DTYPE_F32
        case .bf16: return EXPERTMESH__V1__DTYPE__DTYPE_BF16
        case .f16: return EXPERTMESH__V1__DTYPE__DTYPE_F16
        }
    }

    static func dtype(_ wire: Expertmesh__V1__DType) -> DType? {
        switch wire {
        case EXPERTMESH__V1__DTYPE__DTYPE_F32: return .f32
        case EXPERTMESH__V1__DTYPE__DTYPE_BF16: return .bf16
        case EXPERTMESH__V1__DTYPE__DTYPE_F16: return .f16
        default: return nil
        }
    }
}
