import Foundation

/// A string compared by its exact unicode scalars. Swift's String equality is canonical
/// equivalence ("é" == "e\u{301}"), but token strings must match byte for byte.
struct ExactString: Hashable {
    let bytes: [UInt8]
    init(_ text: String) { bytes = Array(text.utf8) }
    init(bytes: [UInt8]) { self.bytes = bytes }
}

/// Byte-pair encoding as HF tokenizers' `BPE` model: start from characters, repeatedly merge
/// the adjacent pair with the lowest merge rank; unknown characters become `<0xNN>` byte
/// tokens (byte_fallback) or the unk token.
final class BPEModel: @unchecked Sendable {
    let vocab: [ExactString: Int]
    private let ranks: [Pair: Int]
    private struct Pair: Hashable { let left: ExactString, right: ExactString }
    let unkToken: String?
    let byteFallback: Bool
    let fuseUnknown: Bool
    let ignoreMerges: Bool
    private var cache: [ExactString: [Int]] = [:]
    private let lock = NSLock()

    init(_ json: JSONObject) throws {
        let type = json.string("type") ?? "BPE"
        guard type == "BPE" else {
            throw TokenizerError("tokenizer.json: model type '\(type)' is not supported; supported: BPE")
        }
        let vocabJSON: [String: Any] = try json.require("vocab", "BPE model")
        var vocab: [ExactString: Int] = [:]
        for (token, id) in vocabJSON {
            if let id = (id as? NSNumber)?.intValue { vocab[ExactString(token)] = id }
        }
        self.vocab = vocab
        var ranks: [Pair: Int] = [:]
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
            let key = Pair(left: ExactString(pair[0]), right: ExactString(pair[1]))
            if ranks[key] == nil { ranks[key] = rank }
        }
        self.ranks = ranks
        unkToken = json.string("unk_token")
        byteFallback = json.bool("byte_fallback") ?? false
        fuseUnknown = json.bool("fuse_unk") ?? false
        ignoreMerges = json.bool("ignore_merges") ?? false
    }

    func tokenize(_ word: String) -> [Int] {
        let key = ExactString(word)
        lock.lock()
        if let hit = cache[key] { lock.unlock(); return hit }
        lock.unlock()
        let ids = merge(key)
        lock.lock()
        if cache.count > 100_000 { cache.removeAll() }
        cache[key] = ids
        lock.unlock()
        return ids
    }

    private func merge(_ word: ExactString) -> [Int] {
        if ignoreMerges, let id = vocab[word] { return [id] }
        // Symbols start as single unicode scalars (UTF-8 byte runs).
        var symbols: [ExactString] = String(decoding: word.bytes, as: UTF8.self).unicodeScalars.map { ExactString(String($0)) }
        while symbols.count > 1 {
            var best: (rank: Int, index: Int)?
            for i in 0..<(symbols.count - 1) {
                if let rank = ranks[Pair(left: symbols[i], right: symbols[i + 1])], rank < (best?.rank ?? .max) { best = (rank, i) }
            }
            guard let best else { break }
            let (left, right) = (symbols[best.index], symbols[best.index + 1])
            let merged = ExactString(bytes: left.bytes + right.bytes)
            // Merge every occurrence of this pair in one left-to-right pass (as HF does).
            var next: [ExactString] = []
            var i = 0
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
            } else if byteFallback, let bytes = byteTokens(symbol) {
                ids += bytes
                lastWasUnknown = false
            } else if let unk = unkToken, let unkId = vocab[ExactString(unk)] {
                if !(fuseUnknown && lastWasUnknown) { ids.append(unkId) }
                lastWasUnknown = true
            }
        }
        return ids
    }

    /// `<0xNN>` ids for every byte of the symbol, if the vocabulary has them all.
    private func byteTokens(_ symbol: ExactString) -> [Int]? {
        var ids: [Int] = []
        for byte in symbol.bytes {
            guard let id = vocab[ExactString(String(format: "<0x%02X>", byte))] else { return nil }
            ids.append(id)
        }
        return ids
    }
}
