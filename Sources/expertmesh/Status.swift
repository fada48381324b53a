import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a coordinator's health and its workers (exit status 0 only when every expert is served).",
        discussion: """
        Examples:
          expertmesh status --server http://127.0.0.1:8080
          expertmesh status --server http://10.0.0.1:8080 --json
        """)

    @Option(help: "Coordinator HTTP URL.")
    var server: String

    @Flag(help: "Print the /health JSON as it is.")
    var json = false

    func run() throws {
        try reportingErrors {
            guard let url = URL(string: server.hasSuffix("/") ? server + "health" : server + "/health"), url.scheme == "http" || url.scheme == "https" else {
                throw ValidationError("--server must be an http URL such as http://127.0.0.1:8080")
            }
            var request = URLRequest(url: url)
            request.timeoutInterval = 10
            let (data, status) = try HTTPClient.send(request)
            guard let health = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw CommandError("\(url) answered HTTP \(status) without JSON: is it an ExpertMesh coordinator?")
            }
            if json {
                print(String(decoding: data, as: UTF8.self))
            } else {
                print(status == 200 ? "healthy: every expert is served" : "unavailable: \(health["reason"] as? String ?? "HTTP \(status)")")
                let workers = health["workers"] as? [[String: Any]] ?? []
                func pad(_ text: String, _ width: Int) -> String { text.padding(toLength: max(width, text.count), withPad: " ", startingAt: 0) }
                print(pad("worker", 24) + pad("ready", 7) + pad("alive", 7) + pad("experts", 9) + "resident MB")
                for worker in workers {
                    let resident = Double((worker["resident_bytes"] as? NSNumber)?.int64Value ?? 0) / 1e6
                    print(pad(worker["name"] as? String ?? "?", 24) + pad((worker["ready"] as? Bool) == true ? "yes" : "no", 7)
                          + pad((worker["alive"] as? Bool) == true ? "yes" : "no", 7) + pad(String(worker["experts"] as? Int ?? 0), 9)
                          + String(format: "%.1f", resident)
                          + ((worker["faulty"] as? String).map { "  faulty: \($0)" } ?? ""))
                }
            }
            if status != 200 { throw ExitCode(1) }
        }
    }
}
