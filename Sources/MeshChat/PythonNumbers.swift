/// Python's `int()` and `float()` conversions, as the `int` and `float` filters use them.
extension Renderer {
    /// jinja2's `int` filter before its default: `int(value, base)` for strings, then `int(float(value))`;
    /// nil where Python raises TypeError/ValueError (the filter then returns its default).
    static func toInt(_ value: JinjaValue, base: Int) throws -> JinjaValue? {
        switch value {
        case .string(let text), .markup(let text):
            if let integer = try parseInt(text, base: base) { return .int(integer) }
            guard let number = parseFloat(text), number.isFinite else { return nil }
            return .int(try truncated(number))
        case .int: return value
        case .bool(let flag): return .int(flag ? 1 : 0)
        case .double(let number):
            if number.isNaN { return nil }
            guard number.isFinite else {
                throw JinjaError.type("OverflowError: cannot convert float infinity to integer")
            }
            return .int(try truncated(number))
        case .undefined: throw JinjaError.undefined("the converted value")
        default: return nil
        }
    }

    /// `float(value)`, nil where Python raises TypeError/ValueError.
    static func toFloat(_ value: JinjaValue) throws -> JinjaValue? {
        switch value {
        case .double: return value
        case .int(let number): return .double(Double(number))
        case .bool(let flag): return .double(flag ? 1 : 0)
        case .string(let text), .markup(let text): return parseFloat(text).map { .double($0) }
        case .undefined: throw JinjaError.undefined("the converted value")
        default: return nil
        }
    }

    private static func truncated(_ number: Double) throws -> Int {
        guard let integer = Int(exactly: number.rounded(.towardZero)) else {
            throw JinjaError.unsupported("integers beyond 64 bits")
        }
        return integer
    }

    /// Digits of `text` in `base` with Python's `_` rule (only between digits); nil if invalid.
    private static func digits(_ text: Substring, base: Int, allowLeadingUnderscore: Bool) -> String? {
        var result = ""
        var previousWasDigit = allowLeadingUnderscore
        for character in text {
            if character == "_" {
                guard previousWasDigit else { return nil }
                previousWasDigit = false
                continue
            }
            // Python also takes any Unicode decimal digit ('٣' is 3).
            let digit: Int?
            if character.isASCII {
                digit = Int(String(character), radix: 36)
            } else if character.unicodeScalars.count == 1,
                      character.unicodeScalars.first?.properties.numericType == .decimal {
                digit = character.wholeNumberValue
            } else {
                digit = nil
            }
            guard let digit, digit < base else { return nil }
            result += String(digit, radix: 36)
            previousWasDigit = true
        }
        return previousWasDigit && !result.isEmpty ? result : nil
    }

    /// Python `int(text, base)`: surrounding whitespace, a sign, `0x`/`0o`/`0b` prefixes and `_` separators.
    static func parseInt(_ text: String, base: Int) throws -> Int? {
        guard base == 0 || (2...36).contains(base) else { return nil }
        var body = Substring(PythonString.strip(text, chars: nil))
        var negative = false
        if let sign = body.first, sign == "+" || sign == "-" {
            negative = sign == "-"
            body = body.dropFirst()
        }
        var radix = base
        var afterPrefix = false
        let prefixes: [Character: Int] = ["x": 16, "o": 8, "b": 2]
        if body.count >= 2, body.first == "0", let second = body.dropFirst().first?.lowercased().first,
           let prefixRadix = prefixes[second], base == 0 || base == prefixRadix {
            radix = prefixRadix
            body = body.dropFirst(2)
            afterPrefix = true
        } else if base == 0 {
            radix = 10
            // Python rejects leading zeros in base 0 unless the number is zero.
            if body.first == "0", body.contains(where: { $0 != "0" && $0 != "_" }) { return nil }
        }
        guard let digits = digits(body, base: radix, allowLeadingUnderscore: afterPrefix) else { return nil }
        guard let magnitude = Int(negative ? "-" + digits : digits, radix: radix) else {
            throw JinjaError.unsupported("integers beyond 64 bits")
        }
        return magnitude
    }

    /// Python `float(text)`: decimal or exponent notation with `_` separators, `inf`, `infinity`, `nan`.
    static func parseFloat(_ text: String) -> Double? {
        var body = Substring(PythonString.strip(text, chars: nil).lowercased())
        var sign = ""
        if let first = body.first, first == "+" || first == "-" {
            sign = first == "-" ? "-" : ""
            body = body.dropFirst()
        }
        if body == "inf" || body == "infinity" { return sign.isEmpty ? .infinity : -.infinity }
        if body == "nan" { return .nan }
        var mantissa = body
        var exponent: Substring?
        if let e = body.firstIndex(of: "e") {
            mantissa = body[..<e]
            exponent = body[body.index(after: e)...]
        }
        let pieces = mantissa.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let whole = pieces[0]
        let fraction = pieces.count > 1 ? pieces[1] : nil
        func decimal(_ part: Substring) -> String? { digits(part, base: 10, allowLeadingUnderscore: false) }
        let wholeDigits = whole.isEmpty ? "" : decimal(whole)
        let fractionDigits = fraction.map { $0.isEmpty ? "" : decimal($0) } ?? ""
        guard let wholeDigits, let fractionDigits, !(wholeDigits + fractionDigits).isEmpty else { return nil }
        var literal = sign + (wholeDigits.isEmpty ? "0" : wholeDigits) + "."
            + (fractionDigits.isEmpty ? "0" : fractionDigits)
        if let exponent {
            var exponentBody = exponent
            var exponentSign = ""
            if let first = exponentBody.first, first == "+" || first == "-" {
                exponentSign = String(first)
                exponentBody = exponentBody.dropFirst()
            }
            guard let exponentDigits = decimal(exponentBody) else { return nil }
            literal += "e" + exponentSign + exponentDigits
        }
        return Double(literal)
    }
}
