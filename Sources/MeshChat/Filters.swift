import Foundation

/// jinja2's built-in filters with autoescape off, plus transformers' `tojson`. Filters that return generators in
/// jinja2 (`map`, `select`, `reject`, `selectattr`, `rejectattr`, `unique`, `items`, `batch`, `slice`, `reverse`)
/// return one-shot iterators here too, so `|length` on them fails and a second loop over them is empty, as in jinja2.
extension Renderer {
    static let filterNames: Set<String> = [
        "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape",
        "filesizeformat", "first", "float", "forceescape", "format", "groupby", "indent", "int", "join", "last",
        "length", "list", "lower", "items", "map", "min", "max", "pprint", "random", "reject", "rejectattr",
        "replace", "reverse", "round", "safe", "select", "selectattr", "slice", "sort", "string", "striptags", "sum",
        "title", "trim", "truncate", "unique", "upper", "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr",
        "tojson",
    ]

    func applyFilter(_ filter: FilterCall, to value: JinjaValue, in scope: Scope) throws -> JinjaValue {
        let arguments = try evaluateArguments(filter.arguments, in: scope)
        do {
            return try callFilter(filter.name, value, arguments)
        } catch let error as JinjaError where error.line == nil {
            var located = error
            located.line = filter.line
            throw located
        }
    }

