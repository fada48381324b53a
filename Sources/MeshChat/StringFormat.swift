/// `str.format` as jinja2's sandbox runs it, for plain fields: `{}`, `{0}`, `{name}`, with `!r`/`!s` and `{{`/`}}`
/// escapes. Format specs (`{:>10}`) and attribute or index lookups in fields are not supported.
enum StringFormat {
    static func format(_ template: String, _ arguments: CallArguments, escape: Bool) throws -> String {
        let characters = Array(template)
        var result = ""
        var index = 0
        var nextAutomatic = 0
        var numbering: Bool?
        func fail(_ message: String) -> JinjaError { .type("ValueError: " + message) }
        while index < characters.count {
            let character = characters[index]
            index += 1
            if character == "}" {
                guard index < characters.count, characters[index] == "}" else {
                    throw fail("Single '}' encountered in format string")
                }
                result.append("}")
                index += 1
                continue
            }
            guard character == "{" else {
                result.append(character)
                continue
            }
            if index < characters.count, characters[index] == "{" {
                result.append("{")
                index += 1
                continue
            }
            guard let close = characters[index...].firstIndex(of: "}") else {
                throw fail("Single '{' encountered in format string")
            }
            var field = String(characters[index..<close])
            index = close + 1
            var conversion: Character?
            if let colon = field.firstIndex(of: ":") {
                guard field[field.index(after: colon)...].isEmpty else {
                    throw JinjaError.unsupported("format specs in str.format fields (e.g. {:>5})")
                }
                field = String(field[..<colon])
            }
            if let bang = field.firstIndex(of: "!") {
                let rest = field[field.index(after: bang)...]
                guard rest.count == 1, rest == "r" || rest == "s" else {
                    throw JinjaError.unsupported("conversion '!\(rest)' in str.format")
                }
                conversion = rest.first
                field = String(field[..<bang])
            }
            guard !field.contains("."), !field.contains("[") else {
                throw JinjaError.unsupported("attribute or index lookups in str.format fields")
            }
            let value: JinjaValue
            if field.isEmpty || field.allSatisfy(\.isNumber) {
                let automatic = field.isEmpty
                if let numbering, numbering != automatic {
                    throw fail("cannot switch between automatic field numbering and manual field specification")
                }
                numbering = automatic
                let position = automatic ? nextAutomatic : Int(field) ?? -1
                if automatic { nextAutomatic += 1 }
                guard arguments.positional.indices.contains(position) else {
                    throw JinjaError.type("IndexError: Replacement index \(position) out of range")
                }
                value = arguments.positional[position]
            } else {
                guard let found = arguments.keyword.first(where: { $0.name == field }) else {
                    throw JinjaError.type("KeyError: \(Python.stringRepr(field))")
                }
                value = found.value
            }
            let text = conversion == "r" ? try Python.repr(value) : try Python.str(value)
            if escape, case .markup = value {
                result += text
            } else {
                result += escape ? PythonString.htmlEscape(text) : text
            }
        }
        return result
    }
}
