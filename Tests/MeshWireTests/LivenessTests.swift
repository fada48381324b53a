import MeshTransport
import XCTest

final class LivenessTests: XCTestCase {
    func testPeerDiesAfterThreeSilentIntervalsAndRevivesOnAnyMessage() {
        var liveness = Liveness(interval: 1, maxLives: 3, now: 0)
        liveness.tick(at: 0.9)
        XCTAssertEqual(liveness.lives, 3)
        liveness.tick(at: 2.5)
        XCTAssertEqual(liveness.lives, 1)
        XCTAssertTrue(liveness.isAlive)
        liveness.tick(at: 3.0)
        XCTAssertFalse(liveness.isAlive)
        liveness.heard(at: 3.1)
        XCTAssertTrue(liveness.isAlive)
        XCTAssertEqual(liveness.lives, 3)
    }

    func testHeartbeatsAreDueOncePerInterval() {
        var liveness = Liveness(interval: 1, now: 0)
        XCTAssertFalse(liveness.shouldSendHeartbeat(at: 0.5))
        XCTAssertTrue(liveness.shouldSendHeartbeat(at: 1.0))
        XCTAssertFalse(liveness.shouldSendHeartbeat(at: 1.5))
        XCTAssertTrue(liveness.shouldSendHeartbeat(at: 2.1))
    }

    func testBackoffDoublesToCeilingAndResets() {
        var backoff = Backoff(initial: 0.1, maximum: 0.5)
        XCTAssertEqual([backoff.next(), backoff.next(), backoff.next(), backoff.next()], [0.1, 0.2, 0.4, 0.5])
        backoff.reset()
        XCTAssertEqual(backoff.next(), 0.1)
    }
}
