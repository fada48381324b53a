import MeshCoordinator
import MeshModels
import MeshTensors
import MeshWire
import XCTest

final class PlacementTests: XCTestCase {
    let experts = (0..<4).flatMap { layer in (0..<8).map { (key: ExpertKey(layer: layer, expert: $0), bytes: 100) } }

    func testEveryExpertOnExactlyOneWorkerBalancedByBytes() throws {
        let placement = try Placement.balanced(experts: experts, workers: ["c", "a", "b"])
        XCTAssertEqual(placement.replicas.count, 32)
        XCTAssertTrue(placement.replicas.values.allSatisfy { $0.count == 1 })
        let counts = Dictionary(grouping: placement.replicas.values.joined(), by: { $0 }).mapValues(\.count)
        XCTAssertEqual(counts.values.sorted(), [10, 11, 11])
        XCTAssertEqual(Set(placement.workers), ["a", "b", "c"])
        XCTAssertEqual(placement.experts(of: "a").count + placement.experts(of: "b").count + placement.experts(of: "c").count, 32)
    }

    func testReplicasLandOnDistinctWorkersBalancedByBytes() throws {
        let placement = try Placement.balanced(experts: experts, workers: ["c", "a", "b", "d"], replicas: 2)
        XCTAssertEqual(placement.replicas.count, 32)
        XCTAssertTrue(placement.replicas.values.allSatisfy { $0.count == 2 && Set($0).count == 2 }, "two distinct workers each")
        let counts = Dictionary(grouping: placement.replicas.values.joined(), by: { $0 }).mapValues(\.count)
        XCTAssertEqual(counts.values.sorted(), [16, 16, 16, 16])
        // Any one worker lost leaves every expert served; two may not.
        for lost in placement.workers {
            XCTAssertEqual(placement.unserved(serving: Set(placement.workers).subtracting([lost])), [], "without \(lost)")
        }
        let firstPair = Set(placement.replicas[ExpertKey(layer: 0, expert: 0)]!)
        XCTAssertEqual(placement.unserved(serving: Set(placement.workers).subtracting(firstPair)).first,
                       ExpertKey(layer: 0, expert: 0), "losing both of its replicas leaves an expert unserved")
        // More replicas than workers: every expert on every worker.
        let everywhere = try Placement.balanced(experts: experts, workers: ["a", "b"], replicas: 3)
        XCTAssertTrue(everywhere.replicas.values.allSatisfy { Set($0) == ["a", "b"] })
    }

    func testWorkersGetNoMoreThanTheirCapacityAndTooLittleRoomIsAClearError() throws {
        // 32 experts of 100 bytes: "a" may hold 500, "b" and "c" have no limit.
        let placement = try Placement.balanced(experts: experts, workers: ["a", "b", "c"], capacity: ["a": 500, "b": 0])
        XCTAssertEqual(placement.experts(of: "a").count, 5)
        XCTAssertEqual(placement.replicas.count, 32)
        XCTAssertThrowsError(try Placement.balanced(experts: experts, workers: ["a", "b"], replicas: 2,
                                                    capacity: ["a": 500, "b": 10_000])) {
            XCTAssertTrue("\($0)".contains("do not fit the workers' --max-expert-memory"), "\($0)")
        }
    }

    func testALostWorkersExpertsMoveToSurvivorsWithRoomOrToANewcomer() throws {
        let bytes = Dictionary(uniqueKeysWithValues: experts.map { ($0.key, $0.bytes) })
        let placement = try Placement.balanced(experts: experts, workers: ["a", "b", "c"], replicas: 2)
        let moved = placement.reassigning("b", to: ["a", "c"], bytes: bytes)
        XCTAssertEqual(moved.workers, ["a", "c"])
        XCTAssertTrue(moved.replicas.values.allSatisfy { Set($0) == ["a", "c"] }, "2 replicas on the 2 survivors")
        // With room for only 2 more experts on "c", the rest keep one replica.
        let cramped = placement.reassigning("b", to: ["a", "c"], bytes: bytes,
                                            capacity: ["a": 3200, "c": (placement.experts(of: "c").count + 2) * 100])
        XCTAssertEqual(cramped.experts(of: "c").count, placement.experts(of: "c").count + 2)
        XCTAssertEqual(cramped.replicas.count, 32, "no expert is dropped")
        let replaced = placement.replacing("b", with: "d")
        XCTAssertEqual(replaced.experts(of: "d"), placement.experts(of: "b"))
        XCTAssertEqual(replaced.workers, ["a", "c", "d"])
    }

