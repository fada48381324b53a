import MeshTensors

/// One step of the engine: T tokens from one or more sequences, each sequence's tokens
/// contiguous and at consecutive positions of its own KV cache blocks.
public struct ForwardBatch: Sendable {
    public struct Segment: Sendable {
        /// Rows of the batch (and of `tokens`) that belong to this sequence.
        public var rows: Range<Int>
        /// Position of the first row in its sequence; earlier positions are already cached.
        public var start: Int
        /// The sequence's KV cache blocks, one table per KV cache group, each covering (at least)
        /// the positions its layers' queries see, up to start + rows.count.
        public var blockTables: [[Int]]
        /// Positions from here on carry tokens the model generated (the rest, the prompt).
        public var promptLength: Int

        public init(rows: Range<Int>, start: Int, blockTables: [[Int]], promptLength: Int) {
            self.rows = rows
            self.start = start
            self.blockTables = blockTables
            self.promptLength = promptLength
        }
    }

    public var tokens: [Int] = []
    public var segments: [Segment] = []
    /// Rows whose logits the step returns, in this order.
    public var logitRows: [Int] = []

    public init() {}

    /// Appends `tokens` of a sequence whose first `start` positions are cached and whose prompt
    /// is its first `promptLength` tokens; returns its rows.
    @discardableResult
    public mutating func append(_ tokens: ArraySlice<Int>, start: Int, blockTables: [[Int]],
                                promptLength: Int) -> Range<Int> {
        let rows = self.tokens.count ..< self.tokens.count + tokens.count
        self.tokens += tokens
        segments.append(Segment(rows: rows, start: start, blockTables: blockTables, promptLength: promptLength))
        return rows
    }

    public var isEmpty: Bool { tokens.isEmpty }

    /// The batch cut into at most `parts` micro-batches of nearly equal rows (a sequence may be
    /// cut between two), each with the rows of this batch it holds. They ask for no logits.
    public func split(into parts: Int) -> [(rows: Range<Int>, batch: ForwardBatch)] {
        let t = tokens.count
        let count = max(1, min(parts, t))
        return (0..<count).map { part in
            let rows = t * part / count ..< t * (part + 1) / count
            var piece = ForwardBatch()
            for segment in segments {
                let shared = segment.rows.clamped(to: rows)
                guard !shared.isEmpty else { continue }
                let skipped = shared.lowerBound - segment.rows.lowerBound
                piece.append(tokens[shared], start: segment.start + skipped, blockTables: segment.blockTables,
                             promptLength: segment.promptLength)
            }
            return (rows, piece)
        }
    }

    /// Position of every row in its own sequence, the slot its key and value go to in each KV cache
    /// group, its segment, and whether it is generated (`generatedRows`).
    func rowLayout() -> RowLayout {
        var layout = RowLayout(positions: [Int](repeating: 0, count: tokens.count), slots: [], segment: [],
                               generated: generatedRows())
        layout.slots = Array(repeating: layout.positions, count: segments.first?.blockTables.count ?? 0)
        layout.segment = layout.positions
        for (index, segment) in segments.enumerated() {
            for row in segment.rows {
                let position = segment.start + row - segment.rows.lowerBound
                layout.positions[row] = position
                for group in layout.slots.indices { layout.slots[group][row] = segment.slot(position, group: group) }
                layout.segment[row] = index
            }
        }
        return layout
    }

    /// Per row: whether it carries a generated token that takes other kernels than prompt tokens
    /// (`matmul`'s `generated`; see `MatmulKernels.rowKernels`). All false where the kernels are the same.
    func generatedRows() -> [Bool] {
        var generated = [Bool](repeating: false, count: tokens.count)
        guard MatmulKernels.generatedTokensTakeOtherKernels else { return generated }
        for segment in segments {
            for row in segment.rows where segment.start + row - segment.rows.lowerBound >= segment.promptLength {
                generated[row] = true
            }
        }
        return generated
    }
}

/// Per row of a batch: see `ForwardBatch.rowLayout`.
struct RowLayout {
    var positions: [Int]
    /// slots[group][row]
    var slots: [[Int]]
    var segment: [Int]
    var generated: [Bool]
}

extension ForwardBatch.Segment {
    @inline(__always) func slot(_ position: Int, group: Int) -> Int {
        blockTables[group][position / PagedKVCache.blockSize] * PagedKVCache.blockSize + position % PagedKVCache.blockSize
    }
}
