import MeshModels
import XCTest

/// `--overlap-exchanges auto`: each group of steps times both ways, then runs the faster one, and
/// tries the other every 16th step so that a change in the cluster is noticed.
final class OverlapTunerTests: XCTestCase {
    /// Runs `steps` steps of `group` whose time per row is `split` or `whole`; returns the choices.
    func run(_ tuner: OverlapTuner, _ group: OverlapTuner.Group, steps: Int, split: Double, whole: Double) -> [Bool] {
        (0..<steps).map { _ in
            let choice = tuner.split(group)
            tuner.record(group, split: choice, secondsPerRow: choice ? split : whole)
            return choice
        }
    }

    func testEachGroupLearnsTheFasterWayAndKeepsTryingTheOther() {
        let tuner = OverlapTuner()
        let decode16 = OverlapTuner.Group(rows: 16, decodeOnly: true)
        let decode2 = OverlapTuner.Group(rows: 2, decodeOnly: true)
        XCTAssertEqual(OverlapTuner.Group(rows: 23, decodeOnly: true), decode16, "rows round down to a power of two")
        XCTAssertNotEqual(OverlapTuner.Group(rows: 16, decodeOnly: false), decode16, "prompt steps are timed apart")

        // Big decode steps gain from the overlap, small ones lose: each group learns its own answer.
        let big = run(tuner, decode16, steps: 64, split: 1.0, whole: 1.5)
        let small = run(tuner, decode2, steps: 64, split: 2.0, whole: 1.0)
        XCTAssertEqual(big.prefix(6).filter { $0 }.count, 3, "both ways are timed first: \(big.prefix(6))")
        XCTAssertEqual(tuner.choice(decode16), true)
        XCTAssertEqual(tuner.choice(decode2), false)
        XCTAssertEqual(big.dropFirst(6).filter { !$0 }.count, 64 / 16, "the slower way runs every 16th step")
        XCTAssertEqual(small.dropFirst(6).filter { $0 }.count, 64 / 16)
        XCTAssertNil(tuner.choice(OverlapTuner.Group(rows: 8, decodeOnly: false)), "an untimed group has no choice yet")

        // The cluster changes (a link slows): the way chosen slows, and the choice turns.
        let after = run(tuner, decode2, steps: 64, split: 1.0, whole: 3.0)
        XCTAssertEqual(tuner.choice(decode2), true)
        XCTAssertTrue(after.suffix(16).filter { $0 }.count >= 15, "\(after)")
        // The way not chosen becomes faster (the link is fast again): the next try of it turns the choice.
        let faster = run(tuner, decode16, steps: 16, split: 1.0, whole: 0.5)
        XCTAssertEqual(tuner.choice(decode16), false, "\(faster)")
        XCTAssertEqual(faster.suffix(1), [false], "\(faster)")
    }
}
