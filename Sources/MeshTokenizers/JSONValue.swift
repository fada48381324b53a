import Foundation

/// Helpers to read the untyped JSON of tokenizer.json with errors that name the field.
typealias JSONObject = [String: Any]

extension Dictionary where Key == String, Value == Any {
    func string(_ key: String) -> String? { self[key] as? String }
    func bool(_ key: String) -> Bool? { self[key] as? Bool }
    func int(_ key: String) -> Int? { (self[key] as? NSNumber)?.intValue }
    func object(_ key: String) -> JSONObject? { self[key] as? JSONObject }
    func objects(_ key: String) -> [JSONObject]? { self[key] as? [JSONObject] }

    func require<T>(_ key: String, _ context: String) throws -> T {
        guard let value = self[key] as? T else { throw TokenizerError("tokenizer.json: \(context) lacks field '\(key)'") }
        return value
    }

    /// A `pattern` field: {"String": "…"} (literal) or {"Regex": "…"}.
    func pattern(_ context: String) throws -> Pattern {
        let pattern: JSONObject = try require("pattern", context)
        if let literal = pattern.string("String") { return .literal(literal) }
        if let regex = pattern.string("Regex") { return try .regex(RegexPattern(regex)) }
        throw TokenizerError("tokenizer.json: \(context) pattern must be {\"String\": …} or {\"Regex\": …}")
    }
}

enum Pattern {
    case literal(String)
    case regex(RegexPattern)

    /// Ranges of every non-overlapping match, left to right.
    func matches(in text: String) -> [Range<String.Index>] {
        switch self {
        case .literal(let literal):
            // A scalar-by-scalar scan: exact (no canonical equivalence) and linear in the text,
            // unlike Foundation's range(of:) in a loop, which bridges the string on every call.
            let needle = Array(literal.unicodeScalars)
            guard let first = needle.first else { return [] }
            let scalars = text.unicodeScalars
            var result: [Range<String.Index>] = []
            var index = scalars.startIndex
            while index < scalars.endIndex {
                if scalars[index] == first {
                    var end = scalars.index(after: index)
                    var matched = 1
                    while matched < needle.count, end < scalars.endIndex, scalars[end] == needle[matched] {
                        end = scalars.index(after: end)
                        matched += 1
                    }
                    if matched == needle.count {
                        result.append(index..<end)
                        index = end
                        continue
                    }
                }
                index = scalars.index(after: index)
            }
            return result
        case .regex(let regex):
            return regex.matches(in: text)
        }
    }
}

/// A compiled pre-tokenizer/normalizer regex (Oniguruma syntax as HF writes it; Swift Regex reads
/// the constructs used by real tokenizers: \p{L}, \p{N}, (?i:…), lookahead).
struct RegexPattern: @unchecked Sendable {
    let source: String
    private let regex: Regex<AnyRegexOutput>

    init(_ source: String) throws {
        self.source = source
        do {
            regex = try Regex(source)
        } catch {
            throw TokenizerError("tokenizer.json: regex \(source) is not supported: \(error)")
        }
    }

    func matches(in text: String) -> [Range<String.Index>] {
        // Match on unicode scalars, as HF (Rust) does, not on grapheme clusters.
        text.matches(of: regex.matchingSemantics(.unicodeScalar)).map(\.range).filter { !$0.isEmpty }
    }
}