    // One switch keeps each filter next to its Python signature.
    func callFilter(_ name: String, _ value: JinjaValue, _ arguments: CallArguments) throws -> JinjaValue {
        func bind(_ parameters: [(String, JinjaValue?)]) throws -> [JinjaValue] {
            try arguments.bind(name, parameters)
        }
        switch name {
        case "abs":
            _ = try bind([])
            switch value {
            case .int(let number) where number != .min: return .int(abs(number))
            case .bool(let flag): return .int(flag ? 1 : 0)
            case .double(let number): return .double(abs(number))
            default: throw JinjaError.type("bad operand type for abs(): '\(value.typeName)'")
            }
        case "attr":
            let attribute = try bind([("name", nil)])[0]
            guard let key = attribute.stringValue else { throw JinjaError.type("attribute name must be string") }
            if value.isUndefined { throw JinjaError.undefined("the value") }
            if case .dict = value { return try method(of: value, key) ?? .undefined }
            return try self.attribute(of: value, key)
        case "batch":
            let values = try bind([("linecount", nil), ("fill_with", JinjaValue.none)])
            let size = try Self.intArgument(values[0])
            var rows: [JinjaValue] = []
            var row: [JinjaValue] = []
            for item in try iterate(value) {
                if row.count == size {
                    rows.append(.list(row))
                    row = []
                }
                row.append(item)
            }
            if !row.isEmpty {
                if case .none = values[1] {} else {
                    row += Array(repeating: values[1], count: max(size - row.count, 0))
                }
                rows.append(.list(row))
            }
            return .iterator(JinjaIterator(rows))
        case "capitalize", "lower", "upper", "trim", "center":
            let text = try value.stringValue ?? Python.str(value)
            let transform: (String) -> String
            switch name {
            case "capitalize":
                _ = try bind([])
                transform = PythonString.capitalize
            case "lower":
                _ = try bind([])
                transform = PythonString.lower
            case "upper":
                _ = try bind([])
                transform = PythonString.upper
            case "trim":
                let chars = try bind([("chars", JinjaValue.none)])[0]
                let set: String? = if case .none = chars { nil } else { try Self.requireString(chars, "strip arg") }
                transform = { PythonString.strip($0, chars: set) }
            default:
                let width = try Self.intArgument(try bind([("width", .int(80))])[0])
                transform = { PythonString.center($0, width: width) }
            }
            return Self.sameKind(as: value, transform(text))
        case "count", "length":
            _ = try bind([])
            return .int(try length(of: value))
        case "d", "default":
            let values = try bind([("default_value", .string("")), ("boolean", .bool(false))])
            return value.isUndefined || (values[1].isTruthy && !value.isTruthy) ? values[0] : value
        case "dictsort":
            let values = try bind([("case_sensitive", .bool(false)), ("by", .string("key")), ("reverse", .bool(false))])
            guard case .dict(let dict) = value else {
                throw JinjaError.type("'\(value.typeName)' object has no attribute 'items'")
            }
            guard let by = values[1].stringValue, by == "key" || by == "value" else {
                throw JinjaError.type("You can only sort by either \"key\" or \"value\"")
            }
            let pairs = dict.entries.map { JinjaValue.tuple([$0.key, $0.value]) }
            let keys = dict.entries.map { entry in
                let key = by == "key" ? entry.key : entry.value
                return values[0].isTruthy ? key : Self.ignoringCase(key)
            }
            return .list(try Self.stableSorted(pairs, keys: keys, reverse: values[2].isTruthy))
        case "e", "escape", "forceescape":
            _ = try bind([])
            if name != "forceescape", case .markup = value { return value }
            return .markup(PythonString.htmlEscape(try value.stringValue ?? Python.str(value)))
        case "first":
            _ = try bind([])
            if case .iterator(let iterator) = value { return try iterator.next() ?? .undefined }
            return try iterate(value).first ?? .undefined
        case "last":
            _ = try bind([])
            if case .iterator = value { throw JinjaError.type("'generator' object is not reversible") }
            return try iterate(value).last ?? .undefined
        case "float":
            let fallback = try bind([("default", .double(0))])[0]
            return try Self.toFloat(value) ?? fallback
        case "int":
            let values = try bind([("default", .int(0)), ("base", .int(10))])
            return try Self.toInt(value, base: try Self.intArgument(values[1])) ?? values[0]
        case "format":
            guard arguments.positional.isEmpty || arguments.keyword.isEmpty else {
                throw JinjaError.type("can't handle positional and keyword arguments at the same time")
            }
            let text = try softString(value)
            let operand: JinjaValue = arguments.keyword.isEmpty
                ? .tuple(arguments.positional) : .dict(JinjaDict(arguments.keyword.map { ($0.name, $0.value) }))
            return try Operators.binary(.modulo, text, operand)
        case "indent":
            let values = try bind([("width", .int(4)), ("first", .bool(false)), ("blank", .bool(false))])
            return try indent(value, width: values[0], first: values[1].isTruthy, blank: values[2].isTruthy)
        case "items":
            _ = try bind([])
            switch value {
            case .undefined: return .iterator(JinjaIterator([]))
            case .dict(let dict): return .iterator(JinjaIterator(dict.entries.map { .tuple([$0.key, $0.value]) }))
            default: throw JinjaError.type("Can only get item pairs from a mapping.")
            }
        case "join":
            let values = try bind([("d", .string("")), ("attribute", JinjaValue.none)])
            var items = try iterate(value)
            if case .none = values[1] {} else { items = try items.map(attributeGetter(values[1])) }
            return .string(try items.map { try Python.str($0) }.joined(separator: try Python.str(values[0])))
        case "list":
            _ = try bind([])
            return .list(try iterate(value))
        case "map":
            return try mapFilter(value, arguments)
        case "max", "min":
            let values = try bind([("case_sensitive", .bool(false)), ("attribute", JinjaValue.none)])
            let items = try iterate(value)
            let getter = try attributeGetter(values[1])
            var best: (item: JinjaValue, key: JinjaValue)?
            for item in items {
                var key = try getter(item)
                if !values[0].isTruthy { key = Self.ignoringCase(key) }
                if let current = best, !(try Operators.order(name == "min" ? .less : .greater, key, current.key)) {
                    continue
                }
                best = (item, key)
            }
            return best?.item ?? .undefined
        case "reject", "rejectattr", "select", "selectattr":
            return try selectFilter(value, arguments, keep: name.hasPrefix("select"),
                                    byAttribute: name.hasSuffix("attr"))
        case "replace":
            let values = try bind([("old", nil), ("new", nil), ("count", JinjaValue.none)])
            let count: Int = if case .none = values[2] { -1 } else { try Self.intArgument(values[2]) }
            return .string(PythonString.replace(try Python.str(value), try Python.str(values[0]),
                                                try Python.str(values[1]), count: count))
        case "reverse":
            _ = try bind([])
            switch value {
            case .string(let text): return .string(PythonString.string(text.unicodeScalars.reversed()))
            case .markup(let text): return .markup(PythonString.string(text.unicodeScalars.reversed()))
            case .list, .tuple, .dict, .view, .undefined:
                return .iterator(JinjaIterator(try iterate(value).reversed()))
            case .iterator(let iterator): return .list(try iterator.drain().reversed())
            default: throw JinjaError.type("argument must be iterable")
            }
        case "round":
            let values = try bind([("precision", .int(0)), ("method", .string("common"))])
            return try round(value, precision: try Self.intArgument(values[0]), method: values[1].stringValue ?? "")
        case "safe":
            _ = try bind([])
            if case .markup = value { return value }
            return .markup(try Python.str(value))
        case "slice":
            let values = try bind([("slices", nil), ("fill_with", JinjaValue.none)])
            return try sliceFilter(value, count: try Self.intArgument(values[0]), fill: values[1])
        case "sort":
            let values = try bind([("reverse", .bool(false)), ("case_sensitive", .bool(false)),
                                   ("attribute", JinjaValue.none)])
            let items = try iterate(value)
            let keys = try items.map(multiAttributeGetter(values[2], ignoreCase: !values[1].isTruthy))
            return .list(try Self.stableSorted(items, keys: keys, reverse: values[0].isTruthy))
        case "string":
            _ = try bind([])
            return try softString(value)
        case "sum":
            let values = try bind([("attribute", JinjaValue.none), ("start", .int(0))])
            let getter = try attributeGetter(values[0])
            if values[1].stringValue != nil { throw JinjaError.type("sum() can't sum strings") }
            return try iterate(value).reduce(values[1]) { total, item in
                let addend = try getter(item)
                if addend.isUndefined { throw JinjaError.undefined("a summed value") }
                return try Operators.binary(.add, total, addend)
            }
        case "title":
            _ = try bind([])
            return .string(PythonString.jinjaTitle(try Python.str(value)))
        case "tojson":
            return .string(try toJSON(value, arguments))
        case "truncate":
            let values = try bind([("length", .int(255)), ("killwords", .bool(false)), ("end", .string("...")),
                                   ("leeway", JinjaValue.none)])
            return try truncate(value, values)
        case "unique":
            let values = try bind([("case_sensitive", .bool(false)), ("attribute", JinjaValue.none)])
            let getter = try attributeGetter(values[1])
            var seen: [JinjaValue] = []
            var unique: [JinjaValue] = []
            for item in try iterate(value) {
                var key = try getter(item)
                if !values[0].isTruthy { key = Self.ignoringCase(key) }
                if case .list = key { throw JinjaError.type("unhashable type: 'list'") }
                if case .dict = key { throw JinjaError.type("unhashable type: 'dict'") }
                guard !seen.contains(where: { Operators.equal($0, key) }) else { continue }
                seen.append(key)
                unique.append(item)
            }
            return .iterator(JinjaIterator(unique))
        case "wordcount":
            _ = try bind([])
            var count = 0
            var inWord = false
            for scalar in try Python.str(value).unicodeScalars {
                let isWord = scalar == "_" || PythonString.isAlnum(scalar)
                if isWord, !inWord { count += 1 }
                inWord = isWord
            }
            return .int(count)
        default:
            if Self.filterNames.contains(name) { throw JinjaError.unsupported("the '\(name)' filter") }
            throw JinjaError(.syntax, "no filter named \(Python.stringRepr(name))")
        }
    }

