/// Which earlier positions a query can see, as far as the KV cache is concerned: all of them, the
/// last `window` (Mistral, gpt-oss's sliding layers), or those of its own `chunk` (Llama 4's
/// chunked layers). A reach short of the whole context lets older blocks leave the cache.
public struct CacheReach: Hashable, Sendable {
    public var window: Int?
    public var chunk: Int?

    public init(window: Int? = nil, chunk: Int? = nil) {
        self.window = window
        self.chunk = chunk
    }

    public var isWholeContext: Bool { window == nil && chunk == nil }

    /// "whole context", "window 128", "chunk 8192".
    public var summary: String {
        ([window.map { "window \($0)" }, chunk.map { "chunk \($0)" }].compactMap { $0 }.first) ?? "whole context"
    }

    /// The first position a query at `position` sees (never decreasing as `position` grows).
    public func firstVisible(from position: Int) -> Int {
        var first = chunk.map { (position / $0) * $0 } ?? 0
        if let window { first = max(first, position - window + 1) }
        return first
    }

    /// The most blocks of this reach one sequence needs at a time to take its next position,
    /// whatever its length (nil: every block of the whole context). The visible span covers
    /// `window` (or `chunk`) positions, which straddle at most one block boundary more.
    public var blocksHeldAtMost: Int? {
        [window, chunk].compactMap { $0.map { ($0 - 1) / PagedKVCache.blockSize + 2 } }.min()
    }
}

/// Layers whose KV cache blocks are allotted together, as vLLM's KV cache groups: a sequence has
/// one block table per group, and a block of the pool, once given to a group, holds its 16
/// positions for every layer of that group. Layers are split by reach, then into groups of one
/// size (the largest that divides every reach's layer count), so every block is the same size
/// and one pool serves all groups without padding.
public struct KVCacheGroup: Sendable, Equatable {
    public var layers: [Int]
    public var reach: CacheReach

    public init(layers: [Int], reach: CacheReach) {
        self.layers = layers
        self.reach = reach
    }
}

extension ModelSpec {
    /// The model's KV cache groups, layers in order within each.
    public var cacheGroups: [KVCacheGroup] {
        var byReach: [(reach: CacheReach, layers: [Int])] = []
        for (index, layer) in layers.enumerated() {
            let reach = layer.attention.reach
            if let known = byReach.firstIndex(where: { $0.reach == reach }) {
                byReach[known].layers.append(index)
            } else {
                byReach.append((reach, [index]))
            }
        }
        let size = byReach.reduce(0) { greatestCommonDivisor($0, $1.layers.count) }
        return byReach.flatMap { entry in
            stride(from: 0, to: entry.layers.count, by: size).map {
                KVCacheGroup(layers: Array(entry.layers[$0 ..< $0 + size]), reach: entry.reach)
            }
        }
    }

    /// "3 KV cache groups of 1 layer: 2 × window 4, 1 × whole context" (nil for one group).
    public var cacheGroupSummary: String? {
        let groups = cacheGroups
        guard groups.count > 1, let size = groups.first?.layers.count else { return nil }
        var counts: [(reach: CacheReach, groups: Int)] = []
        for group in groups {
            if let known = counts.firstIndex(where: { $0.reach == group.reach }) {
                counts[known].groups += 1
            } else {
                counts.append((group.reach, 1))
            }
        }
        return "\(groups.count) KV cache groups of \(size) layer\(size == 1 ? "" : "s"): "
            + counts.map { "\($0.groups) × \($0.reach.summary)" }.joined(separator: ", ")
    }

    /// Blocks (over every group) one sequence of `positions` positions needs at most at once.
    public func cacheBlocksAtMost(positions: Int) -> Int {
        let size = PagedKVCache.blockSize
        let all = positions / size + (positions % size == 0 ? 0 : 1)
        return cacheGroups.reduce(0) { $0 + min(all, $1.reach.blocksHeldAtMost ?? all) }
    }
}

private func greatestCommonDivisor(_ a: Int, _ b: Int) -> Int { b == 0 ? a : greatestCommonDivisor(b, a % b) }
