import Foundation
import MeshEngine
import MeshModels
import MeshTransport
import MeshWire
import XCTest
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Real processes for cluster tests: the built `expertmesh` binary, free ports, HTTP calls.
enum Harness {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardizedFileURL

    static func fixture(_ name: String) -> URL { root.appendingPathComponent("Tests/Fixtures/models/\(name)") }

    /// A greedy completion with logprobs and prompt logprobs through `cluster` gives the tokens the
    /// in-process engine gives, and logprobs within 1e-4; returns the largest logprob difference.
    static func assertClusterEqualsSingleProcess(_ name: String, _ cluster: LoopbackCluster) throws -> Double {
        try assertClusterEqualsSingleProcess(name, url: cluster.httpURL, log: cluster.coordinator.log)
    }

    /// The same against the coordinator at `url` (`log`: its log, shown on failure).
    static func assertClusterEqualsSingleProcess(_ name: String, url: String, log: @autoclosure () -> String) throws -> Double {
        let expected = try JSONSerialization.jsonObject(
            with: Data(contentsOf: fixture(name).appendingPathComponent("expected.json"))) as? [String: Any]
        let tokens = try XCTUnwrap(expected?["prompt_tokens"] as? [Int], name)
        let (status, body) = Harness.http("POST", url + "/v1/completions", json: [
            "prompt": tokens, "max_tokens": 6, "temperature": 0, "logprobs": 3, "prompt_logprobs": 2,
            "return_token_ids": true, "ignore_eos": true,
        ])
        XCTAssertEqual(status, 200, "\(name): \(body)\n\(log())")
        let choice = try XCTUnwrap((body["choices"] as? [[String: Any]])?.first, name)
        let remoteTokens = try XCTUnwrap(choice["token_ids"] as? [Int])
        let remoteLogprobs = try XCTUnwrap((choice["logprobs"] as? [String: Any])?["token_logprobs"] as? [Double])
        let remotePrompt = try XCTUnwrap(choice["prompt_logprobs"] as? [Any])

        let engine = try LocalEngine(directory: fixture(name))
        let local = try engine.generator.generate(GenerationRequest(prompt: tokens, maxTokens: 6, logprobs: 3, promptLogprobs: 2))
        XCTAssertEqual(remoteTokens, local.tokens, "\(name): greedy tokens differ between cluster and single process")
        let tokenDiff = zip(remoteLogprobs, local.logprobs.map { Double($0.logprob) }).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThan(tokenDiff, 1e-4, "\(name): logprobs differ")
        var promptDiff = 0.0
        for (position, entry) in local.promptLogprobs.enumerated() {
            let remote = try XCTUnwrap(remotePrompt[position + 1] as? [String: [String: Any]])
            for top in entry.top {
                let value = try XCTUnwrap(remote[String(top.token)]?["logprob"] as? Double,
                                          "\(name): prompt position \(position + 1) lacks token \(top.token)")
                promptDiff = max(promptDiff, abs(value - Double(top.logprob)))
            }
        }
        XCTAssertLessThan(promptDiff, 1e-4, "\(name): prompt logprobs differ")
        return max(tokenDiff, promptDiff)
    }

