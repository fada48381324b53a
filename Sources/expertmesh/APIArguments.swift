import ArgumentParser
import Foundation
import MeshServer

/// The HTTP API's flags, shared by `serve` and `coordinator`.
struct APIArguments: ParsableArguments {
    @Option(help: "HOST:PORT of the HTTP API; IPv6 in brackets, e.g. [::]:8080 (all addresses, IPv4 too).")
    var http = "127.0.0.1:8080"

    @Option(help: "The model id clients send and /v1/models lists. Default: the model directory's name.")
    var servedModelName: String?

    @Option(help: "A Jinja chat template file to use instead of the model's own.")
    var chatTemplate: String?

    @Option(help: "Require 'Authorization: Bearer KEY' on /v1 routes (also read from EXPERTMESH_API_KEY).")
    var apiKey: String?

    @Option(help: ArgumentHelp("""
        Accept any key in this file (one a line; blank lines and # comments skipped) on /v1 routes, with \
        --api-key if given too. /health stays open for probes.
        """, valueName: "FILE"))
    var apiKeyFile: String?

    @Flag(help: ArgumentHelp("""
        Serve GET /metrics without an API key even when keys are set (for a Prometheus that cannot send one). \
        Without it, /metrics needs a key like /v1 does; /health and the dashboard page stay open.
        """))
    var openMetrics = false

    @Option(help: "Largest request body accepted, e.g. 16MiB; larger ones get 413.")
    var maxRequestBytes = "16MiB"

    @Option(help: "Seconds before an idle or stalled client connection is closed.")
    var httpIdleTimeout: Double = 60

    @Option(help: "Seconds running requests get to finish after SIGTERM before they are cancelled.")
    var shutdownTimeout: Double = 30

    func validate() throws {
        _ = try parseHostPort(http, option: "--http")
        guard ServingArguments.bytes(maxRequestBytes) != nil else {
            throw ValidationError("--max-request-bytes must be a size such as 16MiB, got '\(maxRequestBytes)'")
        }
        guard httpIdleTimeout > 0 else { throw ValidationError("--http-idle-timeout must be positive") }
        guard shutdownTimeout >= 0 else { throw ValidationError("--shutdown-timeout must be at least 0") }
        if let chatTemplate, !FileManager.default.fileExists(atPath: chatTemplate) {
            throw ValidationError("--chat-template: no file at \(chatTemplate)")
        }
    }

    /// The keys of an --api-key-file: one a line, blank lines and # comments skipped.
    static func keys(inFile path: String) throws -> [String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ValidationError("--api-key-file: cannot read \(path)")
        }
        let keys = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
        guard !keys.isEmpty else { throw ValidationError("--api-key-file: \(path) holds no key (one a line)") }
        return keys
    }

    func options() throws -> APIOptions {
        let (host, port) = try parseHostPort(http, option: "--http")
        var options = APIOptions(host: host, port: port)
        options.servedModelName = servedModelName
        options.chatTemplateFile = chatTemplate.map { URL(fileURLWithPath: $0) }
        options.apiKeys = (apiKey ?? apiKeyFromEnvironment).map { [$0] } ?? []
        if let apiKeyFile { options.apiKeys += try Self.keys(inFile: apiKeyFile) }
        options.limits.maxBodyBytes = ServingArguments.bytes(maxRequestBytes) ?? options.limits.maxBodyBytes
        options.limits.idleTimeoutSeconds = httpIdleTimeout
        options.drainTimeout = shutdownTimeout
        options.openMetrics = openMetrics
        options.metricsText = PrometheusMetrics.text
        return options
    }
}

/// "HOST:PORT" or "[IPv6]:PORT" → (host, port), or a message naming the option.
func parseHostPort(_ text: String, option: String) throws -> (String, Int) {
    let problem = ValidationError("\(option) must be HOST:PORT or [IPv6]:PORT, e.g. 127.0.0.1:8080 or [::1]:8080, "
                                  + "got '\(text)'")
    let host: Substring
    let portText: Substring
    if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
        host = text[text.index(after: text.startIndex)..<close]
        let rest = text[text.index(after: close)...]
        portText = rest.hasPrefix(":") ? rest.dropFirst() : ""
    } else {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw problem }
        (host, portText) = (parts[0], parts[1])
    }
    guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else { throw problem }
    return (String(host), port)
}
