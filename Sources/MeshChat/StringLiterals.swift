/// Decoding of template string literals. jinja2 runs the text between the quotes through
/// `.encode("ascii", "backslashreplace").decode("unicode-escape")`, so Python's escape rules apply: `\n`, `\t`,
/// `\xNN`, `\uNNNN`, octal, line continuations; unknown escapes such as `\d` stay as written.
enum PythonEscapes {
    static func decode(_ scalars: ArraySlice<Unicode.Scalar>, line: Int) throws -> String {
        var result = String.UnicodeScalarView()
        var index = scalars.startIndex
        func fail(_ message: String) -> JinjaError { .syntax(message, line: line) }
        while index < scalars.endIndex {
            let scalar = scalars[index]
            guard scalar == "\\" else {
                result.append(scalar)
                index += 1
                continue
            }
            guard index + 1 < scalars.endIndex else { throw fail("\\ at end of string") }
            let escape = scalars[index + 1]
            index += 2
            guard escape.isASCII else {
                // backslashreplace had turned the character into an escape whose backslash this one escapes.
                result.append("\\")
                result.append(contentsOf: backslashReplaced(escape).unicodeScalars)
                continue
            }
            switch escape {
            case "\n": break
            case "\\", "'", "\"": result.append(escape)
            case "a": result.append("\u{07}")
            case "b": result.append("\u{08}")
            case "f": result.append("\u{0C}")
            case "n": result.append("\n")
            case "r": result.append("\r")
            case "t": result.append("\t")
            case "v": result.append("\u{0B}")
            case "0"..."7":
                var value = escape.value - 0x30
                var digits = 1
                while digits < 3, index < scalars.endIndex, ("0"..."7").contains(scalars[index]) {
                    value = value * 8 + scalars[index].value - 0x30
                    index += 1
                    digits += 1
                }
                // At most 0o777, always a valid scalar.
                result.append(Unicode.Scalar(value) ?? "\u{FFFD}")
            case "x", "u", "U":
                let width = escape == "x" ? 2 : escape == "u" ? 4 : 8
                guard index + width <= scalars.endIndex,
                      scalars[index..<index + width].allSatisfy({ $0.isASCII && $0.properties.isASCIIHexDigit }),
                      let value = UInt32(PythonString.string(scalars[index..<index + width]), radix: 16) else {
                    throw fail("truncated \\\(escape) escape")
                }
                guard let decoded = Unicode.Scalar(value) else {
                    throw JinjaError.unsupported("the string escape for U+\(String(value, radix: 16)) (a surrogate or "
                                                 + "beyond U+10FFFF)", line: line)
                }
                result.append(decoded)
                index += width
            case "N":
                throw JinjaError.unsupported("\\N{...} escapes in string literals", line: line)
            default:
                result.append("\\")
                result.append(escape)
            }
        }
        return String(result)
    }

    /// What Python's "backslashreplace" error handler writes for a non-ASCII character, minus the backslash.
    private static func backslashReplaced(_ scalar: Unicode.Scalar) -> String {
        let hex = String(scalar.value, radix: 16)
        func pad(_ width: Int) -> String { String(repeating: "0", count: width - hex.count) + hex }
        if scalar.value <= 0xFF { return "x" + pad(2) }
        if scalar.value <= 0xFFFF { return "u" + pad(4) }
        return "U" + pad(8)
    }
}
