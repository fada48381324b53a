import Foundation
import MeshModels
import MeshTensors
import MeshWire
import XCTest

final class WireCodecTests: XCTestCase {
    let experts = [ExpertKey(layer: 0, expert: 3), ExpertKey(layer: 5, expert: 1)]

    func roundTrip(_ message: WireMessage, file: StaticString = #filePath, line: UInt = #line) throws {
        let decoded = try WireCodec.decode(WireCodec.encode(message))
        XCTAssertEqual(decoded, message, file: file, line: line)
    }

    func testEveryMessageRoundTrips() throws {
        try roundTrip(WireMessage(.hello(Hello(modelFingerprint: "mixtral-abc", workerName: "w1", capacityBytes: 7, threads: 2))))
        var assignment = Assignment(experts: experts, replyDType: .bf16, modelFingerprint: "m", heartbeatIntervalMilliseconds: 1000)
        try roundTrip(WireMessage(.assignment(assignment)))
        assignment.generatedTokensOnTiles = true
        try roundTrip(WireMessage(.assignment(assignment)))
        try roundTrip(WireMessage(.ready(Ready(experts: experts, expertBytes: 10, residentBytes: 20, loadSeconds: 0.5))))
        try roundTrip(WireMessage(.expertReply(ExpertReplyHeader(requestId: 9, layer: 1, tokenCount: 2, computeSeconds: 0.25))))
        try roundTrip(WireMessage(.heartbeat(sentUnixMilliseconds: 123)))
        try roundTrip(WireMessage(.error(WireFailure(requestId: 4, code: .unknownExpert, message: "no"))))
        try roundTrip(WireMessage(.goodbye(reason: "bye")))
        try roundTrip(WireMessage(.statusRequest))
        try roundTrip(WireMessage(.status(WorkerStatus(workerName: "w", experts: experts, requestsServed: 1, tokensServed: 2, residentBytes: 3, busySeconds: 4))))
    }

    func testExpertRequestWithFramesRoundTripsInEveryDType() throws {
        let activations = Matrix(rows: 2, columns: 3, values: [1, -2, 0.5, 4, 0.25, -8])
        for dtype in DType.allCases {
            let header = ExpertRequestHeader(requestId: 77, layer: 3, tokenCount: 2, hiddenSize: 3, placement: .input,
                                             routeOffsets: [0, 1, 3], expertIds: [4, 1, 2], weights: [0.5, 0.25, 0.75],
                                             generatedTokens: [1])
            let message = WireMessage(.expertRequest(header), tensors: [WireTensor(name: "activations", matrix: activations, dtype: dtype)])
            let decoded = try WireCodec.decode(WireCodec.encode(message))
            XCTAssertEqual(decoded, message)
            XCTAssertEqual(decoded.tensors[0].matrix().toArray(), activations.toArray(), "\(dtype) values are exact in every dtype")
            guard case .expertRequest(let h) = decoded.body else { return XCTFail("wrong body") }
            XCTAssertEqual(h.routes, [TokenRoute(experts: [4], weights: [0.5]), TokenRoute(experts: [1, 2], weights: [0.25, 0.75])])
            XCTAssertEqual(h.generatedRows, [false, true])
        }
    }

    func testMalformedFramesAreRefusedWithPreciseErrors() throws {
        let good = WireCodec.encode(WireMessage(.expertReply(ExpertReplyHeader(requestId: 1, layer: 0, tokenCount: 1, computeSeconds: 0)),
                                                tensors: [WireTensor(name: "partial", dtype: .f32, shape: [1, 2], bytes: Data(count: 8))]))
        func assertRefused(_ parts: [Data], _ text: String, line: UInt = #line) {
            XCTAssertThrowsError(try WireCodec.decode(parts), line: line) { error in
                XCTAssertTrue("\(error)".contains(text), "\(error)", line: line)
            }
        }
        assertRefused([], "empty message")
        assertRefused([Data([0xFF, 0xFF, 0xFF])], "not a valid expertmesh.v1.Envelope")
        assertRefused([good[0]], "describes 1 tensor frame(s) but 0 followed")
        assertRefused([good[0], Data(count: 7)], "header says 8 bytes of f32 shape [1, 2], frame has 7 bytes")
        assertRefused([good[0], good[1], Data()], "describes 1 tensor frame(s) but 2 followed")
        assertRefused([Data()], "carries no known message")
    }

    func testRequestValidationChecksShapesRoutesAndExperts() throws {
        let activations = WireTensor(name: "activations", matrix: Matrix(rows: 2, columns: 4), dtype: .f32)
        func request(offsets: [UInt32] = [0, 1, 2], ids: [UInt32] = [0, 1], weights: [Float] = [1, 1], hidden: UInt32 = 4,
                     generated: [UInt32] = [0, 1]) -> ExpertRequestHeader {
            ExpertRequestHeader(requestId: 5, layer: 2, tokenCount: 2, hiddenSize: hidden, placement: .output,
                                routeOffsets: offsets, expertIds: ids, weights: weights, generatedTokens: generated)
        }
        let holds: (ExpertKey) -> Bool = { $0.layer == 2 && $0.expert < 2 }
        XCTAssertNoThrow(try request().validatedActivations([activations], hiddenSize: 4, holds: holds))
        func assertRefused(_ header: ExpertRequestHeader, _ tensors: [WireTensor], _ text: String, line: UInt = #line) {
            XCTAssertThrowsError(try header.validatedActivations(tensors, hiddenSize: 4, holds: holds), line: line) { error in
                XCTAssertTrue("\(error)".contains(text), "\(error)", line: line)
            }
        }
        assertRefused(request(hidden: 8), [activations], "hidden_size 8 but this model's hidden size is 4")
        assertRefused(request(), [], "expected exactly one frame named 'activations'")
        assertRefused(request(), [WireTensor(name: "activations", matrix: Matrix(rows: 3, columns: 4), dtype: .f32)], "shape [3, 4], expected [2, 4]")
        assertRefused(request(offsets: [0, 2]), [activations], "route_offsets must have token_count + 1 = 3 entries")
        assertRefused(request(offsets: [0, 2, 1]), [activations], "route_offsets decrease at token 1")
        assertRefused(request(weights: [1]), [activations], "there are 2 expert ids and 1 weights")
        assertRefused(request(weights: [1, .nan]), [activations], "is not finite")
        assertRefused(request(ids: [0, 7]), [activations], "layer 2 expert 7 is not held by this worker")
        assertRefused(request(generated: [2]), [activations], "generated_tokens must be ascending indices below token_count 2, got 2 at 0")
        assertRefused(request(generated: [1, 1]), [activations], "got 1 at 1")
    }
}
