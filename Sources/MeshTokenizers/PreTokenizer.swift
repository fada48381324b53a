/// Splits normalised text into words before BPE. Pieces carry whether they begin the input
/// (Metaspace's "first" prepend scheme only applies there).
struct Piece {
    var text: String
    var isFirst: Bool
}

indirect enum PreTokenizer {
    enum Behavior: String { case isolated = "Isolated", removed = "Removed", mergedWithPrevious = "MergedWithPrevious", mergedWithNext = "MergedWithNext", contiguous = "Contiguous" }

    case sequence([PreTokenizer])
    case split(Pattern, Behavior, invert: Bool)
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case metaspace(replacement: String, prependScheme: String, split: Bool)
    case digits(individual: Bool)

    /// GPT-2's pattern, used by ByteLevel when use_regex is true.
    static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

    static func parse(_ json: JSONObject?) throws -> PreTokenizer? {
        guard let json else { return nil }
        let type: String = try json.require("type", "pre_tokenizer")
        switch type {
        case "Sequence":
            let items: [JSONObject] = try json.require("pretokenizers", "Sequence pre_tokenizer")
            return .sequence(try items.compactMap { try parse($0) })
        case "Split":
            let behaviorName: String = try json.require("behavior", "Split pre_tokenizer")
            guard let behavior = Behavior(rawValue: behaviorName) else {
                throw TokenizerError("tokenizer.json: Split behavior '\(behaviorName)' is not supported")
            }
            return .split(try json.pattern("Split pre_tokenizer"), behavior, invert: json.bool("invert") ?? false)
        case "ByteLevel":
            return .byteLevel(addPrefixSpace: json.bool("add_prefix_space") ?? false, useRegex: json.bool("use_regex") ?? true)
        case "Metaspace":
            let scheme = json.string("prepend_scheme") ?? ((json.bool("add_prefix_space") ?? true) ? "always" : "never")
            return .metaspace(replacement: json.string("replacement") ?? "▁", prependScheme: scheme, split: json.bool("split") ?? true)
        case "Digits":
            return .digits(individual: json.bool("individual_digits") ?? false)
        default:
            throw TokenizerError("tokenizer.json: pre_tokenizer '\(type)' is not supported; supported: Sequence, Split, ByteLevel, Metaspace, Digits")
        }
    }

    func apply(_ pieces: [Piece]) throws -> [Piece] {
        switch self {
        case .sequence(let items):
            return try items.reduce(pieces) { try $1.apply($0) }
        case .split(let pattern, let behavior, let invert):
            return pieces.flatMap { piece in
                PreTokenizer.split(piece, matches: pattern.matches(in: piece.text), behavior: invert ? .removed : behavior)
            }
        case .byteLevel(let addPrefixSpace, let useRegex):
            let regex = useRegex ? try Pattern.regex(RegexPattern(PreTokenizer.gpt2Pattern)) : nil
            return pieces.flatMap { piece -> [Piece] in
                var text = piece.text
                if addPrefixSpace, piece.isFirst, text.unicodeScalars.first != " " { text = " " + text }
                let words = regex.map { PreTokenizer.split(Piece(text: text, isFirst: piece.isFirst), matches: $0.matches(in: text), behavior: .isolated) }
                    ?? [Piece(text: text, isFirst: piece.isFirst)]
                return words.map { Piece(text: ByteLevel.encode($0.text), isFirst: $0.isFirst) }
            }
        case .metaspace(let replacement, let scheme, let split):
            return pieces.flatMap { piece -> [Piece] in
                var text = replacing(.literal(" "), in: piece.text, with: replacement)
                if scheme == "always" || (scheme == "first" && piece.isFirst), text.unicodeScalars.first != replacement.unicodeScalars.first {
                    text = replacement + text
                }
                guard split else { return [Piece(text: text, isFirst: piece.isFirst)] }
                let marks = Pattern.literal(replacement).matches(in: text)
                return PreTokenizer.split(Piece(text: text, isFirst: piece.isFirst), matches: marks, behavior: .mergedWithNext)
            }
        case .digits(let individual):
            let pattern = try Pattern.regex(RegexPattern(individual ? #"\p{N}"# : #"\p{N}+"#))
            return pieces.flatMap { PreTokenizer.split($0, matches: pattern.matches(in: $0.text), behavior: .isolated) }
        }
    }

    /// HF's SplitDelimiterBehavior on one piece given its delimiter matches.
    static func split(_ piece: Piece, matches: [Range<String.Index>], behavior: Behavior) -> [Piece] {
        let text = piece.text
        var parts: [(Range<String.Index>, isMatch: Bool)] = []
        var cursor = text.startIndex
        for match in matches {
            if cursor < match.lowerBound { parts.append((cursor..<match.lowerBound, false)) }
            parts.append((match, true))
            cursor = match.upperBound
        }
        if cursor < text.endIndex { parts.append((cursor..<text.endIndex, false)) }
        var result: [Range<String.Index>] = []
        switch behavior {
        case .isolated:
            result = parts.map(\.0)
        case .removed:
            result = parts.filter { !$0.isMatch }.map(\.0)
        case .mergedWithPrevious:
            for part in parts {
                if part.isMatch, let last = result.last { result[result.count - 1] = last.lowerBound..<part.0.upperBound } else { result.append(part.0) }
            }
        case .mergedWithNext:
            var pending: String.Index?
            for part in parts {
                if part.isMatch {
                    if pending == nil { pending = part.0.lowerBound }
                    if part.0.upperBound == text.endIndex { result.append(pending!..<part.0.upperBound); pending = nil }
                } else {
                    result.append((pending ?? part.0.lowerBound)..<part.0.upperBound)
                    pending = nil
                }
            }
            if let pending { result.append(pending..<text.endIndex) }
        case .contiguous:
            for part in parts {
                if let last = result.last, part.isMatch, parts.contains(where: { $0.0.upperBound == last.upperBound && $0.isMatch }) {
                    result[result.count - 1] = last.lowerBound..<part.0.upperBound
                } else { result.append(part.0) }
            }
        }
        return result.enumerated().map { index, range in
            Piece(text: String(text[range]), isFirst: piece.isFirst && index == 0 && range.lowerBound == text.startIndex)
        }
    }
}

/// GPT-2's reversible byte ↔ printable-character map used by byte-level BPE.
enum ByteLevel {
    static let byteToChar: [Character] = {
        var map = [Character](repeating: " ", count: 256)
        var extra = 0
        for byte in 0..<256 {
            let printable = (33...126).contains(byte) || (161...172).contains(byte) || (174...255).contains(byte)
            if printable {
                map[byte] = Character(Unicode.Scalar(UInt8(byte)))
            } else {
                map[byte] = Character(Unicode.Scalar(256 + extra)!)
                extra += 1
            }
        }
        return map
    }()

    static let charToByte: [Character: UInt8] = {
        var inverse: [Character: UInt8] = [:]
        for (byte, char) in byteToChar.enumerated() { inverse[char] = UInt8(byte) }
        return inverse
    }()

    static func encode(_ text: String) -> String {
        String(text.utf8.map { byteToChar[Int($0)] })
    }

    /// The bytes behind a byte-level token; nil if a character is outside the byte alphabet.
    static func decode(_ text: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        for scalar in text.unicodeScalars {
            guard let byte = charToByte[Character(scalar)] else { return nil }
            bytes.append(byte)
        }
        return bytes
    }
}
