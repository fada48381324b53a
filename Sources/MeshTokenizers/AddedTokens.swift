/// Tokens matched verbatim before normalisation and BPE (special tokens such as `<s>` and
/// non-special additions). Text is split on them, longest match first at each position.
struct AddedToken {
    let id: Int
    let content: String
    let special: Bool
    let lstrip: Bool
    let rstrip: Bool
    let singleWord: Bool
    let normalized: Bool

    init(_ json: JSONObject) throws {
        id = try json.require("id", "added_tokens entry") as Int
        content = try json.require("content", "added_tokens entry")
        special = json.bool("special") ?? false
        lstrip = json.bool("lstrip") ?? false
        rstrip = json.bool("rstrip") ?? false
        singleWord = json.bool("single_word") ?? false
        normalized = json.bool("normalized") ?? !special
    }
}

enum Segment {
    case text(String, isFirst: Bool)
    case added(AddedToken)
}

struct AddedTokenSplitter {
    /// Sorted longest first so that the longest token wins at a position; with their scalars.
    let tokens: [(token: AddedToken, scalars: [Unicode.Scalar])]

    /// First scalar → indices into `tokens` (longest first): only these can match there.
    private let byFirstScalar: [Unicode.Scalar: [Int]]

    init(_ tokens: [AddedToken]) {
        self.tokens = tokens.filter { !$0.content.isEmpty }.map { ($0, Array($0.content.unicodeScalars)) }
            .sorted { $0.scalars.count > $1.scalars.count }
        var index: [Unicode.Scalar: [Int]] = [:]
        for (position, entry) in self.tokens.enumerated() { index[entry.scalars[0], default: []].append(position) }
        byFirstScalar = index
    }

    /// True when `needle` occurs in `scalars` at `start`.
    private static func matches(_ needle: [Unicode.Scalar], in scalars: [Unicode.Scalar], at start: Int) -> Bool {
        guard start + needle.count <= scalars.count else { return false }
        for k in 0..<needle.count where scalars[start + k] != needle[k] { return false }
        return true
    }

    func split(_ text: String) -> [Segment] {
        guard !tokens.isEmpty else { return text.isEmpty ? [] : [.text(text, isFirst: true)] }
        let scalars = Array(text.unicodeScalars)
        var segments: [Segment] = []
        var pending: [Unicode.Scalar] = []
        var pendingStart = 0
        var i = 0
        func flushText() {
            if !pending.isEmpty {
                var view = String.UnicodeScalarView()
                view.append(contentsOf: pending)
                segments.append(.text(String(view), isFirst: pendingStart == 0))
            }
            pending = []
        }
        outer: while i < scalars.count {
            for candidate in byFirstScalar[scalars[i]] ?? [] {
                let (token, needle) = tokens[candidate]
                guard Self.matches(needle, in: scalars, at: i) else { continue }
                if token.singleWord {
                    let before = i > 0 ? scalars[i - 1].properties.isAlphabetic || scalars[i - 1].properties.numericType != nil : false
                    let afterIndex = i + needle.count
                    let after = afterIndex < scalars.count ? scalars[afterIndex].properties.isAlphabetic || scalars[afterIndex].properties.numericType != nil : false
                    if before || after { continue }
                }
                if token.lstrip { while let last = pending.last, last.properties.isWhitespace { pending.removeLast() } }
                flushText()
                segments.append(.added(token))
                i += needle.count
                if token.rstrip { while i < scalars.count, scalars[i].properties.isWhitespace { i += 1 } }
                pendingStart = i
                continue outer
            }
            if pending.isEmpty { pendingStart = i }
            pending.append(scalars[i])
            i += 1
        }
        flushText()
        return segments
    }
}
