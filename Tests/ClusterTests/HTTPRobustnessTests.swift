import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The HTTP side under bad and awkward clients: precise 4xx answers, slow clients cut off,
/// keep-alive, IPv6, and a graceful shutdown that finishes (or, past its bound, cancels) what runs.
final class HTTPRobustnessTests: XCTestCase {
    func errorOf(_ answer: RawHTTP.Answer) -> [String: Any] { answer.json["error"] as? [String: Any] ?? [:] }

    func testMalformedRequestsGetTheRight4xxAndOthersAreServed() throws {
        let serve = try ServeProcess(model: Harness.fixture("mixtral"), arguments: ["--max-request-bytes", "64KiB"])
        let cases: [(Any, String?, String)] = [
            (["prompt": "Hi", "temperature": "hot"], "temperature", "'temperature' must be a number"),
            (["prompt": "Hi", "max_tokens": 2.5], "max_tokens", "'max_tokens' must be an integer"),
            (["prompt": "Hi", "stream": "yes"], "stream", "'stream' must be true or false"),
            (["prompt": "Hi", "stop": [1, 2]], "stop", "'stop' must be a string or a list of strings"),
            (["prompt": "Hi", "stop": ""], "stop", "must not be empty"),
            (["prompt": "Hi", "max_tokens": 1_000_000_000_000], nil, "exceeds the model's context length"),
            (["prompt": "Hi", "max_tokens": Int.max], nil, "exceeds the model's context length"),
            (["prompt": "Hi", "top_k": 0, "top_p": 0], "top_p", "top_p must be in (0, 1]"),
            (["prompt": "Hi", "min_p": 3], "min_p", "min_p must be in [0, 1]"),
            (["prompt": "Hi", "presence_penalty": 5], "presence_penalty", "presence_penalty must be in [-2, 2]"),
            (["prompt": "Hi", "repetition_penalty": 0], "repetition_penalty", "repetition_penalty must be"),
            (["prompt": "Hi", "logprobs": 21], "logprobs", "'logprobs' must be between 0 and 20"),
            (["prompt": "Hi", "stream_options": 3], "stream_options", "'stream_options' must be an object"),
            (["prompt": ["a"]], "prompt", "'prompt' must be a string or a non-empty list of token ids"),
            (["prompt": "Hi", "n": 2], "n", "'n' must be 1"),
        ]
        for (json, param, text) in cases {
            let answer = RawHTTP.post(serve.url, json: json)
            XCTAssertEqual(answer.status, 400, "\(json)")
            XCTAssertTrue((errorOf(answer)["message"] as? String ?? "").contains(text), "\(json): \(answer.json)")
            if let param { XCTAssertEqual(errorOf(answer)["param"] as? String, param, "\(json)") }
        }
        // Not JSON, an unknown route, a body over the limit, a chat without messages.
        let fd = RawHTTP.connect(serve.url)
        RawHTTP.write(fd, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{bad}")
        XCTAssertEqual(RawHTTP.readResponse(fd)?.status, 400)
        close(fd)
        XCTAssertEqual(RawHTTP.post(serve.url, "/v1/nothing", json: [:]).status, 404)
        let huge = RawHTTP.post(serve.url, json: ["prompt": String(repeating: "x", count: 100_000)])
        XCTAssertEqual(huge.status, 413, huge.headers)
        XCTAssertTrue((errorOf(huge)["message"] as? String ?? "").contains("--max-request-bytes"), "\(huge.json)")
        XCTAssertEqual(RawHTTP.post(serve.url, "/v1/chat/completions", json: ["model": "mixtral"]).status, 400)
        // A header over the 64 KiB limit: refused (or the connection dropped), never served.
        let oversized = RawHTTP.connect(serve.url)
        RawHTTP.write(oversized, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 100_000))\r\n\r\n")
        let refused = RawHTTP.readResponse(oversized, timeout: 5)
        XCTAssertTrue(refused == nil || (400..<500).contains(refused!.status), "\(refused?.headers ?? "")")
        close(oversized)
        // Unknown fields are ignored, as OpenAI's servers do; the server still serves.
        let fine = RawHTTP.post(serve.url, json: ["prompt": "Hi", "max_tokens": 2, "frobnicate": true])
        XCTAssertEqual(fine.status, 200, "\(fine.json)")
    }

