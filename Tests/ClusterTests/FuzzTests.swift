import Foundation
import MeshModels
import MeshTensors
import MeshTransport
import MeshWire
import XCTest

/// Random and mutated input on every port that reads bytes from the network: the coordinator's
/// ZeroMQ and HTTP ports, a worker's socket, stage 0's stage port and a later stage's socket.
/// Afterwards the cluster must still serve correctly.
final class FuzzTests: XCTestCase {
    var random = SeededGenerator(seed: 2026)
    static let messagesPerPort = 10_000

    func randomBytes(_ count: Int) -> Data { Data((0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) }) }

    /// A valid message with some bytes flipped, frames dropped or duplicated.
    func mutated(_ parts: [Data]) -> [Data] {
        var parts = parts
        switch random.next() % 4 {
        case 0:
            var header = parts[0]
            for _ in 0..<(1 + Int(random.next() % 4)) where !header.isEmpty {
                let index = Int(random.next() % UInt64(header.count))
                header[index] ^= UInt8(truncatingIfNeeded: random.next() | 1)
            }
            parts[0] = header
        case 1: if parts.count > 1 { parts.removeLast() }
        case 2: parts.append(randomBytes(Int(random.next() % 64)))
        default: parts[parts.count - 1] = randomBytes(Int(random.next() % 256))
        }
        return parts
    }

    func validRequest(hidden: Int) -> [Data] {
        WireCodec.encode(WireMessage(.expertRequest(ExpertRequestHeader(
            requestId: 9, layer: 0, tokenCount: 1, hiddenSize: UInt32(hidden), placement: .output,
            routeOffsets: [0, 1], expertIds: [0], weights: [1])), tensors: [WireTensor(name: "activations", matrix: Matrix(rows: 1, columns: hidden), dtype: .f32)]))
    }

    /// Messages that decode but say something impossible: unknown experts, NaN or infinite
    /// weights, shapes that do not match the bytes, absurd declared sizes, wrong versions.
    func hostile(_ round: Int, hidden: Int) -> [Data] {
        var header = ExpertRequestHeader(requestId: 9, layer: 0, tokenCount: 1, hiddenSize: UInt32(hidden), placement: .output,
                                         routeOffsets: [0, 1], expertIds: [0], weights: [1])
        var tensor = WireTensor(name: "activations", matrix: Matrix(rows: 1, columns: hidden), dtype: .f32)
        switch round % 6 {
        case 0: header.expertIds = [UInt32(999 + round % 7)]
        case 1: header.weights = [[Float.nan, .infinity, -.infinity][round % 3]]
        case 2: tensor.shape = [1 << 40, hidden]
        case 3: header.tokenCount = UInt32.max
        case 4: tensor.bytes = tensor.bytes.prefix(Int(random.next() % UInt64(tensor.bytes.count)))
        default:
            return WireCodec.encode(WireMessage(.hello(Hello(protocolVersion: UInt32(2 + round % 5), modelFingerprint: "x",
                                                             workerName: "hostile-\(round % 3)"))))
        }
        return WireCodec.encode(WireMessage(.expertRequest(header), tensors: [tensor]))
    }

    /// Resident memory of a process, from /proc.
    func residentBytes(_ pid: Int32) -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
    }

    func testCoordinatorSurvivesGarbageOnBothPorts() throws {
        let cluster = try LoopbackCluster(model: Harness.fixture("mixtral"), workers: 2)
        defer { cluster.stop() }
        try cluster.waitHealthy()
        let context = ZMQContext()
        let intruder = try ZMQSocket(context: context, kind: .dealer)
        try intruder.setRoutingId(Array("intruder".utf8))
        try intruder.connect(cluster.zmqEndpoint)
        let hello = WireCodec.encode(WireMessage(.hello(Hello(modelFingerprint: "bogus", workerName: "intruder"))))
        let before = residentBytes(cluster.coordinator.process.processIdentifier)
        for round in 0..<Self.messagesPerPort {
            let parts: [Data]
            switch round % 3 {
            case 0: parts = (0..<(1 + Int(random.next() % 3))).map { _ in randomBytes(Int(random.next() % 128)) }
            case 1: parts = mutated(round % 2 == 1 ? hello : validRequest(hidden: 48))
            default: parts = hostile(round, hidden: 48)
            }
            try intruder.send(parts)
            // Keep the socket's queue short: the fuzzer must not measure its own backlog.
            if round % 500 == 499 { while (try intruder.receive(timeoutMilliseconds: 20)) != nil {} }
        }
        for _ in 0..<50 {
            let port = URL(string: cluster.httpURL)!.port!
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            let junk = random.next() % 2 == 0 ? randomBytes(Int(random.next() % 300)) : Data("POST /v1/completions HTTP/1.1\r\nContent-Length: \(random.next() % 50)\r\n\r\n{\"prompt\": [".utf8)
            _ = junk.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            close(fd)
        }
        Thread.sleep(forTimeInterval: 0.3)
        XCTAssertTrue(cluster.coordinator.process.isRunning)
        let after = residentBytes(cluster.coordinator.process.processIdentifier)
        print("coordinator resident set before/after \(Self.messagesPerPort) messages: \(before / 1_000_000) / \(after / 1_000_000) MB")
        XCTAssertLessThan(after, before + 32_000_000, "memory grew with hostile messages")
        XCTAssertEqual(Harness.http("GET", cluster.httpURL + "/health").status, 200)
        let (status, body) = Harness.http("POST", cluster.httpURL + "/v1/completions", json: ["prompt": [1, 2, 3], "max_tokens": 3, "temperature": 0])
        XCTAssertEqual(status, 200, "\(body)\n\(cluster.coordinator.log)")
    }

    func testWorkerSurvivesGarbageAndMutatedRequests() throws {
        let context = ZMQContext()
        let router = try ZMQSocket(context: context, kind: .router)
        let endpoint = "tcp://127.0.0.1:\(Harness.freePort())"
        try router.bind(endpoint)
        let worker = try ChildProcess(try Harness.binary(), ["worker", "--coordinator", endpoint, "--model", Harness.fixture("mixtral").path, "--name", "fuzzed"], name: "fuzzed")
        defer { worker.kill() }
        guard let hello = try router.receive(timeoutMilliseconds: 20_000) else { return XCTFail("no hello: \(worker.log)") }
        let identity = hello[0]
        guard case .hello(let h) = try WireCodec.decode(Array(hello.dropFirst())).body else { return XCTFail("expected hello") }
        try router.send([identity] + WireCodec.encode(WireMessage(.assignment(Assignment(
            experts: [ExpertKey(layer: 0, expert: 0)], replyDType: .f32, modelFingerprint: h.modelFingerprint, heartbeatIntervalMilliseconds: 1000)))))
        // Let the assignment load before measuring.
        _ = try router.receive(timeoutMilliseconds: 5000)
        let before = residentBytes(worker.process.processIdentifier)
        for round in 0..<Self.messagesPerPort {
            let parts: [Data]
            switch round % 3 {
            case 0: parts = (0..<(1 + Int(random.next() % 3))).map { _ in randomBytes(Int(random.next() % 200)) }
            case 1: parts = mutated(validRequest(hidden: 48))
            default: parts = hostile(round, hidden: 48)
            }
            try router.send([identity] + parts)
            if round % 500 == 499 { while (try router.receive(timeoutMilliseconds: 20)) != nil {} }
        }
        let after = residentBytes(worker.process.processIdentifier)
        print("worker resident set before/after \(Self.messagesPerPort) messages: \(before / 1_000_000) / \(after / 1_000_000) MB")
        XCTAssertLessThan(after, before + 32_000_000, "memory grew with hostile messages")
        try router.send([identity] + validRequest(hidden: 48))
        let deadline = Date().addingTimeInterval(20)
        var answered = false
        while Date() < deadline, !answered, let parts = try router.receive(timeoutMilliseconds: 2000) {
            if let message = try? WireCodec.decode(Array(parts.dropFirst())), case .expertReply(let reply) = message.body, reply.requestId == 9,
               message.tensors.first?.shape == [1, 48] {
                answered = true
            }
        }
        XCTAssertTrue(answered, "the worker must still answer a valid request; log:\n\(worker.log.suffix(2000))")
        XCTAssertTrue(worker.process.isRunning)
    }

    /// A valid micro-batch for a later stage of `spec` whose cache has 8 blocks, and hostile variants:
    /// blocks past the cache, tables that do not cover the positions, huge positions, rows that do not
    /// match the frame, NaN, tables of the wrong count.
    func stageForward(_ round: Int, spec: ModelSpec, hostile: Bool) -> [Data] {
        let tables = spec.cacheGroups.map { _ in [UInt32(round % 8)] }
        var segment = StageForwardHeader.Segment(rows: 2, start: 3, promptLength: 5, blockTables: tables)
        var tensor = WireTensor(name: "hidden", matrix: Matrix(rows: 2, columns: spec.hiddenSize), dtype: .f32)
        if hostile {
            switch round % 6 {
            case 0: segment.blockTables = tables.map { _ in [UInt32(8 + round % 1000)] }
            case 1: segment.start = 15 + UInt32(round % 100)
            case 2: segment.start = UInt32.max - 1
            case 3: segment.rows = UInt32(3 + round % 5)
            case 4: tensor.bytes.replaceSubrange(0..<4, with: withUnsafeBytes(of: Float.nan) { Data($0) })
            default: segment.blockTables = tables + [[0]]
            }
        }
        return WireCodec.encode(WireMessage(.stageForward(StageForwardHeader(requestId: UInt64(round), segments: [segment])),
                                            tensors: [tensor]))
    }

    func testStageZeroSurvivesGarbageOnItsStagePort() throws {
        let cluster = try PipelineCluster(model: Harness.fixture("mixtral"), stages: 2, workers: 1)
        defer { cluster.stop() }
        try cluster.waitHealthy()
        let spec = try ModelSpec.decode(configFile: Harness.fixture("mixtral").appendingPathComponent("config.json"))
        let context = ZMQContext()
        let intruder = try ZMQSocket(context: context, kind: .dealer)
        try intruder.connect(cluster.stageEndpoint)
        let hello = WireCodec.encode(WireMessage(.stageHello(StageHello(modelFingerprint: "bogus", stage: 1, stageCount: 2,
                                                                        name: "intruder"))))
        let reply = WireCodec.encode(WireMessage(.stageReply(StageReplyHeader(requestId: 1, computeSeconds: 0)),
                                                 tensors: [WireTensor(name: "hidden", matrix: Matrix(rows: 1, columns: 48), dtype: .f32)]))
        let before = residentBytes(cluster.coordinator.process.processIdentifier)
        for round in 0..<Self.messagesPerPort {
            let parts: [Data]
            switch round % 4 {
            case 0: parts = (0..<(1 + Int(random.next() % 3))).map { _ in randomBytes(Int(random.next() % 128)) }
            case 1: parts = mutated(hello)
            case 2: parts = mutated(reply)
            default: parts = stageForward(round, spec: spec, hostile: round % 8 == 3)
            }
            try intruder.send(parts)
            if round % 500 == 499 { while (try intruder.receive(timeoutMilliseconds: 20)) != nil {} }
        }
        Thread.sleep(forTimeInterval: 0.3)
        XCTAssertTrue(cluster.coordinator.process.isRunning)
        let after = residentBytes(cluster.coordinator.process.processIdentifier)
        print("stage 0 resident set before/after \(Self.messagesPerPort) messages: \(before / 1_000_000) / \(after / 1_000_000) MB")
        XCTAssertLessThan(after, before + 32_000_000, "memory grew with hostile messages")
        XCTAssertEqual(Harness.http("GET", cluster.httpURL + "/health").status, 200, cluster.logs)
        _ = try Harness.assertClusterEqualsSingleProcess("mixtral", url: cluster.httpURL, log: cluster.logs)
    }

    func testStageSurvivesGarbageAndMutatedMicroBatches() throws {
        let fixture = Harness.fixture("mixtral")
        let spec = try ModelSpec.decode(configFile: fixture.appendingPathComponent("config.json"))
        let context = ZMQContext()
        let router = try ZMQSocket(context: context, kind: .router)
        let endpoint = "tcp://127.0.0.1:\(Harness.freePort())"
        try router.bind(endpoint)
        let stage = try ChildProcess(try Harness.binary(), [
            "stage", "--stage", "1/2", "--join", endpoint, "--listen", "tcp://127.0.0.1:\(Harness.freePort())",
            "--model", fixture.path, "--spawn-workers", "1"], name: "fuzzed-stage")
        defer { stage.kill() }
        guard let hello = try router.receive(timeoutMilliseconds: 60_000) else { return XCTFail("no hello: \(stage.log)") }
        let identity = hello[0]
        try router.send([identity] + WireCodec.encode(WireMessage(.stageAssignment(StageAssignment(
            layers: 1..<2, kvCacheBlocks: 8, heartbeatIntervalMilliseconds: 1000)))))
        var ready = false
        while !ready, let parts = try router.receive(timeoutMilliseconds: 60_000) {
            if case .stageReady = try WireCodec.decode(Array(parts.dropFirst())).body { ready = true }
        }
        XCTAssertTrue(ready, stage.log)
        let before = residentBytes(stage.process.processIdentifier)
        for round in 0..<Self.messagesPerPort {
            let parts: [Data]
            switch round % 3 {
            case 0: parts = (0..<(1 + Int(random.next() % 3))).map { _ in randomBytes(Int(random.next() % 200)) }
            case 1: parts = mutated(stageForward(round, spec: spec, hostile: false))
            default: parts = stageForward(round, spec: spec, hostile: true)
            }
            try router.send([identity] + parts)
            if round % 500 == 499 { while (try router.receive(timeoutMilliseconds: 20)) != nil {} }
        }
        let after = residentBytes(stage.process.processIdentifier)
        print("stage resident set before/after \(Self.messagesPerPort) messages: \(before / 1_000_000) / \(after / 1_000_000) MB")
        XCTAssertLessThan(after, before + 32_000_000, "memory grew with hostile messages")
        try router.send([identity] + stageForward(424_242, spec: spec, hostile: false))
        let deadline = Date().addingTimeInterval(20)
        var answered = false
        while Date() < deadline, !answered, let parts = try router.receive(timeoutMilliseconds: 2000) {
            if let message = try? WireCodec.decode(Array(parts.dropFirst())), case .stageReply(let reply) = message.body,
               reply.requestId == 424_242, message.tensors.first?.shape == [2, spec.hiddenSize] {
                answered = true
            }
        }
        XCTAssertTrue(answered, "the stage must still answer a valid micro-batch; log:\n\(stage.log.suffix(2000))")
        XCTAssertTrue(stage.process.isRunning)
    }
}
