import Foundation
import MeshTensors
import XCTest

final class KernelTests: XCTestCase {
    /// Every item is visited once, ranges start on the granularity, hold the minimum where there is enough, and
    /// shrink as the loop goes (guided: long first streams, short last ones, so threads finish together).
    func testParallelRangesCoverEachItemOnceAndShrink() {
        let threads = Parallel.coreCount
        defer { Parallel.setThreadCount(threads) }
        for threadCount in [1, 2, 3] {
            Parallel.setThreadCount(threadCount)
            for (count, minimum, granularity) in [(5632, 64, 32), (1000, 1, 1), (100, 64, 32), (7, 4, 1), (1 << 20, 4096, 1)] {
                let lock = NSLock()
                var ranges: [Range<Int>] = []
                Parallel.forRanges(count, minimumPerTask: minimum, granularity: granularity) { range in
                    lock.lock(); ranges.append(range); lock.unlock()
                }
                ranges.sort { $0.lowerBound < $1.lowerBound }
                let label = "\(count) items, minimum \(minimum), granularity \(granularity), \(threadCount) threads"
                XCTAssertEqual(ranges.first?.lowerBound, 0, label)
                XCTAssertEqual(ranges.last?.upperBound, count, label)
                for (a, b) in zip(ranges, ranges.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound, label) }
                XCTAssertTrue(ranges.allSatisfy { $0.lowerBound % granularity == 0 }, label)
                if threadCount == 1 || count < 2 * minimum { XCTAssertEqual(ranges.count, 1, label); continue }
                XCTAssertGreaterThan(ranges.count, threadCount, label)
                XCTAssertTrue(ranges.allSatisfy { $0.count >= minimum }, label)
                for (a, b) in zip(ranges, ranges.dropFirst().dropLast()) { XCTAssertGreaterThanOrEqual(a.count, b.count, label) }
                XCTAssertLessThan(ranges[ranges.count - 2].count, ranges[0].count, label)
                XCTAssertLessThanOrEqual(ranges.first!.count, (count + 2 * threadCount - 1) / (2 * threadCount) + granularity,
                                         label)
            }
        }
    }

    func testTopKOrdersDescendingAndBreaksTiesByIndex() {
        let values: [Float] = [0.1, 0.9, 0.5, 0.9, -1]
        XCTAssertEqual(topK(values, count: 5, k: 3), [1, 3, 2])
    }

    func testSoftmaxSumsToOneAndIsStable() {
        var values: [Float] = [1000, 1001, 1002]
        softmax(&values, count: 3)
        XCTAssertEqual(values.reduce(0, +), 1, accuracy: 1e-6)
        XCTAssertEqual(values[2], 0.66524096, accuracy: 1e-6)
    }

    func testRopePairings() {
        // One head of 4 dims at position 1 with theta 1: frequencies [1, 1/1] → angles [1, 1·1^-0.5].
        let rope = RotaryEmbedding(headDim: 4, theta: 10000, pairing: .halves)
        var halves: [Float] = [1, 0, 0, 0]
        rope.apply(&halves, heads: 1, position: 1)
        // rotate_half pairs (0, 2): x0' = cos(1), x2' = sin(1).
        XCTAssertEqual(halves[0], cos(1), accuracy: 1e-6)
        XCTAssertEqual(halves[2], sin(1), accuracy: 1e-6)
        let interleavedRope = RotaryEmbedding(headDim: 4, theta: 10000, pairing: .interleaved)
        var interleaved: [Float] = [1, 0, 0, 0]
        interleavedRope.apply(&interleaved, heads: 1, position: 1)
        // complex pairs (0, 1): x0' = cos(1), x1' = sin(1).
        XCTAssertEqual(interleaved[0], cos(1), accuracy: 1e-6)
        XCTAssertEqual(interleaved[1], sin(1), accuracy: 1e-6)
    }

    func testRmsNorm() {
        let x: [Float] = [3, 4]
        var y: [Float] = [0, 0]
        rmsNorm(x, rows: 1, width: 2, weight: [1, 2], eps: 0, into: &y)
        let rms = Float(12.5).squareRoot()
        XCTAssertEqual(y[0], 3 / rms, accuracy: 1e-6)
        XCTAssertEqual(y[1], 8 / rms, accuracy: 1e-6)
    }
}
