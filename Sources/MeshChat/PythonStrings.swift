/// Python `str` operations. Python strings are sequences of code points, so everything here works on Unicode
/// scalars: Swift's `Character` (grapheme) counts and canonical-equivalence comparisons would give other answers.
enum PythonString {
    typealias Scalars = [Unicode.Scalar]

    /// `str.isspace` for one character (also what regex `\s` matches).
    static func isSpace(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            return true
        default:
            return false
        }
    }

    static func isAlpha(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: true
        default: false
        }
    }

    /// `str.isalnum` for one character; with "_" it is what regex `\w` matches.
    static func isAlnum(_ scalar: Unicode.Scalar) -> Bool {
        isAlpha(scalar) || scalar.properties.numericType != nil
    }

    static func isDigit(_ scalar: Unicode.Scalar) -> Bool {
        scalar.properties.numericType == .decimal || scalar.properties.numericType == .digit
    }

    static func strip(_ text: String, chars: String?, leading: Bool = true, trailing: Bool = true) -> String {
        let scalars = text.unicodeScalars
        let strippable: (Unicode.Scalar) -> Bool
        if let chars {
            let set = Set(chars.unicodeScalars)
            strippable = { set.contains($0) }
        } else {
            strippable = isSpace
        }
        var start = scalars.startIndex
        var end = scalars.endIndex
        if leading { while start < end, strippable(scalars[start]) { start = scalars.index(after: start) } }
        if trailing {
            while end > start, strippable(scalars[scalars.index(before: end)]) { end = scalars.index(before: end) }
        }
        return String(scalars[start..<end])
    }

    static func string(_ scalars: some Sequence<Unicode.Scalar>) -> String {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        return String(view)
    }

    /// Index of the first occurrence of `needle` at or after `from`, or nil.
    static func find(_ haystack: Scalars, _ needle: Scalars, from: Int = 0, to end: Int? = nil) -> Int? {
        let limit = min(end ?? haystack.count, haystack.count)
        guard needle.count <= limit - from else { return nil }
        if needle.isEmpty { return from }
        var position = max(from, 0)
        while position + needle.count <= limit {
            if haystack[position] == needle[0], haystack[position..<position + needle.count].elementsEqual(needle) {
                return position
            }
            position += 1
        }
        return nil
    }

    /// Index of the last occurrence of `needle` within `from..<to`, or nil.
    static func findLast(_ haystack: Scalars, _ needle: Scalars, from: Int = 0, to end: Int? = nil) -> Int? {
        let limit = min(end ?? haystack.count, haystack.count)
        let start = max(from, 0)
        guard needle.count <= limit - start else { return nil }
        var position = limit - needle.count
        while position >= start {
            if haystack[position..<position + needle.count].elementsEqual(needle) { return position }
            position -= 1
        }
        return nil
    }

    static func contains(_ text: String, _ part: String) -> Bool {
        find(Scalars(text.unicodeScalars), Scalars(part.unicodeScalars)) != nil
    }

    /// `str.split(sep, maxsplit)`; `sep == nil` splits on runs of whitespace.
    static func split(_ text: String, separator: String?, maxSplit: Int) throws -> [String] {
        let scalars = Scalars(text.unicodeScalars)
        guard let separator else { return splitWhitespace(scalars, maxSplit: maxSplit) }
        let needle = Scalars(separator.unicodeScalars)
        guard !needle.isEmpty else { throw JinjaError.type("ValueError: empty separator") }
        var parts: [String] = []
        var start = 0
        while maxSplit < 0 || parts.count < maxSplit, let hit = find(scalars, needle, from: start) {
            parts.append(string(scalars[start..<hit]))
            start = hit + needle.count
        }
        parts.append(string(scalars[start...]))
        return parts
    }

    private static func splitWhitespace(_ scalars: Scalars, maxSplit: Int) -> [String] {
        var parts: [String] = []
        var position = 0
        while true {
            while position < scalars.count, isSpace(scalars[position]) { position += 1 }
            guard position < scalars.count else { break }
            if maxSplit >= 0, parts.count == maxSplit {
                parts.append(string(scalars[position...]))
                break
            }
            let start = position
            while position < scalars.count, !isSpace(scalars[position]) { position += 1 }
            parts.append(string(scalars[start..<position]))
        }
        return parts
    }

    /// `str.rsplit(sep, maxsplit)`: like split, but the splits counted from the right.
    static func rsplit(_ text: String, separator: String?, maxSplit: Int) throws -> [String] {
        let scalars = Scalars(text.unicodeScalars)
        guard let separator else {
            let reversed = splitWhitespace(Scalars(scalars.reversed()), maxSplit: maxSplit)
            return reversed.reversed().map { string($0.unicodeScalars.reversed()) }
        }
        let needle = Scalars(separator.unicodeScalars)
        guard !needle.isEmpty else { throw JinjaError.type("ValueError: empty separator") }
        var parts: [String] = []
        var end = scalars.count
        while maxSplit < 0 || parts.count < maxSplit, let hit = findLast(scalars, needle, to: end) {
            parts.append(string(scalars[(hit + needle.count)..<end]))
            end = hit
        }
        parts.append(string(scalars[..<end]))
        return parts.reversed()
    }

    /// `str.splitlines(keepends)`, with every line boundary Python knows.
    static func splitLines(_ text: String, keepEnds: Bool = false) -> [String] {
        let scalars = Scalars(text.unicodeScalars)
        var lines: [String] = []
        var start = 0
        var position = 0
        while position < scalars.count {
            let scalar = scalars[position]
            var breakLength = 0
            switch scalar.value {
            case 0x0D: breakLength = position + 1 < scalars.count && scalars[position + 1] == "\n" ? 2 : 1
            case 0x0A, 0x0B, 0x0C, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029: breakLength = 1
            default: break
            }
            if breakLength > 0 {
                lines.append(string(scalars[start..<(keepEnds ? position + breakLength : position)]))
                position += breakLength
                start = position
            } else {
                position += 1
            }
        }
        if start < scalars.count { lines.append(string(scalars[start...])) }
        return lines
    }

    /// `str.replace(old, new, count)`; an empty `old` inserts `new` around every character, as Python does.
    static func replace(_ text: String, _ old: String, _ new: String, count: Int = -1) -> String {
        let scalars = Scalars(text.unicodeScalars)
        let needle = Scalars(old.unicodeScalars)
        let replacement = new.unicodeScalars
        var result = String.UnicodeScalarView()
        var done = 0
        if needle.isEmpty {
            for scalar in scalars {
                if count < 0 || done < count {
                    result.append(contentsOf: replacement)
                    done += 1
                }
                result.append(scalar)
            }
            if count < 0 || done < count { result.append(contentsOf: replacement) }
            return String(result)
        }
        var start = 0
        while count < 0 || done < count, let hit = find(scalars, needle, from: start) {
            result.append(contentsOf: scalars[start..<hit])
            result.append(contentsOf: replacement)
            start = hit + needle.count
            done += 1
        }
        result.append(contentsOf: scalars[start...])
        return String(result)
    }

    /// Non-overlapping occurrences, as `str.count`.
    static func count(_ text: String, _ part: String) -> Int {
        let scalars = Scalars(text.unicodeScalars)
        let needle = Scalars(part.unicodeScalars)
        if needle.isEmpty { return scalars.count + 1 }
        var total = 0
        var start = 0
        while let hit = find(scalars, needle, from: start) {
            total += 1
            start = hit + needle.count
        }
        return total
    }

    static func upper(_ text: String) -> String {
        text.unicodeScalars.map(\.properties.uppercaseMapping).joined()
    }

    static func lower(_ text: String) -> String {
        let scalars = Scalars(text.unicodeScalars)
        return scalars.indices.map { lowered(scalars, at: $0) }.joined()
    }

    /// Python's full lower-case mapping of one character, including the Final_Sigma rule that Swift's
    /// `lowercased()` lacks: "ΟΔΟΣ" becomes "οδος", with a final ς.
    private static func lowered(_ scalars: Scalars, at index: Int) -> String {
        guard scalars[index] == "\u{3A3}" else { return scalars[index].properties.lowercaseMapping }
        let before = scalars[..<index].last { !$0.properties.isCaseIgnorable }
        let after = scalars[(index + 1)...].first { !$0.properties.isCaseIgnorable }
        let isFinal = before?.properties.isCased == true && after?.properties.isCased != true
        return isFinal ? "\u{3C2}" : "\u{3C3}"
    }

    /// `str.capitalize`: the first character in title case, the rest lower case.
    static func capitalize(_ text: String) -> String {
        let scalars = Scalars(text.unicodeScalars)
        guard let first = scalars.first else { return "" }
        return first.properties.titlecaseMapping + scalars.indices.dropFirst().map { lowered(scalars, at: $0) }.joined()
    }

    /// `str.title`: title-case a character that follows an uncased one, lower-case the others ("they're" becomes
    /// "They'Re", as in Python).
    static func title(_ text: String) -> String {
        let scalars = Scalars(text.unicodeScalars)
        var result = ""
        var previousCased = false
        for index in scalars.indices {
            result += previousCased ? lowered(scalars, at: index) : scalars[index].properties.titlecaseMapping
            previousCased = scalars[index].properties.isCased
        }
        return result
    }

    /// `str.swapcase`.
    static func swapcase(_ text: String) -> String {
        let scalars = Scalars(text.unicodeScalars)
        return scalars.indices.map { index in
            let properties = scalars[index].properties
            if properties.isUppercase { return lowered(scalars, at: index) }
            if properties.isLowercase { return properties.uppercaseMapping }
            return String(scalars[index])
        }.joined()
    }

    /// jinja2's `title` filter (not `str.title`): words start after `-`, whitespace or an opening bracket, and
    /// only their first character is upper-cased.
    static func jinjaTitle(_ text: String) -> String {
        var result = ""
        var word = String.UnicodeScalarView()
        var inDelimiters = false
        func flushWord() {
            guard let first = word.first else { return }
            result += upper(String(first)) + lower(String(String.UnicodeScalarView(word.dropFirst())))
            word = String.UnicodeScalarView()
        }
        for scalar in text.unicodeScalars {
            let isDelimiter = isSpace(scalar) || "-({[<".unicodeScalars.contains(scalar)
            if isDelimiter {
                if !inDelimiters { flushWord() }
                result.unicodeScalars.append(scalar)
            } else {
                word.append(scalar)
            }
            inDelimiters = isDelimiter
        }
        flushWord()
        return result
    }

    /// `str.center(width)`, splitting odd padding the way CPython does.
    static func center(_ text: String, width: Int, fill: Unicode.Scalar = " ") -> String {
        let length = text.unicodeScalars.count
        guard width > length else { return text }
        let margin = width - length
        let left = margin / 2 + (margin & width & 1)
        let pad = { (count: Int) in string(repeatElement(fill, count: count)) }
        return pad(left) + text + pad(margin - left)
    }

    /// markupsafe's `escape`.
    static func htmlEscape(_ text: String) -> String {
        var result = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "'": result += "&#39;"
            case "\"": result += "&#34;"
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    /// Python string ordering: by code point, which is also UTF-8 byte order.
    static func less(_ lhs: String, _ rhs: String) -> Bool {
        lhs.utf8.lexicographicallyPrecedes(rhs.utf8)
    }

    static func equal(_ lhs: String, _ rhs: String) -> Bool {
        lhs.utf8.elementsEqual(rhs.utf8)
    }
}
