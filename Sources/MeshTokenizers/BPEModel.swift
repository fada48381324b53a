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
        // Symbols start as single unicode scalars. Merges are applied lowest rank first, leftmost
        // first among equal ranks (HF's order), using a heap of candidate pairs over a linked list
        // of symbols, so a long word (SentencePiece-style text has no pre-tokeniser) stays fast.
        var text = String(decoding: word.bytes, as: UTF8.self).unicodeScalars.map { ExactString(String($0)) }
        let count = text.count
        var next = Array(1...max(count, 1)).map { $0 < count ? $0 : -1 }
        var previous = Array(-1..<max(count - 1, 0))
        var alive = [Bool](repeating: true, count: count)
        var heap = PairHeap()
        for i in 0..<max(count - 1, 0) {
            if let rank = ranks[Pair(left: text[i], right: text[i + 1])] { heap.push(rank: rank, position: i) }
        }
        while let (rank, position) = heap.pop() {
            let right = next[position]
            // Skip candidates made stale by an earlier merge.
            guard alive[position], right >= 0, ranks[Pair(left: text[position], right: text[right])] == rank else { continue }
            text[position] = ExactString(bytes: text[position].bytes + text[right].bytes)
            alive[right] = false
            next[position] = next[right]
            if next[right] >= 0 { previous[next[right]] = position }
            if previous[position] >= 0, let r = ranks[Pair(left: text[previous[position]], right: text[position])] {
                heap.push(rank: r, position: previous[position])
            }
            if next[position] >= 0, let r = ranks[Pair(left: text[position], right: text[next[position]])] {
                heap.push(rank: r, position: position)
            }
        }
        var symbols: [ExactString] = []
        var cursor = count > 0 ? 0 : -1
        while cursor >= 0 {
            symbols.append(text[cursor])
            cursor = next[cursor]
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

/// A binary min-heap of (rank, position): lowest rank first, then leftmost.
struct PairHeap {
    private var items: [(rank: Int, position: Int)] = []

    private static func less(_ a: (rank: Int, position: Int), _ b: (rank: Int, position: Int)) -> Bool {
        a.rank < b.rank || (a.rank == b.rank && a.position < b.position)
    }

    mutating func push(rank: Int, position: Int) {
        items.append((rank, position))
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard Self.less(items[child], items[parent]) else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> (Int, Int)? {
        guard !items.isEmpty else { return nil }
        let top = items[0]
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var parent = 0
            while true {
                let (left, right) = (2 * parent + 1, 2 * parent + 2)
                var smallest = parent
                if left < items.count, Self.less(items[left], items[smallest]) { smallest = left }
                if right < items.count, Self.less(items[right], items[smallest]) { smallest = right }
                if smallest == parent { break }
                items.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return (top.rank, top.position)
    }
}
