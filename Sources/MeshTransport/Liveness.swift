/// Paranoid Pirate liveness as a pure state machine (the zguide's pattern): a peer is alive
/// while messages keep arriving; each silent heartbeat interval costs one life; at zero the
/// peer is dead. Time is passed in, so tests drive it with a fake clock.
public struct Liveness: Sendable {
    public let interval: Double
    public let maxLives: Int
    public private(set) var lives: Int
    private var lastHeard: Double
    private var lastSent: Double

    public init(interval: Double, maxLives: Int = 3, now: Double) {
        self.interval = interval
        self.maxLives = maxLives
        lives = maxLives
        lastHeard = now
        lastSent = now
    }

    /// Any message from the peer restores every life.
    public mutating func heard(at now: Double) {
        lastHeard = now
        lives = maxLives
    }

    /// Counts whole silent intervals since the last message.
    public mutating func tick(at now: Double) {
        let silentIntervals = Int((now - lastHeard) / interval)
        lives = max(0, maxLives - silentIntervals)
    }

    public var isAlive: Bool { lives > 0 }

    /// Seconds since the peer was last heard.
    public func silence(at now: Double) -> Double { now - lastHeard }

    /// True when we have been quiet for an interval and should send a heartbeat.
    public mutating func shouldSendHeartbeat(at now: Double) -> Bool {
        guard now - lastSent >= interval else { return false }
        lastSent = now
        return true
    }

    public mutating func sent(at now: Double) { lastSent = now }
}

/// Exponential reconnect backoff: initial, doubling to a ceiling, reset on success.
public struct Backoff: Sendable {
    public let initial: Double
    public let maximum: Double
    public private(set) var current: Double

    public init(initial: Double = 0.1, maximum: Double = 5) {
        self.initial = initial
        self.maximum = maximum
        current = initial
    }

    /// The delay to wait before the next attempt, then doubles it.
    public mutating func next() -> Double {
        defer { current = min(maximum, current * 2) }
        return current
    }

    public mutating func reset() { current = initial }
}
