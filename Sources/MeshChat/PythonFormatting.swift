/// Python's `str()` and `repr()` of template values: what `{{ value }}` prints, byte for byte.
enum Python {
    /// `str(value)`, which jinja2 applies to everything `{{ }}` prints and `~` joins.
    static func str(_ value: JinjaValue) throws -> String {
        switch value {
        case .undefined: ""
        case .string(let text), .markup(let text): text
        default: try repr(value)
        }
    }

    /// `repr(value)`, used for the items of printed lists, tuples and dicts.
    static func repr(_ value: JinjaValue) throws -> String {
        try repr(value, depth: 0)
    }

    private static func repr(_ value: JinjaValue, depth: Int) throws -> String {
        // Values are trees except for namespaces, which can contain themselves.
        guard depth < 200 else { throw JinjaError.unsupported("printing values nested deeper than 200 levels") }
        func items(_ values: [JinjaValue]) throws -> [String] { try values.map { try repr($0, depth: depth + 1) } }
        switch value {
        case .undefined: return "Undefined"
        case .none: return "None"
        case .bool(let flag): return flag ? "True" : "False"
        case .int(let number): return String(number)
        case .double(let number): return floatRepr(number)
        case .string(let text): return stringRepr(text)
        case .markup(let text): return "Markup(\(stringRepr(text)))"
        case .list(let values): return "[" + (try items(values)).joined(separator: ", ") + "]"
        case .tuple(let values):
            let parts = try items(values)
            return parts.count == 1 ? "(\(parts[0]),)" : "(" + parts.joined(separator: ", ") + ")"
        case .dict(let dict):
            let parts = try dict.entries.map {
                "\(try repr($0.key, depth: depth + 1)): \(try repr($0.value, depth: depth + 1))"
            }
            return "{" + parts.joined(separator: ", ") + "}"
        case .namespace(let namespace):
            return "<Namespace \(try repr(.dict(namespace.attributes), depth: depth + 1))>"
        case .macro(let macro): return "<Macro \(stringRepr(macro.definition.name))>"
        case .loop(let loop): return "<LoopContext \(loop.index0 + 1)/\(loop.length)>"
        case .view(let view):
            if case .range(let start, let stop, let step) = view.kind {
                return step == 1 ? "range(\(start), \(stop))" : "range(\(start), \(stop), \(step))"
            }
            return "\(value.typeName)([" + (try items(view.items)).joined(separator: ", ") + "])"
        case .iterator, .function:
            throw JinjaError.unsupported("printing a \(value.typeName) (Python prints its memory address)")
        }
    }

    /// `repr(float)`: the shortest digits that round-trip (Swift's `description` finds the same digits), laid out
    /// the Python way: scientific notation when the decimal exponent is below -4 or above 16.
    static func floatRepr(_ number: Double) -> String {
        if number.isNaN { return "nan" }
        if number.isInfinite { return number < 0 ? "-inf" : "inf" }
        if number == 0 { return number.sign == .minus ? "-0.0" : "0.0" }
        let (significant, point) = shortestDigits(abs(number))
        var digits = significant
        let sign = number < 0 ? "-" : ""
        if point <= -4 || point > 16 {
            let exponent = point - 1
            let first = String(digits.removeFirst())
            let mantissa = digits.isEmpty ? first : first + "." + digits
            let magnitude = String(abs(exponent))
            let padded = magnitude.count < 2 ? "0" + magnitude : magnitude
            return sign + mantissa + "e" + (exponent < 0 ? "-" : "+") + padded
        }
        if point <= 0 { return sign + "0." + String(repeating: "0", count: -point) + digits }
        if point >= digits.count { return sign + digits + String(repeating: "0", count: point - digits.count) + ".0" }
        let split = digits.index(digits.startIndex, offsetBy: point)
        return sign + digits[..<split] + "." + digits[split...]
    }

    /// The significant digits of a positive finite double and the position of the decimal point relative to them
    /// (value = 0.DIGITS × 10^point).
    private static func shortestDigits(_ number: Double) -> (String, Int) {
        let text = number.description
        var mantissa = Substring(text)
        var exponent = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            mantissa = text[..<e]
            exponent = Int(text[text.index(after: e)...]) ?? 0
        }
        let parts = mantissa.split(separator: ".", omittingEmptySubsequences: false)
        let whole = parts[0]
        var digits = String(whole) + (parts.count > 1 ? String(parts[1]) : "")
        var point = whole.count + exponent
        while digits.count > 1, digits.first == "0" {
            digits.removeFirst()
            point -= 1
        }
        while digits.count > 1, digits.last == "0" { digits.removeLast() }
        return (digits, point)
    }

    /// `repr(str)`: single quotes unless the text has a single quote and no double quote; non-printable characters
    /// escaped as `\xNN`, `\uNNNN` or `\UNNNNNNNN`.
    static func stringRepr(_ text: String) -> String {
        let quote: Unicode.Scalar = text.unicodeScalars.contains("'") && !text.unicodeScalars.contains("\"")
            ? "\"" : "'"
        var result = String.UnicodeScalarView()
        result.append(quote)
        for scalar in text.unicodeScalars {
            switch scalar {
            case quote, "\\":
                result.append("\\")
                result.append(scalar)
            case "\t": result.append(contentsOf: "\\t".unicodeScalars)
            case "\n": result.append(contentsOf: "\\n".unicodeScalars)
            case "\r": result.append(contentsOf: "\\r".unicodeScalars)
            default:
                if isPrintable(scalar) {
                    result.append(scalar)
                } else {
                    result.append(contentsOf: hexEscape(scalar).unicodeScalars)
                }
            }
        }
        result.append(quote)
        return String(result)
    }

    private static func hexEscape(_ scalar: Unicode.Scalar) -> String {
        let hex = String(scalar.value, radix: 16)
        func pad(_ width: Int) -> String { String(repeating: "0", count: width - hex.count) + hex }
        if scalar.value <= 0xFF { return "\\x" + pad(2) }
        if scalar.value <= 0xFFFF { return "\\u" + pad(4) }
        return "\\U" + pad(8)
    }

    /// Python's `str.isprintable` for one character: everything but separators (except space), controls, format
    /// characters, private use and unassigned code points.
    static func isPrintable(_ scalar: Unicode.Scalar) -> Bool {
        if scalar == " " { return true }
        switch scalar.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned,
             .lineSeparator, .paragraphSeparator, .spaceSeparator:
            return false
        default:
            return true
        }
    }
}
