import Foundation
import MeshModels
import MeshTensors

/// Tokens routed to each expert: since start (for metrics and the load file) and over the last
/// minute (for placing experts by load while serving, and for the heat map).
public struct ExpertLoad: Sendable {
    /// layer → tokens routed to each of its experts, since start.
    public private(set) var total: [Int: [Int]] = [:]
    /// The last `windowSeconds`, as a ring of buckets of `bucketSeconds`.
    private var buckets: [(start: Double, counts: [Int: [Int]])] = []
    public static let windowSeconds: Double = 60
    static let bucketSeconds: Double = 10

    public init(total: [Int: [Int]] = [:]) { self.total = total }

    /// Counts one exchange of `layer`: each token's experts. Returns this exchange's tokens per expert.
    @discardableResult
    public mutating func record(layer: Int, routes: [TokenRoute], now: Double = Date().timeIntervalSince1970) -> [Int: Int] {
        let start = (now / Self.bucketSeconds).rounded(.down) * Self.bucketSeconds
        if buckets.last?.start != start {
            buckets.removeAll { $0.start <= now - Self.windowSeconds }
            buckets.append((start, [:]))
        }
        var exchange: [Int: Int] = [:]
        for route in routes { for expert in route.experts where expert >= 0 { exchange[expert, default: 0] += 1 } }
        var counts = total[layer] ?? []
        var recent = buckets[buckets.count - 1].counts[layer] ?? []
        let width = (exchange.keys.max() ?? -1) + 1
        if counts.count < width { counts += [Int](repeating: 0, count: width - counts.count) }
        if recent.count < width { recent += [Int](repeating: 0, count: width - recent.count) }
        for (expert, count) in exchange {
            counts[expert] += count
            recent[expert] += count
        }
        total[layer] = counts
        buckets[buckets.count - 1].counts[layer] = recent
        return exchange
    }

    /// layer → tokens routed to each expert over the last `windowSeconds`.
    public func recent(now: Double = Date().timeIntervalSince1970) -> [Int: [Int]] {
        var sum: [Int: [Int]] = [:]
        for bucket in buckets where bucket.start > now - Self.windowSeconds {
            for (layer, counts) in bucket.counts {
                var into = sum[layer] ?? []
                if into.count < counts.count { into += [Int](repeating: 0, count: counts.count - into.count) }
                for (expert, count) in counts.enumerated() { into[expert] += count }
                sum[layer] = into
            }
        }
        return sum
    }

    /// The recent window if it saw any token, else everything since start: what placing experts
    /// by load should go by.
    public func forPlacement(now: Double = Date().timeIntervalSince1970) -> [ExpertKey: Int] {
        let recent = recent(now: now)
        return Self.byExpert(recent.values.joined().contains { $0 > 0 } ? recent : total)
    }

    public static func byExpert(_ table: [Int: [Int]]) -> [ExpertKey: Int] {
        var result: [ExpertKey: Int] = [:]
        for (layer, counts) in table {
            for (expert, count) in counts.enumerated() { result[ExpertKey(layer: layer, expert: expert)] = count }
        }
        return result
    }

    /// Adds another measurement (a previous run's, read from the load file).
    public mutating func add(_ other: [Int: [Int]]) {
        for (layer, counts) in other {
            var into = total[layer] ?? []
            if into.count < counts.count { into += [Int](repeating: 0, count: counts.count - into.count) }
            for (expert, count) in counts.enumerated() { into[expert] += count }
            total[layer] = into
        }
    }
}

/// `coordinator --expert-load FILE`: the tokens routed to each expert, kept across runs so the
/// next start places experts by measured load (SGLang's `--init-expert-location` idea). JSON:
/// `{"model_fingerprint": "…", "tokens_routed": {"0": [n0, n1, …], "1": […]}}`, layers as keys.
public enum ExpertLoadFile {
    /// The counts in `url`, or nil when the file does not exist yet. A file of another model, or
    /// one that is not such JSON, is an error that says what to do.
    public static func read(_ url: URL, fingerprint: String) throws -> [Int: [Int]]? {
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        let problem = "\(url.path) is not an expert load file (JSON with \"model_fingerprint\" and \"tokens_routed\"); "
            + "delete it and the coordinator writes a new one when it stops"
        guard let object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any],
              let saved = object["model_fingerprint"] as? String,
              let table = object["tokens_routed"] as? [String: [Int]] else { throw ClusterError(problem) }
        guard saved == fingerprint else {
            throw ClusterError("\(url.path) was measured on another model (fingerprint \(saved), this one is \(fingerprint)); "
                               + "give another --expert-load file or delete this one")
        }
        var result: [Int: [Int]] = [:]
        for (layer, counts) in table {
            guard let index = Int(layer), index >= 0, counts.allSatisfy({ $0 >= 0 }) else { throw ClusterError(problem) }
            result[index] = counts
        }
        return result
    }

    /// Writes `table` atomically (a crash mid-write leaves the old file).
    public static func write(_ table: [Int: [Int]], fingerprint: String, to url: URL) throws {
        let object: [String: Any] = ["model_fingerprint": fingerprint,
                                     "tokens_routed": Dictionary(uniqueKeysWithValues: table.map { ("\($0.key)", $0.value) })]
        try AtomicFile.write(JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), to: url)
    }
}
