import Foundation
import XCTest

/// Coordinator, 3 workers and a client, each in its own network namespace (198.18.0.0/15),
/// connected by veth pairs and a bridge: the cluster's output equals single-process output, also
/// when a worker's network link is cut during requests.
final class NetworkNamespaceTests: XCTestCase {
    func runScript(fixture: String, workers: Int = 3, arguments: [String] = []) throws {
        guard getuid() == 0 else { throw XCTSkip("network namespaces need root (CI runs as root)") }
        let process = try ChildProcess(URL(fileURLWithPath: "/bin/bash"),
                                       [Harness.root.appendingPathComponent("scripts/netns-cluster-test.sh").path,
                                        "--model", Harness.fixture(fixture).path, "--workers", String(workers),
                                        "--binary", try Harness.binary().path] + arguments,
                                       name: "netns")
        process.waitForExit(timeout: 240)
        print(process.log)
        XCTAssertEqual(process.process.terminationStatus, 0, process.log)
        XCTAssertTrue(process.log.contains("netns: MATCH"), process.log)
    }

    func testMixtralAcrossNamespaces() throws { try runScript(fixture: "mixtral") }
    func testLlama4AcrossNamespaces() throws { try runScript(fixture: "llama4_text") }

    /// The miniature Behemoth over 32 worker hosts, its shared experts offloaded to them too.
    func testBehemothTopologyOnThirtyTwoWorkerHosts() throws {
        try runScript(fixture: "llama4_text-behemoth", workers: 32, arguments: ["--offload-dense"])
    }

    /// The same in four pipeline stages, each on a host of its own; every worker serves every stage.
    func testBehemothTopologyInFourStagesOnThirtyTwoWorkerHosts() throws {
        try runScript(fixture: "llama4_text-behemoth", workers: 32, arguments: ["--offload-dense", "--stages", "4"])
    }

    /// `ip link set … down` on a worker's link mid-request: with replicas the requests go on with
    /// unchanged tokens and the coordinator declares the worker lost (the script checks both).
    func testAWorkersLinkCutMidRequestLosesNothing() throws {
        try runScript(fixture: "mixtral", arguments: ["--replicas", "2", "--cut-worker", "2"])
    }

    /// `--overlap-exchanges` over links held to 100 Mbit/s each way, three clients at once: two
    /// exchanges are in flight when a worker's link is cut; every request keeps its tokens.
    func testOverlappedExchangesOverSlowLinksSurviveACutLink() throws {
        try runScript(fixture: "mixtral", arguments: ["--replicas", "2", "--cut-worker", "2", "--clients", "3",
                                                      "--overlap-exchanges", "--rate", "100mbit"])
    }
}
