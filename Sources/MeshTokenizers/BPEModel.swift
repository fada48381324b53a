import Foundation

/// Byte-pair encoding as HF tokenizers' `BPE` model: start from characters, repeatedly merge
/// the adjacent pair with the lowest merge rank; unknown characters become `<0xNN>` byte
/// tokens (byte_fallback) or the unk token.
final class BPEModel: @unchecked Sendable {
    let vocab: [String: Int]
    private let ranks: [String: [String: Int]]   // left -> right -> rank
    let unkToken: String?
    let byteFallback: Bool
    let fuseUnknown: Bool
    let ignoreMerges: Bool
    private var cache: [String: [Int]] = [:]
    private let lock = NSLock()

    init(_ json: JSONObject) throws {
        let type = json.string("type") ?? "BPE"
        guard type == "BPE" else {
            throw TokenizerError("tokenizer.json: model type '\(type)' is not supported; supported: BPE")
        }
        let vocabJSON: [String: Any] = try json.require("vocab", "BPE model")
        vocab = vocabJSON.compactMapValues { ($0 as? NSNumber)?.intValue }
        var ranks: [String: [String: Int]] = [:]
        let merges = json["merges"] as? [Any] ?? []
        for (rank, merge) in merges.enumerated() {
            let pair: [String]
            if let text = merge as? String {
                pair = text.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            } else if let list = merge as? [String] {
                pair = list
            } else {
                throw TokenizerError("tokenizer.json: merge \(rank) is neither \"a b\" nor [\"a\", \"b\"]")
            }
            guard pair.count == 2 else { throw TokenizerError("tokenizer.json: merge \(rank) does not have two parts") }
            if ranks[pair[0]]?[pair[1]] == nil { ranks[pair[0], default: [:]][pair[1]] = rank }
        }
        self.ranks = ranks
        unkToken = json.string("unk_token")
        byteFallback = json.bool("byte_fallback") ?? false
        fuseUnknown = json.bool("fuse_unk") ?? false
        ignoreMerges = json.bool("ignore_merges") ?? false
    }

    func tokenize(_ word: String) -> [Int] {
        lock.lock()
        if let hit = cache[word] { lock.unlock(); return hit }
        lock.unlock()
        let ids = merge(word)
        lock.lock()
        if cache.count > 100_000 { cache.removeAll() }
        cache[word] = ids
        lock.unlock()
        return ids
    }

    private func merge(_ word: String) -> [Int] {
        if ignoreMerges, let id = vocab[word] { return [id] }
        var symbols = word.unicodeScalars.map { String($0) }
        while symbols.count > 1 {
            var best: (rank: Int, index: Int)?
            for i in 0..<(symbols.count - 1) {
                if let rank = ranks[symbols[i]]?[symbols[i + 1]], rank < (best?.rank ?? .max) { best = (rank, i) }
            }
            guard let best else { break }
            let merged = symbols[best.index] + symbols[best.index + 1]
            // Merge every occurrence of this pair in one left-to-right pass (as HF does).
            var next: [String] = []
            var i = 0
            let (left, right) = (symbols[best.index], symbols[best.index + 1])
            while i < symbols.count {
                if i + 1 < symbols.count, symbols[i] == left, symbols[i + 1] == right {
                    next.append(merged)
                    i += 2
                } else {
                    next.append(symbols[i])
                    i += 1
                }
            }
            symbols = next
        }
        var ids: [Int] = []
        var lastWasUnknown = false
        for symbol in symbols {
            if let id = vocab[symbol] {
                ids.append(id)
                lastWasUnknown = false
            } else if byteFallback, symbol.utf8.allSatisfy({ vocab[String(format: "<0x%02X>", $0)] != nil }) {
                ids += symbol.utf8.map { vocab[String(format: "<0x%02X>", $0)]! }
                lastWasUnknown = false
            } else if let unk = unkToken, let unkId = vocab[unk] {
                if !(fuseUnknown && lastWasUnknown) { ids.append(unkId) }
                lastWasUnknown = true
            }
        }
        return ids
    }
}