    func testSlowClientIsCutOffWhileOthersAreServed() throws {
        let serve = try ServeProcess(model: Harness.fixture("mixtral"), arguments: ["--http-idle-timeout", "1"])
        let slow = RawHTTP.connect(serve.url)
        defer { close(slow) }
        RawHTTP.write(slow, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
        XCTAssertEqual(RawHTTP.post(serve.url, json: ["prompt": "Hi", "max_tokens": 2]).status, 200)
        let started = Date()
        var byte: UInt8 = 0
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(slow, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        XCTAssertLessThanOrEqual(recv(slow, &byte, 1, 0), 0, "the stalled connection should be closed")
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
    }

    func testKeepAliveServesSeveralRequestsOnOneConnection() throws {
        let serve = try ServeProcess(model: Harness.fixture("mixtral"))
        let fd = RawHTTP.connect(serve.url)
        defer { close(fd) }
        for index in 0..<3 {
            let body = #"{"prompt": [1, 2, 3], "max_tokens": 2}"#
            RawHTTP.write(fd, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
            let answer = RawHTTP.readResponse(fd)
            XCTAssertEqual(answer?.status, 200, "request \(index) on the same connection")
        }
    }

    func testServesIPv6() throws {
        let serve = try ServeProcess(model: Harness.fixture("mixtral"), host: "::1")
        let answer = RawHTTP.post(serve.url, json: ["prompt": [1, 2, 3], "max_tokens": 2])
        XCTAssertEqual(answer.status, 200, "\(answer.json)")
    }

    /// Requests accepted before SIGTERM finish (one runs at a time here, so most are still
    /// queued when it arrives); new ones get 503; then the process exits 0.
    func testSIGTERMFinishesRunningRequestsThenExits() throws {
        let serve = try ServeProcess(model: Harness.fixture("mixtral"), arguments: ["--max-running", "1"])
        let outcomes = try streamsAcross(sigterm: serve, count: 24) {
            let refused = RawHTTP.post(serve.url, json: ["prompt": [1, 2], "max_tokens": 2])
            XCTAssertEqual(refused.status, 503, "\(refused.json)")
        }
        for (status, events) in outcomes {
            XCTAssertEqual(status, 200)
            XCTAssertEqual(events.last, "[DONE]")
            XCTAssertTrue(events.dropLast().last?.contains("\"finish_reason\":\"length\"") ?? false, "\(events.suffix(2))")
        }
        serve.child.waitForExit(timeout: 30)
        XCTAssertEqual(serve.child.process.terminationStatus, 0, serve.child.log)
        XCTAssertTrue(serve.child.log.contains("shutting down"), serve.child.log)
        XCTAssertNil(RawHTTP.get(serve.url, "/health"), "nothing listens after the exit")
    }

    /// Past --shutdown-timeout, what still runs is cancelled with a clear error event.
    func testShutdownTimeoutCancelsWhatIsLeft() throws {
        let serve = try ServeProcess(model: Harness.fixture("mixtral"),
                                     arguments: ["--shutdown-timeout", "0", "--max-running", "1"])
        let outcomes = try streamsAcross(sigterm: serve, count: 12)
        let cut = outcomes.filter { $0.events.contains { $0.contains("shut down before this request finished") } }
        XCTAssertFalse(cut.isEmpty, "\(outcomes.map { $0.events.suffix(2) })")
        XCTAssertTrue(outcomes.allSatisfy { $0.events.last == "[DONE]" })
        serve.child.waitForExit(timeout: 30)
        XCTAssertEqual(serve.child.process.terminationStatus, 0, serve.child.log)
    }

    /// Starts `count` long streams, sends SIGTERM once each has sent its first bytes, runs
    /// `duringShutdown`, and returns every stream's status and events.
    private func streamsAcross(sigterm serve: ServeProcess, count: Int, maxTokens: Int = 200,
                               duringShutdown: () -> Void = {}) throws -> [(status: Int, events: [String])] {
        final class Results: @unchecked Sendable {
            let lock = NSLock()
            var values: [(Int, [String])] = []
        }
        let results = Results()
        let group = DispatchGroup()
        let started = DispatchSemaphore(value: 0)
        for index in 0..<count {
            group.enter()
            let url = serve.url
            Thread.detachNewThread {
                let fd = RawHTTP.connect(url)
                RawHTTP.send(fd, path: "/v1/completions",
                             json: ["prompt": [1, 2, 3, index + 4], "max_tokens": maxTokens, "ignore_eos": true, "stream": true])
                var data = Data()
                var chunk = [UInt8](repeating: 0, count: 65536)
                var signalled = false
                while true {
                    let n = recv(fd, &chunk, chunk.count, 0)
                    if n <= 0 { break }
                    data.append(contentsOf: chunk[0..<n])
                    if !signalled { signalled = true; started.signal() }
                }
                close(fd)
                if !signalled { started.signal() }
                let text = String(decoding: data, as: UTF8.self)
                let status = Int(text.split(separator: " ").dropFirst().first ?? "") ?? 0
                // "\r\n" is one Character: split on newlines, not on "\n".
                let events = text.split(whereSeparator: \.isNewline).filter { $0.hasPrefix("data: ") }.map { String($0.dropFirst(6)) }
                results.lock.lock()
                results.values.append((status, events))
                results.lock.unlock()
                group.leave()
            }
        }
        for _ in 0..<count { started.wait() }
        kill(serve.child.process.processIdentifier, SIGTERM)
        Thread.sleep(forTimeInterval: 0.2)
        duringShutdown()
        XCTAssertEqual(group.wait(timeout: .now() + 60), .success)
        return results.values.map { (status: $0.0, events: $0.1) }
    }
}