    func testDeterministicForTheSameWorkerNamesInAnyOrder() throws {
        let first = try Placement.balanced(experts: experts, workers: ["w1", "w2", "w3"])
        let second = try Placement.balanced(experts: experts.reversed(), workers: ["w3", "w1", "w2"])
        XCTAssertEqual(first, second)
    }

    func testUnevenExpertSizesBalanceBytesNotCounts() throws {
        let sized = [(key: ExpertKey(layer: 0, expert: 0), bytes: 300), (key: ExpertKey(layer: 0, expert: 1), bytes: 100),
                     (key: ExpertKey(layer: 0, expert: 2), bytes: 100), (key: ExpertKey(layer: 0, expert: 3), bytes: 100)]
        let placement = try Placement.balanced(experts: sized, workers: ["a", "b"])
        XCTAssertEqual(placement.experts(of: "a"), [ExpertKey(layer: 0, expert: 0)])
        XCTAssertEqual(placement.experts(of: "b").count, 3)
    }

    /// Per layer, the most tokens any worker computes under `placement` with `load`.
    func busiestWorkerTokens(_ placement: Placement, _ load: [ExpertKey: Int], layer: Int) -> Double {
        var tokens: [String: Double] = [:]
        for (key, holders) in placement.replicas where key.layer == layer {
            for holder in holders { tokens[holder, default: 0] += Double(load[key] ?? 0) / Double(holders.count) }
        }
        return tokens.values.max() ?? 0
    }

    func testMeasuredLoadSpreadsEachLayersHotExpertsOverWorkers() throws {
        // Experts 0 and 2 of every layer are hot; by bytes alone both land on "a".
        let load = Dictionary(uniqueKeysWithValues: experts.map { ($0.key, [0, 2].contains($0.key.expert) ? 1000 : 10) })
        let byBytes = try Placement.balanced(experts: experts, workers: ["a", "b"])
        XCTAssertEqual(byBytes.replicas[ExpertKey(layer: 0, expert: 0)], byBytes.replicas[ExpertKey(layer: 0, expert: 2)])
        let byLoad = try Placement.balanced(experts: experts, workers: ["a", "b"], load: load)
        for layer in 0..<4 {
            XCTAssertEqual(busiestWorkerTokens(byBytes, load, layer: layer), 2020)
            XCTAssertEqual(busiestWorkerTokens(byLoad, load, layer: layer), 1030, "layer \(layer): one hot expert each")
        }
        XCTAssertEqual(byLoad.experts(of: "a").count, 16, "bytes stay balanced")
        // Replicas share an expert's tokens: with 2 of 4 workers per expert, the hot ones still split.
        let replicated = try Placement.balanced(experts: experts, workers: ["a", "b", "c", "d"], replicas: 2, load: load)
        XCTAssertTrue(Set(replicated.replicas[ExpertKey(layer: 1, expert: 0)]!)
            .isDisjoint(with: replicated.replicas[ExpertKey(layer: 1, expert: 2)]!))
        // An even load places as bytes do.
        let even = Dictionary(uniqueKeysWithValues: experts.map { ($0.key, 5) })
        XCTAssertEqual(try Placement.balanced(experts: experts, workers: ["a", "b", "c"], load: even),
                       try Placement.balanced(experts: experts, workers: ["a", "b", "c"]))
    }

