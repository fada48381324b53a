import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

extension Generate {
    /// `generate --server URL`: the same request through the coordinator's /v1/completions,
    /// printing the same output as local generation.
    func runRemote(_ server: String) throws {
        let base = server.hasSuffix("/") ? String(server.dropLast()) : server
        guard let url = URL(string: base + "/v1/completions"),
              url.scheme == "http" || url.scheme == "https" else {
            throw ValidationError("--server must be an http URL such as http://127.0.0.1:8080")
        }
        var body: [String: Any] = ["max_tokens": maxTokens, "temperature": temperature, "return_token_ids": true,
                                    "ignore_eos": ignoreEos, "skip_special_tokens": false]
        body["prompt"] = try tokens.map { try parseTokenList($0, option: "--tokens") } ?? prompt ?? ""
        if let topK { body["top_k"] = topK }
        if let topP { body["top_p"] = topP }
        if let seed { body["seed"] = seed }
        if stream { return try streamRemote(server, body: body) }
        var request = URLRequest(url: url)
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        if let key = apiKeyFromEnvironment { request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization") }
        request.httpBody = try JSONSerialization.data(withJSONObject: body)
        request.timeoutInterval = 3600
        let (data, status) = try HTTPClient.send(request)
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CommandError("the server answered HTTP \(status) with a body that is not JSON: "
                               + "is --server an ExpertMesh server?")
        }
        guard status == 200, let choice = (object["choices"] as? [[String: Any]])?.first else {
            let message = ((object["error"] as? [String: Any])?["message"] as? String) ?? "HTTP \(status)"
            throw CommandError("the server refused the request: \(message)")
        }
        let generated = choice["token_ids"] as? [Int] ?? []
        let promptTokens = choice["prompt_token_ids"] as? [Int] ?? []
        let text = choice["text"] as? String ?? ""
        if json {
            print(jsonText(["prompt_tokens": promptTokens, "tokens": generated, "text": text,
                            "finish_reason": choice["finish_reason"] as? String ?? ""]))
        } else {
            print(text.isEmpty ? generated.map(String.init).joined(separator: ",") : text)
        }
    }

    /// `--stream`: prints each chunk's text as it arrives.
    private func streamRemote(_ server: String, body: [String: Any]) throws {
        var body = body
        body["stream"] = true
        body["return_token_ids"] = false
        var failure: String?
        let data = try JSONSerialization.data(withJSONObject: body)
        let status = try StreamingHTTPClient(url: server).post("/v1/completions", body: data) { event, _ in
            guard event != "[DONE]" else { return }
            let object = (try? JSONSerialization.jsonObject(with: Data(event.utf8))) as? [String: Any]
            if let error = object?["error"] as? [String: Any] {
                failure = error["message"] as? String ?? event
            } else if let text = ((object?["choices"] as? [[String: Any]])?.first)?["text"] as? String {
                FileHandle.standardOutput.write(Data(text.utf8))
            } else if object == nil {
                failure = event
            }
        }
        if let failure { throw CommandError("the server refused the request (HTTP \(status)): \(failure)") }
        print()
    }
}

/// The key `serve`/`coordinator --api-key` asks for, from EXPERTMESH_API_KEY (unset or empty: none).
var apiKeyFromEnvironment: String? {
    ProcessInfo.processInfo.environment["EXPERTMESH_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
}

/// A blocking HTTP call (CLI use only).
enum HTTPClient {
    static func send(_ request: URLRequest) throws -> (Data, Int) {
        final class Box: @unchecked Sendable { var result: Result<(Data, Int), Error> = .failure(URLError(.unknown)) }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: request) { data, response, error in
            if let error {
                box.result = .failure(CommandError("cannot reach \(request.url?.absoluteString ?? ""): "
                                                   + "\(error.localizedDescription); is the server running?"))
            } else {
                box.result = .success((data ?? Data(), (response as? HTTPURLResponse)?.statusCode ?? 0))
            }
            done.signal()
        }.resume()
        done.wait()
        return try box.result.get()
    }
}