    // MARK: Helpers shared by filters

    /// jinja2's `soft_str`: strings and Markup unchanged, anything else through `str()`.
    private func softString(_ value: JinjaValue) throws -> JinjaValue {
        value.stringValue != nil ? value : .string(try Python.str(value))
    }

    private static func sameKind(as original: JinjaValue, _ text: String) -> JinjaValue {
        if case .markup = original { return .markup(text) }
        return .string(text)
    }

    private static func requireString(_ value: JinjaValue, _ what: String) throws -> String {
        guard let text = value.stringValue else { throw JinjaError.type("\(what) must be None or str") }
        return text
    }

    /// Python `len()`.
    func length(of value: JinjaValue) throws -> Int {
        switch value {
        case .string(let text), .markup(let text): return text.unicodeScalars.count
        case .list(let items), .tuple(let items): return items.count
        case .view(let view): return view.items.count
        case .dict(let dict): return dict.count
        case .undefined: return 0
        default: throw JinjaError.type("object of type '\(value.typeName)' has no len()")
        }
    }

    /// jinja2's `ignore_case` sort/unique key.
    private static func ignoringCase(_ value: JinjaValue) -> JinjaValue {
        switch value {
        case .string(let text): .string(PythonString.lower(text))
        case .markup(let text): .markup(PythonString.lower(text))
        default: value
        }
    }

    /// `sorted(items, key=..., reverse=...)`: stable, comparing keys with Python's `<`.
    private static func stableSorted(_ items: [JinjaValue], keys: [JinjaValue], reverse: Bool) throws -> [JinjaValue] {
        let order = try items.indices.sorted { lhs, rhs in
            let (first, second) = reverse ? (keys[rhs], keys[lhs]) : (keys[lhs], keys[rhs])
            if try Operators.order(.less, first, second) { return true }
            if try Operators.order(.less, second, first) { return false }
            return lhs < rhs
        }
        return order.map { items[$0] }
    }

