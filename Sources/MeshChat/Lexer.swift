/// One lexical token of a template, with the line it starts on.
struct Token: Sendable {
    enum Kind: Equatable, Sendable {
        case text(String)
        case variableBegin, variableEnd, blockBegin, blockEnd
        case name(String)
        case string(String)
        case integer(Int)
        case float(Double)
        case op(String)
        case end
    }

    let kind: Kind
    let line: Int
}

/// Splits template source into tokens exactly as jinja2's lexer does with `trim_blocks=True, lstrip_blocks=True`:
/// - `{%-`/`{{-`/`{#-` strip all whitespace before the tag; `-%}`/`-}}`/`-#}` strip all whitespace after it;
/// - lstrip_blocks: whitespace from the start of a line up to a `{%` or `{#` tag is removed (not for `{{`, and not
///   for `{%+`);
/// - trim_blocks: the first newline after `%}` or `#}` is removed (not after `}}`, and not after `+%}`);
/// - one trailing newline of the template is dropped and `\r\n`/`\r` become `\n`.
struct Lexer {
    private let source: [Unicode.Scalar]
    private let newlineOffsets: [Int]
    private var position = 0
    private var tokens: [Token] = []
    /// Whether the last consumed text ended a line (jinja2's `line_starting`), for lstrip_blocks.
    private var lineStarting = true

