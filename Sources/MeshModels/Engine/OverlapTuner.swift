/// Whether a step runs as two micro-batches that overlap their exchanges (`--overlap-exchanges`).
public enum MicroBatchOverlap: String, Sendable, CaseIterable {
    /// One piece (the default).
    case off
    /// Two micro-batches whenever the step has two rows or more.
    case on
    /// Learned from the steps themselves (`OverlapTuner`).
    case auto

    /// What the log says of it (nil: off).
    public var summary: String? {
        switch self {
        case .off: nil
        case .on: "each step runs as two micro-batches that overlap their expert exchanges"
        case .auto: "steps run as two micro-batches that overlap their expert exchanges where that is faster"
        }
    }
}

/// Learns from the steps whether cutting them in two micro-batches pays: that depends on the
/// network, the workers' cores and how often the two halves share experts, which no config says.
/// Steps are grouped by size (rows rounded down to a power of two) and kind (decode only, or with
/// prompt rows); each group times both ways (seconds per row, a moving average), takes the faster,
/// and tries the other again every `exploreEvery` steps, in case the cluster changed: that try
/// replaces the other way's figure, so one faster try turns the choice.
public final class OverlapTuner {
    public struct Group: Hashable, Sendable {
        public var rows: Int
        public var decodeOnly: Bool

        public init(rows: Int, decodeOnly: Bool) {
            self.rows = rows < 1 ? 0 : 1 << (Int.bitWidth - 1 - rows.leadingZeroBitCount)
            self.decodeOnly = decodeOnly
        }
    }

    /// Seconds per row, moving average, and how many steps it has seen.
    struct Timing {
        var secondsPerRow = 0.0
        var samples = 0
    }

    /// Steps each way a group times before it chooses.
    let warmup: Int
    let exploreEvery: Int
    /// Weight of a new step in the moving average.
    let weight = 0.25
    private var timings: [Group: (split: Timing, whole: Timing)] = [:]
    private var steps: [Group: Int] = [:]

    public init(warmup: Int = 3, exploreEvery: Int = 16) {
        self.warmup = warmup
        self.exploreEvery = exploreEvery
    }

    /// Whether the next step of `group` runs in two micro-batches.
    public func split(_ group: Group) -> Bool {
        let count = steps[group, default: 0]
        steps[group] = count + 1
        let (split, whole) = timings[group] ?? (Timing(), Timing())
        if split.samples < warmup || whole.samples < warmup { return split.samples <= whole.samples }
        let faster = split.secondsPerRow < whole.secondsPerRow
        return count % exploreEvery == exploreEvery - 1 ? !faster : faster
    }

    /// What a step of `group` took, run `split` or whole.
    public func record(_ group: Group, split: Bool, secondsPerRow: Double) {
        var pair = timings[group] ?? (Timing(), Timing())
        // A try of the way not chosen: its old figure may no longer hold; this one is current.
        let explored = choice(group).map { $0 != split } ?? false
        func update(_ timing: inout Timing) {
            timing.secondsPerRow = timing.samples == 0 || explored ? secondsPerRow
                : (1 - weight) * timing.secondsPerRow + weight * secondsPerRow
            timing.samples += 1
        }
        if split { update(&pair.split) } else { update(&pair.whole) }
        timings[group] = pair
    }

    /// The choice for `group` once it has timed both ways (nil before).
    public func choice(_ group: Group) -> Bool? {
        guard let (split, whole) = timings[group], split.samples >= warmup, whole.samples >= warmup else { return nil }
        return split.secondsPerRow < whole.secondsPerRow
    }
}
