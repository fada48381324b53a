import Foundation
import MeshModels
import MeshTensors
import MeshTransport
import MeshWire
import XCTest

/// Drives a real worker process from a ROUTER socket in the test: malformed input gets a
/// precise error and the worker keeps serving.
final class WorkerProtocolTests: XCTestCase {
    var peer: RouterPeer!
    var worker: ChildProcess!
    let context = ZMQContext()
    var router: ZMQSocket { peer.socket }
    var identity: Data { peer.identity }

    override func setUpWithError() throws {
        peer = try RouterPeer(context: context)
        worker = try ChildProcess(try Harness.binary(), ["worker", "--coordinator", peer.endpoint, "--model", Harness.fixture("mixtral").path, "--name", "probe"], name: "probe")
    }

    override func tearDown() {
        worker.kill()
        router.close()
    }

    func receive(_ timeout: Int = 20_000) throws -> WireMessage { try peer.receive(timeout: timeout, log: worker.log) }

    func send(_ message: WireMessage) throws { try peer.send(message) }

    func testMalformedInputIsRefusedAndTheWorkerKeepsServing() throws {
        guard case .hello(let hello) = try receive().body else { return XCTFail("expected hello") }
        XCTAssertEqual(hello.workerName, "probe")
        XCTAssertEqual(hello.protocolVersion, wireProtocolVersion)
        let model = try LoadedModel(directory: Harness.fixture("mixtral"))
        XCTAssertEqual(hello.modelFingerprint, ModelFingerprint.of(model))

        // A request before any assignment.
        let hidden = model.spec.hiddenSize
        func request(id: UInt64, experts: [UInt32], tokens: Int = 1, shape: [Int]? = nil) -> WireMessage {
            let matrix = Matrix(rows: tokens, columns: hidden, values: (0..<(tokens * hidden)).map { Float($0 % 7) * 0.1 })
            var tensor = WireTensor(name: "activations", matrix: matrix, dtype: .f32)
            if let shape { tensor.shape = shape }
            var offsets: [UInt32] = [0]
            for t in 0..<tokens { offsets.append(UInt32((t + 1) * experts.count)) }
            let ids = Array((0..<tokens).flatMap { _ in experts })
            return WireMessage(.expertRequest(ExpertRequestHeader(
                requestId: id, layer: 0, tokenCount: UInt32(tokens), hiddenSize: UInt32(hidden), placement: .output,
                routeOffsets: offsets, expertIds: ids, weights: ids.map { _ in 0.5 })), tensors: [tensor])
        }
        try send(request(id: 1, experts: [0]))
        guard case .error(let notReady) = try receive().body else { return XCTFail("expected error") }
        XCTAssertEqual(notReady.code, .notReady)

        try send(WireMessage(.assignment(Assignment(experts: [ExpertKey(layer: 0, expert: 0), ExpertKey(layer: 0, expert: 1)],
                                                    replyDType: .f32, modelFingerprint: hello.modelFingerprint, heartbeatIntervalMilliseconds: 1000))))
        guard case .ready(let ready) = try receive().body else { return XCTFail("expected ready") }
        XCTAssertEqual(ready.experts.count, 2)

        // Garbage header, wrong frame count, unknown expert, wrong shape: each a precise error.
        try router.send([identity, Data([0xDE, 0xAD, 0xBE, 0xEF])])
        guard case .error(let garbage) = try receive().body else { return XCTFail("expected error") }
        XCTAssertEqual(garbage.code, .malformed)
        try router.send([identity] + WireCodec.encode(request(id: 2, experts: [0])).prefix(1))
        guard case .error(let missingFrame) = try receive().body else { return XCTFail("expected error") }
        XCTAssertTrue(missingFrame.message.contains("describes 1 tensor frame(s) but 0 followed"), missingFrame.message)
        try send(request(id: 3, experts: [5]))
        guard case .error(let unknown) = try receive().body else { return XCTFail("expected error") }
        XCTAssertEqual(unknown.code, .unknownExpert)
        XCTAssertEqual(unknown.requestId, 3)
        XCTAssertTrue(unknown.message.contains("layer 0 expert 5 is not held"), unknown.message)

        // A valid request still works and equals the local computation.
        let good = request(id: 4, experts: [0, 1], tokens: 3)
        try send(good)
        let reply = try receive()
        guard case .expertReply(let header) = reply.body else { return XCTFail("expected reply, got \(reply.body)") }
        XCTAssertEqual(header.requestId, 4)
        let experts = try model.loadExperts([ExpertKey(layer: 0, expert: 0), ExpertKey(layer: 0, expert: 1)])
        guard case .expertRequest(let sent) = good.body else { return }
        let expected = try ExpertCompute.run(ExpertRequest(layer: 0, input: good.tensors[0].matrix(), routes: sent.routes, placement: .output)) {
            experts[ExpertKey(layer: 0, expert: $0)]
        }
        let diff = zip(reply.tensors[0].matrix().toArray(), expected.toArray()).map { abs($0 - $1) }.max() ?? 1
        XCTAssertLessThan(diff, 1e-6)
        XCTAssertTrue(worker.process.isRunning)
    }

    func testProtocolVersionMismatchIsRefusedWithBothVersions() throws {
        _ = try receive()
        var assignment = Assignment(experts: [], replyDType: .f32, modelFingerprint: "", heartbeatIntervalMilliseconds: 1000)
        assignment.protocolVersion = 99
        try send(WireMessage(.assignment(assignment)))
        guard case .error(let failure) = try receive().body else { return XCTFail("expected error") }
        XCTAssertEqual(failure.code, .versionMismatch)
        XCTAssertTrue(failure.message.contains("coordinator speaks 99, worker speaks 1"), failure.message)
    }
}