    /// jinja2's `make_attrgetter`: a dotted path of items (`"function.name"`, digits as list indices).
    private func attributeGetter(_ attribute: JinjaValue,
                                 default fallback: JinjaValue? = nil) throws -> (JinjaValue) throws -> JinjaValue {
        let parts: [JinjaValue]
        switch attribute {
        case .none: parts = []
        case .string(let path), .markup(let path):
            parts = path.split(separator: ".", omittingEmptySubsequences: false).map { part in
                if !part.isEmpty, part.unicodeScalars.allSatisfy(PythonString.isDigit), let index = Int(part) {
                    return .int(index)
                }
                return .string(String(part))
            }
        case .int, .bool: parts = [attribute]
        default: throw JinjaError.type("attribute must be a string or an integer")
        }
        return { [self] item in
            var current = item
            for part in parts {
                current = try self.item(of: current, part)
                if let fallback, current.isUndefined { current = fallback }
            }
            return current
        }
    }

    /// jinja2's `make_multi_attrgetter` (for `sort`): comma-separated paths, giving a list key.
    private func multiAttributeGetter(_ attribute: JinjaValue,
                                      ignoreCase: Bool) throws -> (JinjaValue) throws -> JinjaValue {
        let paths: [JinjaValue] = if case .string(let text) = attribute {
            text.split(separator: ",", omittingEmptySubsequences: false).map { .string(String($0)) }
        } else {
            [attribute]
        }
        let getters = try paths.map { try attributeGetter($0) }
        return { item in
            .list(try getters.map { getter in
                let key = try getter(item)
                return ignoreCase ? Self.ignoringCase(key) : key
            })
        }
    }

    private func mapFilter(_ value: JinjaValue, _ arguments: CallArguments) throws -> JinjaValue {
        let transform: (JinjaValue) throws -> JinjaValue
        if arguments.positional.isEmpty, let attribute = arguments.keyword.first(where: { $0.name == "attribute" }) {
            var fallback: JinjaValue?
            for (name, value) in arguments.keyword where name != "attribute" {
                guard name == "default" else { throw JinjaError.type("Unexpected keyword argument '\(name)'") }
                if case .none = value {} else { fallback = value }
            }
            transform = try attributeGetter(attribute.value, default: fallback)
        } else {
            guard let filter = arguments.positional.first else {
                throw JinjaError.type("map requires a filter argument")
            }
            guard let name = filter.stringValue else { throw JinjaError.type("map filter name must be a string") }
            let rest = CallArguments(positional: Array(arguments.positional.dropFirst()), keyword: arguments.keyword)
            transform = { [self] in try callFilter(name, $0, rest) }
        }
        guard value.isTruthy else { return .iterator(JinjaIterator([])) }
        return .iterator(JinjaIterator(try iterate(value).map(transform)))
    }

    private func selectFilter(_ value: JinjaValue, _ arguments: CallArguments, keep: Bool,
                              byAttribute: Bool) throws -> JinjaValue {
        guard value.isTruthy else { return .iterator(JinjaIterator([])) }
        var transform: (JinjaValue) throws -> JinjaValue = { $0 }
        var offset = 0
        if byAttribute {
            guard let attribute = arguments.positional.first else {
                throw JinjaError.type("Missing parameter for attribute name")
            }
            transform = try attributeGetter(attribute)
            offset = 1
        }
        var test: (JinjaValue) throws -> Bool = { $0.isTruthy }
        if arguments.positional.count > offset {
            guard let name = arguments.positional[offset].stringValue else {
                throw JinjaError.type("test name must be a string")
            }
            let rest = CallArguments(positional: Array(arguments.positional.dropFirst(offset + 1)),
                                     keyword: arguments.keyword)
            test = { [self] in try applyTest(name, to: $0, rest) }
        }
        return .iterator(JinjaIterator(try iterate(value).filter { try test(try transform($0)) == keep }))
    }

    private func indent(_ value: JinjaValue, width: JinjaValue, first: Bool, blank: Bool) throws -> JinjaValue {
        guard let text = value.stringValue else {
            if value.isUndefined { throw JinjaError.undefined("the indented value") }
            throw JinjaError.type("can only indent a string, not \(value.typeName)")
        }
        let indentation: String
        switch width {
        case .string(let string), .markup(let string): indentation = string
        case .int, .bool: indentation = String(repeating: " ", count: max(try Self.intArgument(width), 0))
        default: throw JinjaError.type("can't multiply sequence by non-int of type '\(width.typeName)'")
        }
        // jinja2 appends a newline first so that splitlines keeps a trailing empty line.
        var lines = PythonString.splitLines(text + "\n")
        var result: String
        if blank {
            result = lines.joined(separator: "\n" + indentation)
        } else {
            result = lines.removeFirst()
            if !lines.isEmpty {
                result += "\n" + lines.map { $0.isEmpty ? $0 : indentation + $0 }.joined(separator: "\n")
            }
        }
        if first { result = indentation + result }
        return Self.sameKind(as: value, result)
    }

