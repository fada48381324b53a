import Foundation
import XCTest
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Real processes for cluster tests: the built `expertmesh` binary, free ports, HTTP calls.
enum Harness {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardizedFileURL

    static func fixture(_ name: String) -> URL { root.appendingPathComponent("Tests/Fixtures/models/\(name)") }

    /// The expertmesh binary built beside this test bundle (`swift build` / `swift test` build it).
    static func binary() throws -> URL {
        var directory = Bundle.main.bundleURL
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent("expertmesh")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            directory.deleteLastPathComponent()
        }
        for configuration in ["release", "debug"] {
            let candidate = root.appendingPathComponent(".build/\(configuration)/expertmesh")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        throw XCTSkip("expertmesh binary not built; run `swift build -c release` first")
    }

    /// A TCP port that was free a moment ago.
    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func http(_ method: String, _ url: String, json: Any? = nil, timeout: Double = 120) -> (status: Int, body: [String: Any]) {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        request.timeoutInterval = timeout
        if let json { request.httpBody = try? JSONSerialization.data(withJSONObject: json) }
        final class Box: @unchecked Sendable { var value: (Int, [String: Any]) = (0, [:]) }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: request) { data, response, _ in
            let object = data.flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] } ?? [:]
            box.value = ((response as? HTTPURLResponse)?.statusCode ?? 0, object)
            done.signal()
        }.resume()
        done.wait()
        return box.value
    }
}

/// A child process whose output goes to a log file; killed when the test ends.
final class ChildProcess {
    let process = Process()
    let logURL: URL

    init(_ executable: URL, _ arguments: [String], name: String) throws {
        logURL = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString).log")
        FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        process.executableURL = executable
        process.arguments = arguments
        process.standardOutput = log
        process.standardError = log
        try process.run()
    }

    var log: String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    /// Waits for the process to end; kills it (and fails the test) after `timeout` seconds.
    func waitForExit(timeout: Double, file: StaticString = #filePath, line: UInt = #line) {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning {
            XCTFail("process did not exit within \(Int(timeout)) s; log:\n\(log.suffix(3000))", file: file, line: line)
            kill()
        }
        process.waitUntilExit()
    }

    func kill(signal: Int32 = SIGKILL) {
        if process.isRunning { Foundation.kill(process.processIdentifier, signal) }
        process.waitUntilExit()
    }

    deinit { kill() }
}

/// A coordinator and N workers on loopback.
final class LoopbackCluster {
    let coordinator: ChildProcess
    var workers: [ChildProcess] = []
    let httpURL: String
    let zmqEndpoint: String
    let binary: URL
    let model: URL

    init(model: URL, workers count: Int, minWorkers: Int? = nil, wireDType: String = "f32") throws {
        binary = try Harness.binary()
        self.model = model
        let http = Harness.freePort()
        zmqEndpoint = "tcp://127.0.0.1:\(Harness.freePort())"
        httpURL = "http://127.0.0.1:\(http)"
        coordinator = try ChildProcess(binary, ["coordinator", "--model", model.path, "--listen", zmqEndpoint, "--http", "127.0.0.1:\(http)",
                                                "--min-workers", String(minWorkers ?? count), "--wire-dtype", wireDType, "--start-timeout", "60"],
                                       name: "coordinator")
        for index in 0..<count { try addWorker(name: "worker-\(index + 1)") }
    }

    func addWorker(name: String) throws {
        workers.append(try ChildProcess(binary, ["worker", "--coordinator", zmqEndpoint, "--model", model.path, "--name", name], name: name))
    }

    /// Waits for GET /health to answer 200.
    func waitHealthy(timeout: Double = 60) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if Harness.http("GET", httpURL + "/health", timeout: 2).status == 200 { return }
            Thread.sleep(forTimeInterval: 0.1)
        }
        XCTFail("cluster never became healthy. coordinator log:\n\(coordinator.log)")
        throw XCTSkip("cluster not healthy")
    }

    func stop() {
        workers.forEach { $0.kill(signal: SIGTERM) }
        coordinator.kill(signal: SIGTERM)
    }
}
