/// Python methods that templates call on values: `str` methods (`strip`, `split`, `startswith` ...), `dict.get`,
/// `dict.items` ... Methods that mutate a list or dict are refused as jinja2's ImmutableSandboxedEnvironment does.
extension Renderer {
    private static let stringMethods: Set<String> = [
        "capitalize", "center", "count", "endswith", "find", "format", "index", "isalnum", "isalpha", "isdecimal",
        "isdigit", "islower", "isnumeric", "isspace", "isupper", "join", "ljust", "lower", "lstrip", "partition",
        "removeprefix", "removesuffix", "replace", "rfind", "rindex", "rjust", "rpartition", "rsplit", "rstrip",
        "split", "splitlines", "startswith", "strip", "swapcase", "title", "upper", "zfill",
    ]
    /// Real `str` attributes this engine does not implement: calling one is an error, not a silent undefined.
    private static let otherStringAttributes: Set<String> = [
        "casefold", "encode", "expandtabs", "format_map", "isascii", "isidentifier", "isprintable", "istitle",
        "maketrans", "translate",
    ]
    private static let dictMethods: Set<String> = ["copy", "get", "items", "keys", "values"]
    private static let mutatingDictMethods: Set<String> = ["clear", "pop", "popitem", "setdefault", "update"]
    private static let listMethods: Set<String> = ["copy", "count", "index"]
    private static let mutatingListMethods: Set<String> = [
        "append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort",
    ]

    /// The bound method `object.name`, nil if the type has no such attribute.
    func method(of object: JinjaValue, _ name: String) throws -> JinjaValue? {
        let bound = JinjaValue.function(JinjaFunction(kind: .method(object, name)))
        switch object {
        case .string, .markup:
            return Self.stringMethods.contains(name) || Self.otherStringAttributes.contains(name) ? bound : nil
        case .dict:
            if Self.mutatingDictMethods.contains(name) { throw unsafe(name, object) }
            return Self.dictMethods.contains(name) ? bound : nil
        case .list:
            if Self.mutatingListMethods.contains(name) { throw unsafe(name, object) }
            return Self.listMethods.contains(name) ? bound : nil
        case .tuple:
            return name == "count" || name == "index" ? bound : nil
        default:
            return nil
        }
    }

    private func unsafe(_ name: String, _ object: JinjaValue) -> JinjaError {
        .security("access to attribute '\(name)' of '\(object.typeName)' object is unsafe.")
    }

    func callMethod(_ receiver: JinjaValue, _ name: String, _ arguments: CallArguments) throws -> JinjaValue {
        switch receiver {
        case .string(let text): return try callStringMethod(text, isMarkup: false, name, arguments)
        case .markup(let text): return try callStringMethod(text, isMarkup: true, name, arguments)
        case .dict(let dict): return try callDictMethod(dict, name, arguments)
        case .list(let items), .tuple(let items): return try callSequenceMethod(receiver, items, name, arguments)
        case .loop(let loop):
            guard name == "cycle" else { throw JinjaError.unsupported("loop.\(name)()") }
            guard arguments.keyword.isEmpty, !arguments.positional.isEmpty else {
                throw JinjaError.type("no items for cycling given")
            }
            return arguments.positional[loop.index0 % arguments.positional.count]
        default:
            throw JinjaError.unsupported("the \(receiver.typeName) method \(name)")
        }
    }

    private func callDictMethod(_ dict: JinjaDict, _ name: String, _ arguments: CallArguments) throws -> JinjaValue {
        switch name {
        case "get":
            let values = try arguments.bind("get", [("key", nil), ("default", JinjaValue.none)])
            return try dict.value(for: values[0]) ?? values[1]
        case "items":
            _ = try arguments.bind(name, [])
            return .view(JinjaView(kind: .items, items: dict.entries.map { .tuple([$0.key, $0.value]) }))
        case "keys":
            _ = try arguments.bind(name, [])
            return .view(JinjaView(kind: .keys, items: dict.entries.map(\.key)))
        case "values":
            _ = try arguments.bind(name, [])
            return .view(JinjaView(kind: .values, items: dict.entries.map(\.value)))
        default:
            _ = try arguments.bind(name, [])
            return .dict(dict)
        }
    }

    private func callSequenceMethod(_ receiver: JinjaValue, _ items: [JinjaValue], _ name: String,
                                    _ arguments: CallArguments) throws -> JinjaValue {
        switch name {
        case "count":
            let needle = try arguments.bind("count", [("value", nil)])[0]
            return .int(items.filter { Operators.equal($0, needle) }.count)
        case "index":
            let values = try arguments.bind("index", [("value", nil), ("start", .int(0)), ("stop", .int(.max))])
            let (start, stop) = try (Self.intArgument(values[1]), Self.intArgument(values[2]))
            let range = Self.clampedRange(start, stop, count: items.count)
            guard let found = range.first(where: { Operators.equal(items[$0], values[0]) }) else {
                throw JinjaError.type("ValueError: \(try Python.repr(values[0])) is not in \(receiver.typeName)")
            }
            return .int(found)
        default:
            _ = try arguments.bind(name, [])
            return receiver
        }
    }

