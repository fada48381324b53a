import MeshModels

/// Which KV cache blocks are free, which belong to sequences, and which hold a cached prefix.
///
/// One pool serves every KV cache group; a block belongs to one group while it is held or cached.
/// Prefix sharing (a simple form of SGLang's RadixAttention): a full block is registered under
/// its exact content, (group, parent block, parent generation, its 16 tokens, how many of them are
/// prompt tokens), so a block matches only when every token before it matches too, and a block
/// computed from generated tokens (with the decode kernels) is never reused for prompt tokens.
/// Blocks are reference-counted; a registered block no sequence uses stays cached and is evicted
/// least recently used first when blocks run out. A block's generation changes whenever it is
/// reused, so a stale child entry never matches.
struct BlockManager {
    struct PrefixKey: Hashable {
        var group: Int
        var parent: Int
        var parentGeneration: Int
        var tokens: [Int]
        var promptTokens: Int
    }

    /// How many of the block starting at `start` are prompt tokens.
    static func promptTokens(blockStart start: Int, promptLength: Int) -> Int {
        min(PagedKVCache.blockSize, max(0, promptLength - start))
    }

    let blockCount: Int
    private var references: [Int]
    private var generation: [Int]
    private var keyOfBlock: [PrefixKey?]
    private var cached: [PrefixKey: Int] = [:]
    private var free: [Int]
    /// Unreferenced registered blocks, least recently used at the head (an intrusive list).
    private var lruPrevious: [Int]
    private var lruNext: [Int]
    private var lruHead = -1, lruTail = -1
    private(set) var evictableCount = 0

    init(blockCount: Int) {
        self.blockCount = blockCount
        references = Array(repeating: 0, count: blockCount)
        generation = Array(repeating: 0, count: blockCount)
        keyOfBlock = Array(repeating: nil, count: blockCount)
        free = Array((0..<blockCount).reversed())
        lruPrevious = Array(repeating: -1, count: blockCount)
        lruNext = Array(repeating: -1, count: blockCount)
    }

    /// Blocks that can be handed out now (free or evictable).
    var availableCount: Int { free.count + evictableCount }
    /// Blocks held by at least one sequence.
    var usedCount: Int { blockCount - free.count - evictableCount }
    /// Registered blocks no sequence holds (the prefix cache's idle part).
    var cachedIdleCount: Int { evictableCount }

    /// A block for a sequence's exclusive use, or nil when none is free or evictable.
    mutating func allocate() -> Int? {
        let block: Int
        if let next = free.popLast() {
            block = next
        } else if lruHead >= 0 {
            block = lruHead
            unlinkLRU(block)
            if let key = keyOfBlock[block] { cached[key] = nil }
            keyOfBlock[block] = nil
        } else {
            return nil
        }
        generation[block] += 1
        references[block] = 1
        return block
    }

    /// How many times `block` was handed out: with its index, it names the block's content.
    func generation(of block: Int) -> Int { generation[block] }

    /// The longest run of `group`'s cached blocks matching `tokens` (whose first `promptLength` are
    /// the prompt) block by block (full blocks only); each returned block gains a reference.
    mutating func match(_ tokens: ArraySlice<Int>, group: Int, promptLength: Int, maximumBlocks: Int) -> [Int] {
        var blocks: [Int] = []
        var parent = -1
        let size = PagedKVCache.blockSize
        var start = tokens.startIndex
        while blocks.count < maximumBlocks, start + size <= tokens.endIndex {
            let key = PrefixKey(group: group, parent: parent, parentGeneration: parent >= 0 ? generation[parent] : 0,
                                tokens: Array(tokens[start ..< start + size]),
                                promptTokens: Self.promptTokens(blockStart: start - tokens.startIndex, promptLength: promptLength))
            guard let block = cached[key] else { break }
            if references[block] == 0 { unlinkLRU(block) }
            references[block] += 1
            blocks.append(block)
            parent = block
            start += size
        }
        return blocks
    }

    /// Registers a full, computed block of `group` under its content (no-op if that content is
    /// cached). `parent` is the block before it as it was when computed (index and generation; -1
    /// for the first): a parent since released and reused leaves the entry stale, never wrong.
    mutating func register(_ block: Int, group: Int, parent: (block: Int, generation: Int), tokens: ArraySlice<Int>,
                           promptTokens: Int) {
        guard keyOfBlock[block] == nil else { return }
        let key = PrefixKey(group: group, parent: parent.block, parentGeneration: parent.generation,
                            tokens: Array(tokens), promptTokens: promptTokens)
        guard cached[key] == nil else { return }
        cached[key] = block
        keyOfBlock[block] = key
    }

    /// Drops one reference to each block; unreferenced blocks become free or, if registered, cached.
    mutating func release(_ blocks: [Int]) {
        for block in blocks.reversed() {
            references[block] -= 1
            guard references[block] == 0 else { continue }
            if keyOfBlock[block] != nil { appendLRU(block) } else { free.append(block) }
        }
    }

    /// Forgets every cached prefix (their contents are gone): idle cached blocks become free, and
    /// held ones are freed, not cached, when released.
    mutating func forgetPrefixes() {
        while lruHead >= 0 {
            let block = lruHead
            unlinkLRU(block)
            free.append(block)
        }
        cached = [:]
        keyOfBlock = Array(repeating: nil, count: blockCount)
    }

    private mutating func appendLRU(_ block: Int) {
        lruPrevious[block] = lruTail
        lruNext[block] = -1
        if lruTail >= 0 { lruNext[lruTail] = block } else { lruHead = block }
        lruTail = block
        evictableCount += 1
    }

    private mutating func unlinkLRU(_ block: Int) {
        let (previous, next) = (lruPrevious[block], lruNext[block])
        if previous >= 0 { lruNext[previous] = next } else { lruHead = next }
        if next >= 0 { lruPrevious[next] = previous } else { lruTail = previous }
        lruPrevious[block] = -1
        lruNext[block] = -1
        evictableCount -= 1
    }
}