    func testALostWorkersHotExpertsGoToTheLeastLoadedSurvivor() throws {
        let e = { ExpertKey(layer: 0, expert: $0) }
        let placement = Placement(owner: [e(0): "a", e(1): "b", e(2): "c", e(3): "b"])
        let bytes = Dictionary(uniqueKeysWithValues: (0..<4).map { (e($0), 100) })
        // By bytes, a and c tie and the name decides: b's experts go to "a", then "c".
        let byBytes = placement.reassigning("b", to: ["a", "c"], bytes: bytes)
        XCTAssertEqual(byBytes.replicas[e(1)], ["a"])
        // By load, "a" already computes the hot expert 0: the hot expert 1 goes to "c".
        let load = [e(0): 1000, e(1): 900, e(2): 10, e(3): 10]
        let byLoad = placement.reassigning("b", to: ["a", "c"], bytes: bytes, load: load)
        XCTAssertEqual(byLoad.replicas[e(1)], ["c"])
        XCTAssertEqual(byLoad.replicas[e(3)], ["c"], "c (910 tokens) is still below a (1000)")
    }
}

final class ExpertLoadTests: XCTestCase {
    func testCountsSinceStartAndOverTheLastMinute() {
        var load = ExpertLoad()
        let routes = [TokenRoute(experts: [1, 3], weights: [0.5, 0.5]), TokenRoute(experts: [1, 0], weights: [0.5, 0.5])]
        load.record(layer: 0, routes: routes, now: 1000)
        load.record(layer: 2, routes: [routes[0]], now: 1005)
        XCTAssertEqual(load.total, [0: [1, 2, 0, 1], 2: [0, 1, 0, 1]])
        XCTAssertEqual(load.recent(now: 1010), load.total)
        XCTAssertEqual(load.recent(now: 1000 + ExpertLoad.windowSeconds + 10), [:], "a minute later the window is empty")
        XCTAssertEqual(load.forPlacement(now: 1100)[ExpertKey(layer: 0, expert: 1)], 2, "an empty window: since start")
        load.record(layer: 0, routes: [routes[1]], now: 1100)
        XCTAssertEqual(load.recent(now: 1100), [0: [1, 1]])
        XCTAssertEqual(load.forPlacement(now: 1100)[ExpertKey(layer: 0, expert: 3)], nil, "only the window counts")
        XCTAssertEqual(load.total[0], [2, 3, 0, 1])
    }

    func testTheLoadFileRoundTripsAndRefusesAnotherModelOrGarbage() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("load-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: url) }
        XCTAssertNil(try ExpertLoadFile.read(url, fingerprint: "abc"), "no file yet")
        try ExpertLoadFile.write([0: [4, 5], 3: [1]], fingerprint: "abc", to: url)
        XCTAssertEqual(try ExpertLoadFile.read(url, fingerprint: "abc"), [0: [4, 5], 3: [1]])
        XCTAssertThrowsError(try ExpertLoadFile.read(url, fingerprint: "xyz")) {
            XCTAssertTrue("\($0)".contains("measured on another model"), "\($0)")
        }
        try Data("{\"tokens\": 3}".utf8).write(to: url)
        XCTAssertThrowsError(try ExpertLoadFile.read(url, fingerprint: "abc")) {
            XCTAssertTrue("\($0)".contains("is not an expert load file"), "\($0)")
        }
    }
}

