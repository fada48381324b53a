import Foundation
import XCTest

/// A Python coordinator built only from proto/ (protoc --python_out, pyzmq, numpy) drives a
/// real worker and checks its expert results against numpy.
final class PythonClientTests: XCTestCase {
    func runPython(fixture: String) throws {
        let binary = try Harness.binary()
        let generated = try Harness.pythonProto()
        let endpoint = "tcp://127.0.0.1:\(Harness.freePort())"
        let client = try ChildProcess(URL(fileURLWithPath: "/usr/bin/env"),
                                      ["python3", "\(Harness.root.path)/Tests/PythonClient/wire_client.py", "--proto-dir", generated.path,
                                       "--model", Harness.fixture(fixture).path, "--endpoint", endpoint], name: "python-client")
        Thread.sleep(forTimeInterval: 0.5)
        let worker = try ChildProcess(binary, ["worker", "--coordinator", endpoint, "--model", Harness.fixture(fixture).path, "--name", "py-peer"], name: "worker")
        client.waitForExit(timeout: 120)
        worker.kill()
        XCTAssertEqual(client.process.terminationStatus, 0, "python client failed:\n\(client.log)\nworker:\n\(worker.log)")
        XCTAssertTrue(client.log.contains("OK"), client.log)
        print(client.log)
    }

    func testPythonProtobufClientAgreesWithNumpyOnMixtral() throws { try runPython(fixture: "mixtral") }

    /// Llama 4: routing weight applied to the expert input, fused [E, H, 2I] experts.
    func testPythonProtobufClientAgreesWithNumpyOnLlama4() throws { try runPython(fixture: "llama4_text") }
}
