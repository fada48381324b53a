import Foundation

/// Python's printf-style `str % args` (also the `format` filter): `%s %r %d %i %u %x %X %o %c %e %f %g` and
/// `%%`, with `%(key)s` mapping keys, flags, width and precision. `*` widths are not supported.
enum PercentFormat {
    private struct Spec {
        var flags: Set<Character> = []
        var width: Int?
        var precision: Int?
        var conversion: Character = "s"
    }

    static func format(_ template: String, _ arguments: JinjaValue) throws -> String {
        var positional: [JinjaValue]
        var isSingle = false
        if case .tuple(let items) = arguments {
            positional = items
        } else {
            positional = [arguments]
            isSingle = true
        }
        let mapping: JinjaDict? = if case .dict(let dict) = arguments { dict } else { nil }
        var used = 0
        var result = ""
        var characters = Array(template)
        var index = 0
        func fail(_ message: String) -> JinjaError { .type(message) }
        while index < characters.count {
            let character = characters[index]
            index += 1
            guard character == "%" else {
                result.append(character)
                continue
            }
            guard index < characters.count else { throw fail("ValueError: incomplete format") }
            if characters[index] == "%" {
                result.append("%")
                index += 1
                continue
            }
            var value: JinjaValue
            var key: String?
            if characters[index] == "(" {
                var depth = 1
                var end = index + 1
                while end < characters.count, depth > 0 {
                    if characters[end] == "(" { depth += 1 }
                    if characters[end] == ")" { depth -= 1 }
                    end += 1
                }
                guard depth == 0 else { throw fail("ValueError: incomplete format key") }
                key = String(characters[(index + 1)..<(end - 1)])
                index = end
            }
            var spec = Spec()
            while index < characters.count, "-+ #0".contains(characters[index]) {
                spec.flags.insert(characters[index])
                index += 1
            }
            spec.width = readNumber(&characters, &index)
            if index < characters.count, characters[index] == "." {
                index += 1
                spec.precision = readNumber(&characters, &index) ?? 0
            }
            while index < characters.count, "hlL".contains(characters[index]) { index += 1 }
            guard index < characters.count else { throw fail("ValueError: incomplete format") }
            if characters[index] == "*" { throw JinjaError.unsupported("'*' widths in % formatting") }
            spec.conversion = characters[index]
            index += 1
            if let key {
                guard let mapping else { throw fail("format requires a mapping") }
                guard let found = mapping[key] else { throw fail("KeyError: \(Python.stringRepr(key))") }
                value = found
            } else {
                guard used < positional.count else { throw fail("not enough arguments for format string") }
                value = positional[used]
                used += 1
            }
            result += try convert(value, spec)
        }
        // Python skips this check when the single argument is a mapping (and a list counts as one).
        var isMappingLike = false
        if isSingle, case .dict = arguments { isMappingLike = true }
        if isSingle, case .list = arguments { isMappingLike = true }
        if isSingle, case .undefined = arguments { isMappingLike = true }
        if used < positional.count, !isMappingLike {
            throw fail("not all arguments converted during string formatting")
        }
        return result
    }

    private static func readNumber(_ characters: inout [Character], _ index: inout Int) -> Int? {
        var digits = ""
        while index < characters.count, let digit = characters[index].wholeNumberValue, characters[index].isASCII {
            digits += String(digit)
            index += 1
        }
        return Int(digits)
    }

    private static func pad(_ text: String, _ spec: Spec) -> String {
        let length = text.unicodeScalars.count
        guard let width = spec.width, width > length else { return text }
        let fill = String(repeating: " ", count: width - length)
        return spec.flags.contains("-") ? text + fill : fill + text
    }

    private static func convert(_ value: JinjaValue, _ spec: Spec) throws -> String {
        switch spec.conversion {
        case "s", "r":
            var text = spec.conversion == "s" ? try Python.str(value) : try Python.repr(value)
            if let precision = spec.precision { text = PythonString.string(text.unicodeScalars.prefix(precision)) }
            return pad(text, spec)
        case "c":
            if case .int(let code) = value, let scalar = Unicode.Scalar(UInt32(clamping: code)) {
                return pad(String(scalar), spec)
            }
            if let text = value.stringValue, text.unicodeScalars.count == 1 { return pad(text, spec) }
            throw JinjaError.type("%c requires int or char")
        case "d", "i", "u", "x", "X", "o":
            let integer: Int
            switch value {
            case .int(let number): integer = number
            case .bool(let flag): integer = flag ? 1 : 0
            case .double(let number) where "diu".contains(spec.conversion) && number.isFinite:
                integer = Int(number.rounded(.towardZero))
            default:
                throw JinjaError.type("%\(spec.conversion) format: a real number is required, not \(value.typeName)")
            }
            if spec.conversion == "o", spec.flags.contains("#") {
                throw JinjaError.unsupported("'%#o' formatting")
            }
            let conversion = spec.conversion == "i" || spec.conversion == "u" ? "d" : String(spec.conversion)
            return String(format: cFormat(spec, conversion: "l" + conversion), integer)
        case "e", "E", "f", "F", "g", "G":
            let number: Double
            switch value {
            case .int(let integer): number = Double(integer)
            case .bool(let flag): number = flag ? 1 : 0
            case .double(let double): number = double
            default:
                throw JinjaError.type("must be real number, not \(value.typeName)")
            }
            return String(format: cFormat(spec, conversion: String(spec.conversion)), number)
        default:
            throw JinjaError.type("ValueError: unsupported format character '\(spec.conversion)'")
        }
    }

    /// The equivalent C format directive; C's printf rounds and pads numbers as Python's % does.
    private static func cFormat(_ spec: Spec, conversion: String) -> String {
        var directive = "%"
        for flag in "-+ #0" where spec.flags.contains(flag) { directive.append(flag) }
        if let width = spec.width { directive += String(width) }
        if let precision = spec.precision { directive += "." + String(precision) }
        return directive + conversion
    }
}