    static func intArgument(_ value: JinjaValue) throws -> Int {
        switch value {
        case .int(let number): return number
        case .bool(let flag): return flag ? 1 : 0
        default: throw JinjaError.type("'\(value.typeName)' object cannot be interpreted as an integer")
        }
    }

    private static func optionalInt(_ value: JinjaValue) throws -> Int? {
        if case .none = value { return nil }
        return try intArgument(value)
    }

    /// Python's `[start:stop]` clamping for optional bounds.
    static func clampedRange(_ start: Int?, _ stop: Int?, count: Int) -> Range<Int> {
        func adjust(_ bound: Int?, _ fallback: Int) -> Int {
            guard let bound else { return fallback }
            return bound < 0 ? max(bound + count, 0) : min(bound, count)
        }
        let lower = adjust(start, 0)
        return lower..<max(adjust(stop, count), lower)
    }

    private static func stringArgument(_ value: JinjaValue, _ function: String) throws -> String {
        guard let text = value.stringValue else {
            throw JinjaError.type("\(function)() argument must be str, not \(value.typeName)")
        }
        return text
    }

    private func callStringMethod(_ text: String, isMarkup: Bool, _ name: String,
                                  _ arguments: CallArguments) throws -> JinjaValue {
        // Markup's methods return Markup and escape plain-string arguments that get inserted.
        func wrap(_ result: String) -> JinjaValue { isMarkup ? .markup(result) : .string(result) }
        func inserted(_ value: JinjaValue) throws -> String {
            let inserted = try Self.stringArgument(value, name)
            if isMarkup, case .string = value { return PythonString.htmlEscape(inserted) }
            return inserted
        }
        func bind(_ parameters: [(String, JinjaValue?)]) throws -> [JinjaValue] {
            try arguments.bind(name, parameters)
        }
        let scalars = Array(text.unicodeScalars)
        switch name {
        case "strip", "lstrip", "rstrip":
            let chars = try bind([("chars", JinjaValue.none)])[0]
            let set: String? = if case .none = chars { nil } else { try Self.stringArgument(chars, name) }
            return wrap(PythonString.strip(text, chars: set, leading: name != "rstrip", trailing: name != "lstrip"))
        case "split", "rsplit":
            let values = try bind([("sep", JinjaValue.none), ("maxsplit", .int(-1))])
            let separator: String? = if case .none = values[0] { nil } else { try Self.stringArgument(values[0], name) }
            let limit = try Self.intArgument(values[1])
            let parts = name == "split"
                ? try PythonString.split(text, separator: separator, maxSplit: limit)
                : try PythonString.rsplit(text, separator: separator, maxSplit: limit)
            return .list(parts.map(wrap))
        case "splitlines":
            let keepEnds = try bind([("keepends", .bool(false))])[0].isTruthy
            return .list(PythonString.splitLines(text, keepEnds: keepEnds).map(wrap))
        case "upper", "lower", "title", "capitalize", "swapcase":
            _ = try bind([])
            switch name {
            case "upper": return wrap(PythonString.upper(text))
            case "lower": return wrap(PythonString.lower(text))
            case "title": return wrap(PythonString.title(text))
            case "capitalize": return wrap(PythonString.capitalize(text))
            default: return wrap(PythonString.swapcase(text))
            }
        case "replace":
            let values = try bind([("old", nil), ("new", nil), ("count", .int(-1))])
            return wrap(PythonString.replace(text, try inserted(values[0]), try inserted(values[1]),
                                             count: try Self.intArgument(values[2])))
        case "startswith", "endswith":
            let values = try bind([("prefix", nil), ("start", JinjaValue.none), ("end", JinjaValue.none)])
            let candidates: [String]
            if case .tuple(let items) = values[0] {
                candidates = try items.map { try Self.stringArgument($0, name) }
            } else if let single = values[0].stringValue {
                candidates = [single]
            } else {
                throw JinjaError.type("\(name) first arg must be str or a tuple of str, not \(values[0].typeName)")
            }
            let start = try Self.optionalInt(values[1])
            if let start, start > scalars.count { return .bool(false) }
            let window = scalars[Self.clampedRange(start, try Self.optionalInt(values[2]), count: scalars.count)]
            return .bool(candidates.contains { candidate in
                let needle = Array(candidate.unicodeScalars)
                return name == "startswith"
                    ? window.starts(with: needle) : window.reversed().starts(with: needle.reversed())
            })
        case "find", "rfind", "index", "rindex", "count":
            let values = try bind([("sub", nil), ("start", JinjaValue.none), ("end", JinjaValue.none)])
            let needle = Array(try Self.stringArgument(values[0], name).unicodeScalars)
            let range = Self.clampedRange(try Self.optionalInt(values[1]), try Self.optionalInt(values[2]),
                                          count: scalars.count)
            if name == "count" {
                return .int(PythonString.count(PythonString.string(scalars[range]), PythonString.string(needle)))
            }
            let found = name.hasPrefix("r")
                ? PythonString.findLast(scalars, needle, from: range.lowerBound, to: range.upperBound)
                : PythonString.find(scalars, needle, from: range.lowerBound, to: range.upperBound)
            if found == nil, name.hasSuffix("index") { throw JinjaError.type("ValueError: substring not found") }
            return .int(found ?? -1)
        case "join":
            let items = try iterate(try bind([("iterable", nil)])[0])
            let parts = try items.enumerated().map { offset, item in
                guard item.stringValue != nil else {
                    throw JinjaError.type("sequence item \(offset): expected str instance, \(item.typeName) found")
                }
                return try inserted(item)
            }
            return wrap(parts.joined(separator: text))
        case "format":
            return wrap(try StringFormat.format(text, arguments, escape: isMarkup))
        case "isalnum", "isalpha", "isdecimal", "isdigit", "isnumeric", "isspace", "islower", "isupper":
            _ = try bind([])
            return .bool(Self.classify(scalars, name))
        case "center", "ljust", "rjust":
            let values = try bind([("width", nil), ("fillchar", .string(" "))])
            let width = try Self.intArgument(values[0])
            let fill = Array(try Self.stringArgument(values[1], name).unicodeScalars)
            guard fill.count == 1 else {
                throw JinjaError.type("The fill character must be exactly one character long")
            }
            let padding = max(width - scalars.count, 0)
            if name == "center" { return wrap(PythonString.center(text, width: width, fill: fill[0])) }
            let pad = PythonString.string(repeatElement(fill[0], count: padding))
            return wrap(name == "ljust" ? text + pad : pad + text)
        case "zfill":
            let width = try Self.intArgument(try bind([("width", nil)])[0])
            let padding = String(repeating: "0", count: max(width - scalars.count, 0))
            if let sign = scalars.first, sign == "+" || sign == "-" {
                return wrap(String(sign) + padding + PythonString.string(scalars.dropFirst()))
            }
            return wrap(padding + text)
        case "removeprefix", "removesuffix":
            let affix = Array(try Self.stringArgument(try bind([("prefix", nil)])[0], name).unicodeScalars)
            if name == "removeprefix", scalars.starts(with: affix) {
                return wrap(PythonString.string(scalars.dropFirst(affix.count)))
            }
            if name == "removesuffix", !affix.isEmpty, scalars.reversed().starts(with: affix.reversed()) {
                return wrap(PythonString.string(scalars.dropLast(affix.count)))
            }
            return wrap(text)
        case "partition", "rpartition":
            let separator = Array(try Self.stringArgument(try bind([("sep", nil)])[0], name).unicodeScalars)
            guard !separator.isEmpty else { throw JinjaError.type("ValueError: empty separator") }
            let found = name == "partition" ? PythonString.find(scalars, separator)
                                            : PythonString.findLast(scalars, separator)
            guard let found else {
                return .tuple(name == "partition" ? [wrap(text), wrap(""), wrap("")] : [wrap(""), wrap(""), wrap(text)])
            }
            return .tuple([wrap(PythonString.string(scalars[..<found])), wrap(PythonString.string(separator)),
                           wrap(PythonString.string(scalars[(found + separator.count)...]))])
        default:
            throw JinjaError.unsupported("the string method '\(name)'")
        }
    }

    /// `str.isalpha()` and friends: true for a non-empty string whose characters all qualify
    /// (`isupper`/`islower`: at least one cased character and none of the other case).
    private static func classify(_ scalars: [Unicode.Scalar], _ name: String) -> Bool {
        guard !scalars.isEmpty else { return false }
        switch name {
        case "isalnum": return scalars.allSatisfy(PythonString.isAlnum)
        case "isalpha": return scalars.allSatisfy(PythonString.isAlpha)
        case "isdecimal": return scalars.allSatisfy { $0.properties.numericType == .decimal }
        case "isdigit": return scalars.allSatisfy(PythonString.isDigit)
        case "isnumeric": return scalars.allSatisfy { $0.properties.numericType != nil }
        case "isspace": return scalars.allSatisfy(PythonString.isSpace)
        default:
            let wanted = name == "isupper"
            var sawCased = false
            for scalar in scalars {
                let properties = scalar.properties
                if properties.generalCategory == .titlecaseLetter { return false }
                if wanted ? properties.isLowercase : properties.isUppercase { return false }
                if wanted ? properties.isUppercase : properties.isLowercase { sawCased = true }
            }
            return sawCased
        }
    }
}
