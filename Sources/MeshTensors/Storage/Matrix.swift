/// A dense row-major f32 matrix [rows, columns] owned by the engine (activations, caches).
/// A class so that kernels can write into it without copy-on-write checks in hot loops.
public final class Matrix: @unchecked Sendable {
    public private(set) var rows: Int
    public let columns: Int
    public private(set) var data: UnsafeMutablePointer<Float>
    private var capacityRows: Int

    public init(rows: Int, columns: Int) {
        self.rows = rows
        self.columns = columns
        capacityRows = max(rows, 1)
        data = .allocate(capacity: capacityRows * columns)
        data.initialize(repeating: 0, count: capacityRows * columns)
    }

    public convenience init(rows: Int, columns: Int, values: [Float]) {
        self.init(rows: rows, columns: columns)
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: min(values.count, rows * columns)) }
    }

    deinit { data.deallocate() }

    @inline(__always) public func row(_ r: Int) -> UnsafeMutablePointer<Float> { data + r * columns }

    public var count: Int { rows * columns }

    public func zero() { data.update(repeating: 0, count: rows * columns) }

    /// Grows (keeping contents) so that `rows` rows fit; amortised doubling for KV caches.
    public func resize(rows newRows: Int) {
        if newRows > capacityRows {
            let newCapacity = max(newRows, capacityRows * 2)
            let grown = UnsafeMutablePointer<Float>.allocate(capacity: newCapacity * columns)
            grown.initialize(repeating: 0, count: newCapacity * columns)
            grown.update(from: data, count: rows * columns)
            data.deallocate()
            data = grown
            capacityRows = newCapacity
        }
        rows = newRows
    }

    public func toArray() -> [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    public func rowArray(_ r: Int) -> [Float] { Array(UnsafeBufferPointer(start: row(r), count: columns)) }

    /// self += other, element-wise.
    public func add(_ other: Matrix) {
        for i in 0..<count { data[i] += other.data[i] }
    }

    /// Every row += `vector` [columns] (a projection's bias); nothing when there is none.
    public func addToEveryRow(_ vector: [Float]?) {
        guard let vector else { return }
        precondition(vector.count == columns, "a bias of \(vector.count) values for rows of \(columns)")
        for r in 0..<rows {
            let target = row(r)
            for j in 0..<columns { target[j] += vector[j] }
        }
    }
}
