/// Python's `json.dumps`, which transformers' `tojson` filter calls with `ensure_ascii=False` by default.
struct PythonJSON {
    var ensureASCII = false
    /// nil for single-line output; otherwise the text repeated per level (an int indent is that many spaces).
    var indent: String?
    var itemSeparator = ", "
    var keySeparator = ": "
    var sortKeys = false

    func dumps(_ value: JinjaValue) throws -> String {
        var output = ""
        try encode(value, level: 0, into: &output)
        return output
    }

    private func encode(_ value: JinjaValue, level: Int, into output: inout String) throws {
        // json.dumps rejects circular references; only namespaces could make one, and they are not serializable.
        guard level < 500 else { throw JinjaError.type("value nested too deeply for JSON") }
        switch value {
        case .none: output += "null"
        case .bool(let flag): output += flag ? "true" : "false"
        case .int(let number): output += String(number)
        case .double(let number): output += Self.floatText(number)
        case .string(let text), .markup(let text): output += quoted(text)
        case .list(let items), .tuple(let items): try encodeArray(items, level: level, into: &output)
        case .dict(let dict):
            var entries = dict.entries
            if sortKeys { try entries.sort { try Operators.order(.less, $0.key, $1.key) } }
            try encodeObject(entries.map { (try Self.keyText($0.key), $0.value) }, level: level, into: &output)
        case .undefined, .namespace, .iterator, .macro, .function, .loop, .view:
            throw JinjaError.type("Object of type \(value.typeName) is not JSON serializable")
        }
    }

    private func encodeArray(_ items: [JinjaValue], level: Int, into output: inout String) throws {
        guard !items.isEmpty else {
            output += "[]"
            return
        }
        output += "["
        for (offset, item) in items.enumerated() {
            output += offset == 0 ? openingBreak(level) : itemSeparator + openingBreak(level)
            try encode(item, level: level + 1, into: &output)
        }
        output += closingBreak(level) + "]"
    }

    private func encodeObject(_ pairs: [(key: String, value: JinjaValue)], level: Int,
                              into output: inout String) throws {
        guard !pairs.isEmpty else {
            output += "{}"
            return
        }
        output += "{"
        for (offset, pair) in pairs.enumerated() {
            output += offset == 0 ? openingBreak(level) : itemSeparator + openingBreak(level)
            output += quoted(pair.key) + keySeparator
            try encode(pair.value, level: level + 1, into: &output)
        }
        output += closingBreak(level) + "}"
    }

    /// json.dumps turns scalar keys into strings and rejects the others.
    private static func keyText(_ key: JinjaValue) throws -> String {
        switch key {
        case .string(let text), .markup(let text): return text
        case .int(let number): return String(number)
        case .double(let number): return floatText(number)
        case .bool(let flag): return flag ? "true" : "false"
        case .none: return "null"
        default: throw JinjaError.type("keys must be str, int, float, bool or None, not \(key.typeName)")
        }
    }

    /// The newline and indentation before an item at `level + 1` (nothing on one line).
    private func openingBreak(_ level: Int) -> String {
        guard let indent else { return "" }
        return "\n" + String(repeating: indent, count: level + 1)
    }

    private func closingBreak(_ level: Int) -> String {
        guard let indent else { return "" }
        return "\n" + String(repeating: indent, count: level)
    }

    /// `float.__repr__`, with JavaScript's names for the non-finite values, as Python's json module writes them.
    static func floatText(_ number: Double) -> String {
        if number.isNaN { return "NaN" }
        if number.isInfinite { return number < 0 ? "-Infinity" : "Infinity" }
        return Python.floatRepr(number)
    }

    private func quoted(_ text: String) -> String {
        if ensureASCII { return quotedASCII(text) }
        // Everything that needs escaping is ASCII, so work on UTF-8 bytes and copy the runs between escapes.
        var result: [UInt8] = [UInt8(ascii: "\"")]
        result.reserveCapacity(text.utf8.count + 2)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): result += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): result += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case 0x0A: result += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 0x0D: result += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case 0x09: result += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0x08: result += [UInt8(ascii: "\\"), UInt8(ascii: "b")]
            case 0x0C: result += [UInt8(ascii: "\\"), UInt8(ascii: "f")]
            case ..<0x20: result += Self.unicodeEscape(Unicode.Scalar(byte)).utf8
            default: result.append(byte)
            }
        }
        result.append(UInt8(ascii: "\""))
        return String(decoding: result, as: UTF8.self)
    }

    /// `ensure_ascii=True`: every non-ASCII character as `\uXXXX`.
    private func quotedASCII(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case "\u{08}": result += "\\b"
            case "\u{0C}": result += "\\f"
            default:
                if scalar.value < 0x20 || scalar.value > 0x7E {
                    result += Self.unicodeEscape(scalar)
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        return result + "\""
    }

    /// `\uXXXX` in lower-case hex, as a surrogate pair beyond the BMP.
    private static func unicodeEscape(_ scalar: Unicode.Scalar) -> String {
        func hex4(_ value: UInt32) -> String {
            let digits = String(value, radix: 16)
            return "\\u" + String(repeating: "0", count: 4 - digits.count) + digits
        }
        guard scalar.value > 0xFFFF else { return hex4(scalar.value) }
        let offset = scalar.value - 0x10000
        return hex4(0xD800 + (offset >> 10)) + hex4(0xDC00 + (offset & 0x3FF))
    }
}