final class DispatchPlanTests: XCTestCase {
    func testATokenTravelsOnceToAWorkerAndIdleWorkersGetNothing() throws {
        // Layer 2: experts 0-3 on "a", 4-7 on "b", 8-11 on "c".
        var owner: [ExpertKey: String] = [:]
        for e in 0..<12 { owner[ExpertKey(layer: 2, expert: e)] = ["a", "b", "c"][e / 4] }
        let routes = [
            TokenRoute(experts: [1, 3], weights: [0.6, 0.4]),   // both on a
            TokenRoute(experts: [5, 0], weights: [0.7, 0.3]),   // b and a
            TokenRoute(experts: [6, 7], weights: [0.5, 0.5]),   // both on b
        ]
        let plan = try DispatchPlan(routes: routes, layer: 2, placement: Placement(owner: owner))
        XCTAssertEqual(plan.destinations.map(\.worker), ["a", "b"], "no message to c")
        let a = plan.destinations[0], b = plan.destinations[1]
        XCTAssertEqual(a.tokens, [0, 1])
        XCTAssertEqual(a.offsets, [0, 2, 3])
        XCTAssertEqual(a.expertIds, [1, 3, 0])
        XCTAssertEqual(a.weights, [0.6, 0.4, 0.3])
        XCTAssertEqual(b.tokens, [1, 2])
        XCTAssertEqual(b.offsets, [0, 1, 3])
        XCTAssertEqual(b.expertIds, [5, 6, 7])

        let input = Matrix(rows: 3, columns: 2, values: [1, 2, 3, 4, 5, 6])
        let message = DispatchPlan.message(for: b, requestId: 7, layer: 2, input: input, placement: .output,
                                           generated: [false, false, true], wireDType: .f32)
        XCTAssertEqual(message.tensors[0].shape, [2, 2])
        XCTAssertEqual(message.tensors[0].matrix().toArray(), [3, 4, 5, 6], "rows of tokens 1 and 2")
        guard case .expertRequest(let header) = message.body else { return XCTFail("expected a request") }
        XCTAssertEqual(header.routes, [TokenRoute(experts: [5], weights: [0.7]), TokenRoute(experts: [6, 7], weights: [0.5, 0.5])])
        XCTAssertEqual(header.generatedTokens, [1], "token 2 of the step is the destination's second token")
    }

    func testReplicasShareTheLoadAndALostWorkersExpertsGoToTheirOtherReplica() throws {
        // Every expert of layer 0 on both "a" and "b"; expert 2 (which no token uses) also on "c".
        var replicas: [ExpertKey: [String]] = [:]
        for e in 0..<4 { replicas[ExpertKey(layer: 0, expert: e)] = ["a", "b"] }
        replicas[ExpertKey(layer: 0, expert: 2)] = ["a", "b", "c"]
        let placement = Placement(replicas: replicas)
        let routes = (0..<6).map { TokenRoute(experts: [$0 % 2, 3], weights: [0.5, 0.5]) }
        let shared = try DispatchPlan(routes: routes, layer: 0, placement: placement)
        // A token's two experts travel together (one row on the wire); tokens alternate between replicas.
        XCTAssertEqual(shared.destinations.map(\.tokens.count), [3, 3], "least loaded replica: \(shared.destinations.map(\.tokens))")
        XCTAssertTrue(shared.destinations.allSatisfy { $0.expertIds.count == 2 * $0.tokens.count })

        let slot = { (name: String) in placement.workers.firstIndex(of: name)! }
        let withoutA = try DispatchPlan(routes: routes, layer: 0, placement: placement, usable: { $0 != slot("a") })
        XCTAssertFalse(withoutA.destinations.contains { $0.worker == "a" })
        XCTAssertEqual(withoutA.destinations.flatMap(\.expertIds).count, 12, "every (token, expert) still served")

        XCTAssertThrowsError(try DispatchPlan(routes: routes, layer: 0, placement: placement,
                                              usable: { $0 == slot("c") })) {
            XCTAssertTrue("\($0)".contains("has no live replica: worker(s) a, b holding it are lost"), "\($0)")
        }
    }

    func testEquallyLoadedReplicasTakeTurnsFromOneExchangeToTheNext() throws {
        let placement = Placement(replicas: [ExpertKey(layer: 0, expert: 0): ["a", "b"]])
        let one = [TokenRoute(experts: [0], weights: [1])]
        let chosen = try (0..<4).map { try DispatchPlan(routes: one, layer: 0, placement: placement, rotation: $0).destinations[0].worker }
        XCTAssertEqual(chosen, ["a", "b", "a", "b"])
    }

    func testUnassignedExpertIsAnError() throws {
        XCTAssertThrowsError(try DispatchPlan(routes: [TokenRoute(experts: [3], weights: [1])], layer: 0, placement: Placement(owner: [:]))) {
            XCTAssertTrue("\($0)".contains("layer 0 expert 3 is not assigned to any worker"), "\($0)")
        }
    }
}