    /// Waits for GET `url`/health to answer 200; fails the test (showing `log`) and skips it if it never does.
    static func waitHealthy(_ url: String, timeout: Double, log: @autoclosure () -> String) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if http("GET", url + "/health", timeout: 2).status == 200 { return }
            Thread.sleep(forTimeInterval: 0.1)
        }
        XCTFail("never became healthy. \(log())")
        throw XCTSkip("not healthy")
    }

    /// The transformers fixtures with routed experts (`withExperts`) or dense, sorted.
    static func fixtures(withExperts: Bool) -> [String] {
        let folder = root.appendingPathComponent("Tests/Fixtures/models")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.sorted().filter { name in
            guard let spec = try? ModelSpec.decode(configFile: fixture(name).appendingPathComponent("config.json")) else { return false }
            return spec.moeLayerIndices.isEmpty != withExperts
        }
    }

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

    /// GETs `url` until it answers `status` or `timeout` seconds pass; returns the last answer.
    static func poll(_ url: String, until status: Int = 200, timeout: Double = 60) -> (status: Int, body: [String: Any]) {
        let deadline = Date().addingTimeInterval(timeout)
        var last = http("GET", url, timeout: 2)
        while last.status != status, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.1)
            last = http("GET", url, timeout: 2)
        }
        return last
    }

    /// proto/ compiled for Python (`protoc --python_out`) into a new folder; returns the folder.
    static func pythonProto() throws -> URL {
        let generated = FileManager.default.temporaryDirectory.appendingPathComponent("pyproto-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: generated, withIntermediateDirectories: true)
        let compiled = try runTool("protoc", ["--proto_path=\(root.path)/proto", "--python_out=\(generated.path)",
                                              "\(root.path)/proto/expertmesh/v1/mesh.proto"], timeout: 60)
        XCTAssertEqual(compiled.status, 0, "protoc failed (package protobuf-compiler): \(compiled.output)")
        return generated
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

    static func http(_ method: String, _ url: String, json: Any? = nil, headers: [String: String] = [:],
                     timeout: Double = 120) -> (status: Int, body: [String: Any]) {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
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

    init(_ executable: URL, _ arguments: [String], name: String, environment: [String: String]? = nil) throws {
        logURL = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString).log")
        FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = environment }
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

/// A ROUTER socket in a test, standing in for the coordinator (or stage 0) of one peer process.
final class RouterPeer {
    let socket: ZMQSocket
    let endpoint = "tcp://127.0.0.1:\(Harness.freePort())"
    /// The peer's routing id, from its last message.
    var identity = Data()

    init(context: ZMQContext) throws {
        socket = try ZMQSocket(context: context, kind: .router)
        try socket.setRouterMandatory()
        try socket.bind(endpoint)
    }

    /// The peer's next message but heartbeats; fails the test (showing `log`) and skips it after `timeout` ms.
    func receive(timeout: Int = 20_000, log: @autoclosure () -> String) throws -> WireMessage {
        while true {
            guard let parts = try socket.receive(timeoutMilliseconds: timeout) else {
                XCTFail("no message from the peer; log:\n\(log())")
                throw XCTSkip("timeout")
            }
            identity = parts[0]
            let message = try WireCodec.decode(Array(parts.dropFirst()))
            if case .heartbeat = message.body { continue }
            return message
        }
    }

    func send(_ message: WireMessage) throws { try socket.send([identity] + WireCodec.encode(message)) }
}

/// A coordinator and N workers on loopback.
final class LoopbackCluster {
    let coordinator: ChildProcess
    var workers: [ChildProcess] = []
    let httpURL: String
    let zmqEndpoint: String
    let binary: URL
    let model: URL
    /// `--precision` of every process (nil: the command's default, bf16).
    let precision: String?
    let workerArguments: [String]

    init(model: URL, workers count: Int, minWorkers: Int? = nil, wireDType: String = "f32", precision: String? = nil,
         coordinatorArguments: [String] = [], workerArguments: [String] = []) throws {
        binary = try Harness.binary()
        self.model = model
        self.precision = precision
        self.workerArguments = workerArguments
        let http = Harness.freePort()
        zmqEndpoint = "tcp://127.0.0.1:\(Harness.freePort())"
        httpURL = "http://127.0.0.1:\(http)"
        coordinator = try ChildProcess(binary, ["coordinator", "--model", model.path, "--listen", zmqEndpoint, "--http", "127.0.0.1:\(http)",
                                                "--min-workers", String(minWorkers ?? count), "--wire-dtype", wireDType, "--start-timeout", "60"]
                                                + Self.precisionArguments(precision) + coordinatorArguments,
                                       name: "coordinator")
        for index in 0..<count { try addWorker(name: "worker-\(index + 1)") }
    }

    func addWorker(name: String) throws {
        workers.append(try ChildProcess(binary, ["worker", "--coordinator", zmqEndpoint, "--model", model.path, "--name", name]
                                        + Self.precisionArguments(precision) + workerArguments, name: name))
    }

    static func precisionArguments(_ precision: String?) -> [String] { precision.map { ["--precision", $0] } ?? [] }

    /// Waits for GET /health to answer 200.
    func waitHealthy(timeout: Double = 60) throws {
        try Harness.waitHealthy(httpURL, timeout: timeout, log: "coordinator log:\n\(coordinator.log)")
    }

    func stop() {
        workers.forEach { $0.kill(signal: SIGTERM) }
        coordinator.kill(signal: SIGTERM)
    }
}

/// A raw HTTP/1.1 client on a socket: many at once (URLSession limits connections per host),
/// and able to hang up mid-request the way a client that goes away does.
enum RawHTTP {
    struct Answer {
        var status: Int
        var headers: String
        var body: Data
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
    }

    /// A socket connected to the URL's host and port (IPv4, or IPv6 in brackets).
    static func connect(_ url: String) -> Int32 {
        let components = URLComponents(string: url)!
        let host = components.host!.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICHOST
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(components.port!), &hints, &list) == 0, let address = list else { return -1 }
        defer { freeaddrinfo(list) }
        let fd = socket(address.pointee.ai_family, address.pointee.ai_socktype, address.pointee.ai_protocol)
        _ = Glibc.connect(fd, address.pointee.ai_addr, address.pointee.ai_addrlen)
        return fd
    }

    /// GET `path`; the answer, or nil if the server cannot be reached.
    static func get(_ url: String, _ path: String) -> Answer? {
        let fd = connect(url)
        defer { close(fd) }
        write(fd, "GET \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return readResponse(fd, timeout: 2)
    }

    static func send(_ fd: Int32, path: String, json: Any) {
        let body = (try? JSONSerialization.data(withJSONObject: json)) ?? Data()
        var request = Data("POST \(path) HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: \(body.count)\r\n\r\n".utf8)
        request.append(body)
        _ = request.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// POSTs `json` and reads the whole answer (the server closes the connection after it).
    static func post(_ url: String, _ path: String = "/v1/completions", json: Any) -> Answer {
        let fd = connect(url)
        defer { close(fd) }
        send(fd, path: path, json: json)
        var data = Data()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { break }
            data.append(contentsOf: chunk[0..<n])
        }
        guard let end = data.range(of: Data("\r\n\r\n".utf8)) else { return Answer(status: 0, headers: "", body: data) }
        let headers = String(decoding: data[..<end.lowerBound], as: UTF8.self)
        let status = Int(headers.split(separator: " ").dropFirst().first ?? "") ?? 0
        return Answer(status: status, headers: headers, body: Data(data[end.upperBound...]))
    }

    /// POSTs `json`, reads `bytes` bytes of the answer (0: none), then hangs up.
    static func postAndHangUp(_ url: String, json: Any, after seconds: Double, bytes: Int = 0) {
        let fd = connect(url)
        send(fd, path: "/v1/completions", json: json)
        var received = 0
        var chunk = [UInt8](repeating: 0, count: 4096)
        while received < bytes {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { break }
            received += n
        }
        Thread.sleep(forTimeInterval: seconds)
        close(fd)
    }
}

/// `expertmesh serve` on a free loopback port, answering /health before the test goes on.
final class ServeProcess {
    let child: ChildProcess
    let url: String
    let port: Int

    init(model: URL, arguments: [String] = [], host: String = "127.0.0.1") throws {
        port = Harness.freePort()
        let hostPort = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        url = "http://\(hostPort)"
        child = try ChildProcess(try Harness.binary(), ["serve", "--model", model.path, "--http", hostPort] + arguments,
                                 name: "serve")
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, child.process.isRunning {
            if RawHTTP.get(url, "/health")?.status == 200 { return }
            Thread.sleep(forTimeInterval: 0.1)
        }
        XCTFail("serve never became healthy; log:\n\(child.log)")
        throw XCTSkip("serve not healthy")
    }

    deinit { child.kill(signal: SIGTERM) }
}

/// Runs a Python script of Tests/PythonClient with `arguments`; returns its exit status and output.
func runPython(_ script: String, _ arguments: [String], timeout: Double = 300) throws -> (status: Int32, output: String) {
    try runTool("python3", [Harness.root.appendingPathComponent("Tests/PythonClient/\(script)").path] + arguments,
                timeout: timeout)
}

/// Runs a program found on PATH (or a path) to its end; returns its exit status and output (stdout and stderr).
func runTool(_ program: String, _ arguments: [String], timeout: Double = 300) throws -> (status: Int32, output: String) {
    let child = try ChildProcess(URL(fileURLWithPath: "/usr/bin/env"), [program] + arguments,
                                 name: URL(fileURLWithPath: program).lastPathComponent)
    child.waitForExit(timeout: timeout)
    return (child.process.terminationStatus, child.log)
}

extension RawHTTP {
    /// Writes raw bytes (nothing added).
    static func write(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Reads one response with a Content-Length (keep-alive), or up to the close; nil on a
    /// closed connection with nothing to read or after `timeout` seconds.
    static func readResponse(_ fd: Int32, timeout: Double = 30) -> Answer? {
        var timeval = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeval, socklen_t(MemoryLayout<timeval>.size))
        var data = Data()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            if let end = data.range(of: Data("\r\n\r\n".utf8)) {
                let headers = String(decoding: data[..<end.lowerBound], as: UTF8.self)
                let length = headers.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) }
                if let length, data.count - end.upperBound >= length {
                    let status = Int(headers.split(separator: " ").dropFirst().first ?? "") ?? 0
                    return Answer(status: status, headers: headers,
                                  body: Data(data[end.upperBound ..< end.upperBound + length]))
                }
            }
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { break }
            data.append(contentsOf: chunk[0..<n])
        }
        guard let end = data.range(of: Data("\r\n\r\n".utf8)) else { return nil }
        let headers = String(decoding: data[..<end.lowerBound], as: UTF8.self)
        return Answer(status: Int(headers.split(separator: " ").dropFirst().first ?? "") ?? 0, headers: headers,
                      body: Data(data[end.upperBound...]))
    }
}
