import MeshTokenizers

/// Turns one response's generated tokens into text: whole characters only (a UTF-8 sequence split
/// across tokens waits for its end), special tokens skipped when asked, and stop strings matched
/// on the text across token boundaries. The stop string and all after it are never returned;
/// text that could still begin a stop string is held back until it is ruled out.
public struct TextAssembler: Sendable {
    private var decoder: StreamingDecoder?
    private let stops: [[Unicode.Scalar]]
    /// Decoded but not yet released (it may begin a stop string).
    private var held: [Unicode.Scalar] = []
    /// The stop string that ended the text, once one did.
    public private(set) var matchedStop: String?

    public init(tokenizer: Tokenizer?, stop: [String], skipSpecialTokens: Bool) {
        decoder = tokenizer.map { StreamingDecoder(tokenizer: $0, skipSpecialTokens: skipSpecialTokens) }
        stops = stop.map { Array($0.unicodeScalars) }
    }

    /// The text this token releases; after a stop string matched, nothing more.
    public mutating func push(_ token: Int) -> String {
        guard matchedStop == nil, var decoder else { return "" }
        held += decoder.push(token).unicodeScalars
        self.decoder = decoder
        return release(final: false)
    }

    /// Whatever is still held at the end of generation.
    public mutating func finish() -> String {
        guard matchedStop == nil, var decoder else { return "" }
        held += decoder.finish().unicodeScalars
        self.decoder = decoder
        return release(final: true)
    }

    private mutating func release(final: Bool) -> String {
        if let (start, stop) = earliestStop() {
            matchedStop = String(String.UnicodeScalarView(stops[stop]))
            defer { held = [] }
            return String(String.UnicodeScalarView(held[..<start]))
        }
        let keep = final ? 0 : longestSuffixStartingAStop()
        let released = held[..<(held.count - keep)]
        held.removeFirst(released.count)
        return String(String.UnicodeScalarView(released))
    }

    /// Where the first stop string begins in `held`, and which one.
    private func earliestStop() -> (start: Int, stop: Int)? {
        guard !stops.isEmpty, !held.isEmpty else { return nil }
        for start in held.indices {
            for (index, stop) in stops.enumerated() where start + stop.count <= held.count {
                if held[start ..< start + stop.count].elementsEqual(stop) { return (start, index) }
            }
        }
        return nil
    }

    /// The length of the longest end of `held` that is the beginning of some stop string.
    private func longestSuffixStartingAStop() -> Int {
        var longest = 0
        for stop in stops {
            for length in stride(from: min(stop.count - 1, held.count), to: longest, by: -1)
            where held[(held.count - length)...].elementsEqual(stop[..<length]) {
                longest = length
                break
            }
        }
        return longest
    }
}
