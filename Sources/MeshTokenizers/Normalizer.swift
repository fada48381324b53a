import Foundation

/// Text normalisation applied to each piece of text between added tokens.
indirect enum Normalizer {
    case sequence([Normalizer])
    case prepend(String)
    case replace(Pattern, String)
    case nfc, nfd, nfkc, nfkd
    case lowercase
    case strip(left: Bool, right: Bool)

    static func parse(_ json: JSONObject?) throws -> Normalizer? {
        guard let json else { return nil }
        let type: String = try json.require("type", "normalizer")
        switch type {
        case "Sequence":
            let items: [JSONObject] = try json.require("normalizers", "Sequence normalizer")
            return .sequence(try items.compactMap { try parse($0) })
        case "Prepend": return .prepend(try json.require("prepend", "Prepend normalizer"))
        case "Replace": return .replace(try json.pattern("Replace normalizer"), try json.require("content", "Replace normalizer"))
        case "NFC": return .nfc
        case "NFD": return .nfd
        case "NFKC": return .nfkc
        case "NFKD": return .nfkd
        case "Lowercase": return .lowercase
        case "Strip": return .strip(left: json.bool("strip_left") ?? true, right: json.bool("strip_right") ?? true)
        default:
            throw TokenizerError("tokenizer.json: normalizer '\(type)' is not supported; supported: Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase, Strip")
        }
    }

    func apply(_ text: String) -> String {
        switch self {
        case .sequence(let items): return items.reduce(text) { $1.apply($0) }
        case .prepend(let prefix): return text.isEmpty ? text : prefix + text
        case .replace(let pattern, let content): return replacing(pattern, in: text, with: content)
        case .nfc: return text.precomposedStringWithCanonicalMapping
        case .nfd: return text.decomposedStringWithCanonicalMapping
        case .nfkc: return text.precomposedStringWithCompatibilityMapping
        case .nfkd: return text.decomposedStringWithCompatibilityMapping
        case .lowercase: return text.lowercased()
        case .strip(let left, let right):
            var scalars = Substring(text)
            if left { scalars = scalars.drop(while: { $0.isWhitespace }) }
            if right { while let last = scalars.last, last.isWhitespace { scalars = scalars.dropLast() } }
            return String(scalars)
        }
    }
}

func replacing(_ pattern: Pattern, in text: String, with content: String) -> String {
    let ranges = pattern.matches(in: text)
    guard !ranges.isEmpty else { return text }
    var result = ""
    var cursor = text.startIndex
    for range in ranges {
        result += text[cursor..<range.lowerBound]
        result += content
        cursor = range.upperBound
    }
    result += text[cursor...]
    return result
}