    private static let operators = ["**", "//", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]",
                                    "(", ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";"]

    static func tokenize(_ text: String) throws -> [Token] {
        var lexer = Lexer(normalizing: text)
        try lexer.run()
        return lexer.tokens
    }

    private init(normalizing text: String) {
        var scalars: [Unicode.Scalar] = []
        var iterator = text.unicodeScalars.makeIterator()
        var pending = iterator.next()
        while let scalar = pending {
            pending = iterator.next()
            if scalar == "\r" {
                if pending == "\n" { pending = iterator.next() }
                scalars.append("\n")
            } else {
                scalars.append(scalar)
            }
        }
        if scalars.last == "\n" { scalars.removeLast() }
        source = scalars
        newlineOffsets = scalars.indices.filter { scalars[$0] == "\n" }
    }

    /// 1-based line of a source offset.
    private func line(at offset: Int) -> Int {
        var low = 0
        var high = newlineOffsets.count
        while low < high {
            let middle = (low + high) / 2
            if newlineOffsets[middle] < offset { low = middle + 1 } else { high = middle }
        }
        return low + 1
    }

    private func starts(with text: String, at offset: Int) -> Bool {
        var index = offset
        for scalar in text.unicodeScalars {
            guard index < source.count, source[index] == scalar else { return false }
            index += 1
        }
        return true
    }

    private func skipSpaces(from offset: Int) -> Int {
        var index = offset
        while index < source.count, PythonString.isSpace(source[index]) { index += 1 }
        return index
    }

    private func text(_ start: Int, _ end: Int) -> String { PythonString.string(source[start..<end]) }

    private mutating func emit(_ kind: Token.Kind, at offset: Int) {
        tokens.append(Token(kind: kind, line: line(at: offset)))
    }

    private enum TagKind { case variable, block, comment, raw }

    private mutating func run() throws {
        while position < source.count {
            guard let (tagStart, kind, sign, afterOpen) = nextTag(from: position) else {
                emit(.text(text(position, source.count)), at: position)
                break
            }
            let data = stripped(from: position, to: tagStart, sign: sign, lstrip: kind != .variable)
            if !data.isEmpty { emit(.text(data), at: position) }
            lineStarting = false
            position = afterOpen
            switch kind {
            case .comment: try skipComment(openedAt: tagStart)
            case .raw: try readRaw(openedAt: tagStart)
            case .variable, .block: try readTag(kind, openedAt: tagStart)
            }
        }
        emit(.end, at: source.count)
    }

    /// The next `{{`, `{%` or `{#` at or after `offset`: its start, kind, whitespace sign and where its contents
    /// begin. A `{% raw %}` opening (with its `%}`) is recognised as a whole, as jinja2's root regex does.
    private func nextTag(from offset: Int) -> (Int, TagKind, Unicode.Scalar?, Int)? {
        var index = offset
        while index + 1 < source.count {
            if source[index] == "{" {
                let kind: TagKind?
                switch source[index + 1] {
                case "{": kind = .variable
                case "%": kind = .block
                case "#": kind = .comment
                default: kind = nil
                }
                if let kind {
                    var contents = index + 2
                    var sign: Unicode.Scalar?
                    if contents < source.count, source[contents] == "-" || source[contents] == "+" {
                        sign = source[contents]
                        contents += 1
                    }
                    if kind == .block, let afterRaw = rawOpening(contentsAt: contents) {
                        return (index, .raw, sign, afterRaw)
                    }
                    return (index, kind, sign, contents)
                }
            }
            index += 1
        }
        return nil
    }

    /// If `raw -%}`/`raw %}` follows, the offset after it (after trailing whitespace for `-%}`).
    private func rawOpening(contentsAt offset: Int) -> Int? {
        var index = skipSpaces(from: offset)
        guard starts(with: "raw", at: index) else { return nil }
        index = skipSpaces(from: index + 3)
        if starts(with: "-%}", at: index) { return skipSpaces(from: index + 3) }
        if starts(with: "%}", at: index) { return index + 2 }
        return nil
    }

    /// Template text before a tag, after the tag's whitespace control (jinja2's OptionalLStrip).
    private func stripped(from start: Int, to end: Int, sign: Unicode.Scalar?, lstrip: Bool) -> String {
        var end = end
        if sign == "-" {
            while end > start, PythonString.isSpace(source[end - 1]) { end -= 1 }
        } else if sign != "+", lstrip {
            var lineStart = end
            while lineStart > start, source[lineStart - 1] != "\n" { lineStart -= 1 }
            let atLineStart = lineStart > start || lineStarting
            if atLineStart, lineStart < end, source[lineStart..<end].allSatisfy(PythonString.isSpace) {
                end = lineStart
            }
        }
        return text(start, end)
    }

    /// Consumes a block end (`+%}`, `-%}` and following whitespace, `%}` and one newline) or comment end.
    private mutating func consumeEnd(_ closer: String, trimNewline: Bool) -> Bool {
        if starts(with: "+" + closer, at: position) {
            position += 3
        } else if starts(with: "-" + closer, at: position) {
            position = skipSpaces(from: position + 3)
        } else if starts(with: closer, at: position) {
            position += 2
            if trimNewline, position < source.count, source[position] == "\n" { position += 1 }
        } else {
            return false
        }
        lineStarting = source[position - 1] == "\n"
        return true
    }

    private mutating func skipComment(openedAt start: Int) throws {
        while position < source.count {
            if consumeEnd("#}", trimNewline: true) { return }
            position += 1
        }
        throw JinjaError.syntax("missing end of comment tag", line: line(at: start))
    }

    private mutating func readRaw(openedAt start: Int) throws {
        lineStarting = source[position - 1] == "\n"
        var index = position
        while index < source.count {
            if starts(with: "{%", at: index), let (sign, after) = rawClosing(at: index) {
                let data = stripped(from: position, to: index, sign: sign, lstrip: true)
                if !data.isEmpty { emit(.text(data), at: position) }
                position = after
                lineStarting = source[position - 1] == "\n"
                return
            }
            index += 1
        }
        throw JinjaError.syntax("missing end of raw directive", line: line(at: start))
    }

    /// Matches `{%[-+]? endraw (+%}|-%}\s*|%}\n?)` at `offset`: the sign and the offset after it.
    private func rawClosing(at offset: Int) -> (Unicode.Scalar?, Int)? {
        var index = offset + 2
        var sign: Unicode.Scalar?
        if index < source.count, source[index] == "-" || source[index] == "+" {
            sign = source[index]
            index += 1
        }
        index = skipSpaces(from: index)
        guard starts(with: "endraw", at: index) else { return nil }
        index = skipSpaces(from: index + 6)
        if starts(with: "+%}", at: index) { return (sign, index + 3) }
        if starts(with: "-%}", at: index) { return (sign, skipSpaces(from: index + 3)) }
        guard starts(with: "%}", at: index) else { return nil }
        index += 2
        if index < source.count, source[index] == "\n" { index += 1 }
        return (sign, index)
    }

    private mutating func readTag(_ kind: TagKind, openedAt start: Int) throws {
        emit(kind == .block ? .blockBegin : .variableBegin, at: start)
        var brackets: [Unicode.Scalar] = []
        while position < source.count {
            let tokenStart = position
            if brackets.isEmpty {
                let closed = kind == .block ? consumeEnd("%}", trimNewline: true) : consumeVariableEnd()
                if closed {
                    emit(kind == .block ? .blockEnd : .variableEnd, at: tokenStart)
                    return
                }
            }
            let scalar = source[position]
            if PythonString.isSpace(scalar) {
                position = skipSpaces(from: position)
            } else if let end = floatEnd(at: position) {
                let literal = text(position, end).replacingOccurrences(of: "_", with: "")
                guard let value = Double(literal) else {
                    throw JinjaError.syntax("invalid float literal \(literal)", line: line(at: position))
                }
                emit(.float(value), at: position)
                position = end
            } else if let (end, value) = try integer(at: position) {
                emit(.integer(value), at: position)
                position = end
            } else if scalar == "_" || scalar.properties.isXIDStart || PythonString.isAlnum(scalar) {
                try readName()
            } else if scalar == "'" || scalar == "\"", let (end, value) = try string(at: position) {
                emit(.string(value), at: position)
                position = end
            } else if let op = Self.operators.first(where: { starts(with: $0, at: position) }) {
                try balance(op, &brackets)
                emit(.op(op), at: position)
                position += op.unicodeScalars.count
            } else {
                throw JinjaError.syntax("unexpected char \(Python.stringRepr(String(scalar)))",
                                        line: line(at: position))
            }
        }
        throw JinjaError.syntax("unexpected end of template: the tag is not closed", line: line(at: start))
    }

    private mutating func consumeVariableEnd() -> Bool {
        if starts(with: "-}}", at: position) {
            position = skipSpaces(from: position + 3)
        } else if starts(with: "}}", at: position) {
            position += 2
        } else {
            return false
        }
        lineStarting = source[position - 1] == "\n"
        return true
    }

    /// jinja2 only ends a tag when brackets are balanced, so `}}` inside `{{ {'a': {}} }}` is two braces.
    private func balance(_ op: String, _ brackets: inout [Unicode.Scalar]) throws {
        let closers: [String: Unicode.Scalar] = ["{": "}", "(": ")", "[": "]"]
        if let closer = closers[op] {
            brackets.append(closer)
        } else if op == "}" || op == ")" || op == "]" {
            guard let expected = brackets.popLast() else {
                throw JinjaError.syntax("unexpected '\(op)'", line: line(at: position))
            }
            guard String(expected) == op else {
                throw JinjaError.syntax("unexpected '\(op)', expected '\(expected)'", line: line(at: position))
            }
        }
    }

    /// End of `(\d+_)*\d+` at `offset`, if a digit is there.
    private func digitsEnd(at offset: Int) -> Int? {
        var index = offset
        guard index < source.count, isASCIIDigit(source[index]) else { return nil }
        while true {
            while index < source.count, isASCIIDigit(source[index]) { index += 1 }
            guard index + 1 < source.count, source[index] == "_", isASCIIDigit(source[index + 1]) else { return index }
            index += 1
        }
    }

    private func isASCIIDigit(_ scalar: Unicode.Scalar) -> Bool { ("0"..."9").contains(scalar) }

    /// jinja2's float rule: digits with a fraction, an exponent or both, not directly after a `.`.
    private func floatEnd(at offset: Int) -> Int? {
        guard offset == 0 || source[offset - 1] != ".", var index = digitsEnd(at: offset) else { return nil }
        var hasFraction = false
        if index < source.count, source[index] == ".", let end = digitsEnd(at: index + 1) {
            index = end
            hasFraction = true
        }
        if index < source.count, source[index] == "e" || source[index] == "E" {
            var exponent = index + 1
            if exponent < source.count, source[exponent] == "+" || source[exponent] == "-" { exponent += 1 }
            if let end = digitsEnd(at: exponent) { return end }
        }
        return hasFraction ? index : nil
    }

    /// jinja2's integer rule: `0b`/`0o`/`0x` prefixes, decimal digits, with `_` separators.
    private func integer(at offset: Int) throws -> (Int, Int)? {
        guard isASCIIDigit(source[offset]) else { return nil }
        let radixes: [Unicode.Scalar: Int] = ["b": 2, "B": 2, "o": 8, "O": 8, "x": 16, "X": 16]
        if source[offset] == "0", offset + 1 < source.count, let radix = radixes[source[offset + 1]] {
            let (end, digits) = digitRun(from: offset + 2) { Int(String($0), radix: radix) != nil }
            if !digits.isEmpty {
                guard let value = Int(digits, radix: radix) else {
                    throw JinjaError.unsupported("integer literals beyond 64 bits", line: line(at: offset))
                }
                return (end, value)
            }
        }
        if source[offset] == "0" {
            return (digitRun(from: offset + 1) { $0 == "0" }.0, 0)
        }
        guard let end = digitsEnd(at: offset) else { return nil }
        let digits = text(offset, end).replacingOccurrences(of: "_", with: "")
        guard let value = Int(digits) else {
            throw JinjaError.unsupported("integer literal \(digits) (beyond 64 bits)", line: line(at: offset))
        }
        return (end, value)
    }

    /// Matches `(_?D)*` for digits D: the end offset and the digits without separators.
    private func digitRun(from offset: Int, isDigit: (Unicode.Scalar) -> Bool) -> (Int, String) {
        var index = offset
        var digits = ""
        while true {
            var next = index
            if next < source.count, source[next] == "_" { next += 1 }
            guard next < source.count, isDigit(source[next]) else { return (index, digits) }
            digits.unicodeScalars.append(source[next])
            index = next + 1
        }
    }

    private mutating func readName() throws {
        let start = position
        while position < source.count {
            let scalar = source[position]
            guard scalar == "_" || PythonString.isAlnum(scalar) || scalar.properties.isXIDContinue else { break }
            position += 1
        }
        let first = source[start]
        guard first == "_" || first.properties.isXIDStart else {
            throw JinjaError.syntax("invalid character in identifier", line: line(at: start))
        }
        emit(.name(text(start, position)), at: start)
    }

    /// A quoted literal at `offset`: the offset after it and its value, unescaped as Python's `unicode-escape`
    /// codec does (jinja2 decodes string literals with it).
    private func string(at offset: Int) throws -> (Int, String)? {
        let quote = source[offset]
        var index = offset + 1
        while index < source.count, source[index] != quote {
            index += source[index] == "\\" ? 2 : 1
        }
        guard index < source.count else { return nil }
        let value = try PythonEscapes.decode(source[(offset + 1)..<index], line: line(at: offset))
        return (index + 1, value)
    }
}
