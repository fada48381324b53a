import Foundation

/// Turns token strings back into text (HF `decoders`): each step maps a list of token strings
/// to a new list; the result is their concatenation.
indirect enum TokenDecoder {
    case sequence([TokenDecoder])
    case byteLevel
    case metaspace(replacement: String, prependScheme: String)
    case replace(Pattern, String)
    case byteFallback
    case fuse
    case strip(content: String, start: Int, stop: Int)

    static func parse(_ json: JSONObject?) throws -> TokenDecoder? {
        guard let json else { return nil }
        let type: String = try json.require("type", "decoder")
        switch type {
        case "Sequence":
            let items: [JSONObject] = try json.require("decoders", "Sequence decoder")
            return .sequence(try items.compactMap { try parse($0) })
        case "ByteLevel": return .byteLevel
        case "Metaspace":
            let scheme = json.string("prepend_scheme") ?? ((json.bool("add_prefix_space") ?? true) ? "always" : "never")
            return .metaspace(replacement: json.string("replacement") ?? "▁", prependScheme: scheme)
        case "Replace": return .replace(try json.pattern("Replace decoder"), try json.require("content", "Replace decoder"))
        case "ByteFallback": return .byteFallback
        case "Fuse": return .fuse
        case "Strip": return .strip(content: json.string("content") ?? " ", start: json.int("start") ?? 0, stop: json.int("stop") ?? 0)
        default:
            throw TokenizerError("tokenizer.json: decoder '\(type)' is not supported; supported: Sequence, ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip")
        }
    }

    func decode(_ tokens: [String]) -> [String] {
        switch self {
        case .sequence(let items):
            return items.reduce(tokens) { $1.decode($0) }
        case .byteLevel:
            // Bytes of all tokens joined, then UTF-8 (invalid sequences become U+FFFD). A token with a
            // character outside the byte alphabet (e.g. "<｜begin▁of▁sentence｜>") is taken as its own
            // UTF-8, as HF does.
            return [String(decoding: tokens.flatMap { ByteLevel.decode($0) ?? Array($0.utf8) }, as: UTF8.self)]
        case .metaspace(let replacement, let scheme):
            // As HF's Rust decoder: in the first token every replacement character is dropped
            // (it stood for a prepended space); elsewhere each becomes a space.
            let mark = replacement.unicodeScalars.first
            return tokens.enumerated().map { index, token in
                var view = String.UnicodeScalarView()
                for scalar in token.unicodeScalars {
                    if scalar == mark {
                        if !(index == 0 && scheme != "never") { view.append(" ") }
                    } else {
                        view.append(scalar)
                    }
                }
                return String(view)
            }
        case .replace(let pattern, let content):
            return tokens.map { replacing(pattern, in: $0, with: content) }
        case .byteFallback:
            var result: [String] = []
            var pending: [UInt8] = []
            func flush() {
                guard !pending.isEmpty else { return }
                if let text = String(bytes: pending, encoding: .utf8) {
                    result.append(text)
                } else {
                    result += Array(repeating: "\u{FFFD}", count: pending.count)
                }
                pending = []
            }
            for token in tokens {
                if let byte = TokenDecoder.byteToken(token) {
                    pending.append(byte)
                } else {
                    flush()
                    result.append(token)
                }
            }
            flush()
            return result
        case .fuse:
            return [tokens.joined()]
        case .strip(let content, let start, let stop):
            return tokens.map { token in
                var scalars = Array(token)
                var removed = 0
                while removed < start, let first = scalars.first, String(first) == content { scalars.removeFirst(); removed += 1 }
                removed = 0
                while removed < stop, let last = scalars.last, String(last) == content { scalars.removeLast(); removed += 1 }
                return String(scalars)
            }
        }
    }

    /// "<0x41>" → 0x41.
    static func byteToken(_ token: String) -> UInt8? {
        guard token.count == 6, token.hasPrefix("<0x"), token.hasSuffix(">") else { return nil }
        return UInt8(token.dropFirst(3).prefix(2), radix: 16)
    }
}
