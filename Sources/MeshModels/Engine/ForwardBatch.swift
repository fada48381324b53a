/// One step of the engine: T tokens from one or more sequences, each sequence's tokens
/// contiguous and at consecutive positions of its own KV cache blocks.
public struct ForwardBatch: Sendable {
    public struct Segment: Sendable {
        /// Rows of the batch (and of `tokens`) that belong to this sequence.
        public var rows: Range<Int>
        /// Position of the first row in its sequence; earlier positions are already cached.
        public var start: Int
        /// The sequence's KV cache blocks, covering at least positions 0 ..< start + rows.count.
        public var blockTable: [Int]

        public init(rows: Range<Int>, start: Int, blockTable: [Int]) {
            self.rows = rows
            self.start = start
            self.blockTable = blockTable
        }
    }

    public var tokens: [Int] = []
    public var segments: [Segment] = []
    /// Rows whose logits the step returns, in this order.
    public var logitRows: [Int] = []

    public init() {}

    /// Appends `tokens` of a sequence whose first `start` positions are cached; returns its rows.
    @discardableResult
    public mutating func append(_ tokens: ArraySlice<Int>, start: Int, blockTable: [Int]) -> Range<Int> {
        let rows = self.tokens.count ..< self.tokens.count + tokens.count
        self.tokens += tokens
        segments.append(Segment(rows: rows, start: start, blockTable: blockTable))
        return rows
    }

    public var isEmpty: Bool { tokens.isEmpty }

    /// Position of every row in its own sequence, and the slot its key and value go to.
    func rowLayout() -> (positions: [Int], slots: [Int], segment: [Int]) {
        var positions = [Int](repeating: 0, count: tokens.count)
        var slots = positions
        var segmentOfRow = positions
        for (index, segment) in segments.enumerated() {
            for row in segment.rows {
                let position = segment.start + row - segment.rows.lowerBound
                positions[row] = position
                slots[row] = segment.slot(position)
                segmentOfRow[row] = index
            }
        }
        return (positions, slots, segmentOfRow)
    }
}

extension ForwardBatch.Segment {
    @inline(__always) func slot(_ position: Int) -> Int {
        blockTable[position / PagedKVCache.blockSize] * PagedKVCache.blockSize + position % PagedKVCache.blockSize
    }
}