    private func round(_ value: JinjaValue, precision: Int, method: String) throws -> JinjaValue {
        let number: Double
        switch value {
        case .int(let integer):
            if method == "common" {
                guard precision >= 0 else { throw JinjaError.unsupported("round() of an int to negative digits") }
                return value
            }
            number = Double(integer)
        case .bool(let flag):
            if method == "common" { return .int(flag ? 1 : 0) }
            number = flag ? 1 : 0
        case .double(let double): number = double
        default: throw JinjaError.type("type \(value.typeName) doesn't define __round__ method")
        }
        let scale = pow(10, Double(precision))
        switch method {
        case "common":
            guard number.isFinite else { return .double(number) }
            if precision == 0 { return .double(number.rounded(.toNearestOrEven)) }
            if precision < 0 {
                let scaled = number / pow(10, Double(-precision))
                return .double(scaled.rounded(.toNearestOrEven) * pow(10, Double(-precision)))
            }
            // C's printf rounds the exact binary value half-to-even, as Python's round() does.
            return .double(Double(String(format: "%.\(precision)f", number)) ?? number)
        case "ceil": return .double((number * scale).rounded(.up) / scale)
        case "floor": return .double((number * scale).rounded(.down) / scale)
        default: throw JinjaError.type("method must be common, ceil or floor")
        }
    }

    private func sliceFilter(_ value: JinjaValue, count slices: Int, fill: JinjaValue) throws -> JinjaValue {
        let items = try iterate(value)
        guard slices > 0 else { throw JinjaError.type("slice count must be positive") }
        let perSlice = items.count / slices
        let withExtra = items.count % slices
        var offset = 0
        var result: [JinjaValue] = []
        for number in 0..<slices {
            let start = offset + number * perSlice
            if number < withExtra { offset += 1 }
            let end = offset + (number + 1) * perSlice
            var part = Array(items[start..<end])
            if case .none = fill {} else if number >= withExtra { part.append(fill) }
            result.append(.list(part))
        }
        return .iterator(JinjaIterator(result))
    }

    private func truncate(_ value: JinjaValue, _ values: [JinjaValue]) throws -> JinjaValue {
        let length = try Self.intArgument(values[0])
        let end = try Python.str(values[2])
        let leeway: Int = if case .none = values[3] { 5 } else { try Self.intArgument(values[3]) }
        let endLength = end.unicodeScalars.count
        guard length >= endLength, leeway >= 0 else { throw JinjaError.type("AssertionError: invalid truncate length") }
        // Anything with a length that fits comes back unchanged; only strings can be cut.
        if try self.length(of: value) <= length + leeway { return value }
        guard let text = value.stringValue else {
            throw JinjaError.type("'\(value.typeName)' object cannot be truncated")
        }
        var kept = PythonString.string(text.unicodeScalars.prefix(length - endLength))
        if !values[1].isTruthy {
            kept = try PythonString.rsplit(kept, separator: " ", maxSplit: 1)[0]
        }
        if case .markup = value { return .markup(kept + PythonString.htmlEscape(end)) }
        return .string(kept + end)
    }

    private func toJSON(_ value: JinjaValue, _ arguments: CallArguments) throws -> String {
        let values = try arguments.bind("tojson", [("ensure_ascii", .bool(false)), ("indent", JinjaValue.none),
                                                   ("separators", JinjaValue.none), ("sort_keys", .bool(false))])
        var encoder = PythonJSON()
        encoder.ensureASCII = values[0].isTruthy
        encoder.sortKeys = values[3].isTruthy
        switch values[1] {
        case .none: break
        case .string(let text), .markup(let text): encoder.indent = text
        case .int, .bool: encoder.indent = String(repeating: " ", count: max(try Self.intArgument(values[1]), 0))
        default: throw JinjaError.type("can't multiply sequence by non-int of type '\(values[1].typeName)'")
        }
        if encoder.indent != nil { encoder.itemSeparator = "," }
        switch values[2] {
        case .none: break
        case .list(let items) where items.count == 2, .tuple(let items) where items.count == 2:
            guard let item = items[0].stringValue, let key = items[1].stringValue else {
                throw JinjaError.type("separators must be strings")
            }
            (encoder.itemSeparator, encoder.keySeparator) = (item, key)
        default:
            throw JinjaError.type("separators must be a (item_separator, key_separator) pair")
        }
        return try encoder.dumps(value)
    }
}
