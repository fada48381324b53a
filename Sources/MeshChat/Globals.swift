/// The functions every chat template can call: jinja2's globals (`range`, `dict`, `namespace`) and the ones
/// transformers adds (`raise_exception`, `strftime_now`).
extension Renderer {
    /// jinja2's sandbox refuses ranges longer than this.
    private static let maximumRange = 100_000

    func callGlobal(_ name: String, _ arguments: CallArguments) throws -> JinjaValue {
        switch name {
        case "raise_exception":
            let message = try arguments.bind(name, [("message", nil)])[0]
            throw JinjaError(.raised, try Python.str(message))
        case "strftime_now":
            let format = try arguments.bind(name, [("format", nil)])[0]
            guard let text = format.stringValue else {
                throw JinjaError.type("strftime() argument 1 must be str, not \(format.typeName)")
            }
            return .string(try Strftime.format(now, text))
        case "range":
            return try range(arguments)
        case "dict":
            return .dict(try dictionary(arguments))
        case "namespace":
            let attributes = try dictionary(arguments)
            for entry in attributes.entries {
                if let name = entry.key.stringValue { try Self.checkNamespaceName(name) }
            }
            return .namespace(JinjaNamespace(attributes))
        default:
            throw JinjaError.unsupported("the global function '\(name)'")
        }
    }

    private func range(_ arguments: CallArguments) throws -> JinjaValue {
        guard arguments.keyword.isEmpty else { throw JinjaError.type("range() takes no keyword arguments") }
        let numbers = try arguments.positional.map(Self.intArgument)
        let (start, stop, step): (Int, Int, Int)
        switch numbers.count {
        case 1: (start, stop, step) = (0, numbers[0], 1)
        case 2: (start, stop, step) = (numbers[0], numbers[1], 1)
        case 3: (start, stop, step) = (numbers[0], numbers[1], numbers[2])
        default: throw JinjaError.type("range expected at most 3 arguments, got \(numbers.count)")
        }
        guard step != 0 else { throw JinjaError.type("ValueError: range() arg 3 must not be zero") }
        let values = Array(stride(from: start, to: stop, by: step))
        guard values.count <= Self.maximumRange else {
            throw JinjaError.security("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).")
        }
        let kind = JinjaView.Kind.range(start: start, stop: stop, step: step)
        return .view(JinjaView(kind: kind, items: values.map { .int($0) }))
    }

    /// Python's `dict(mapping_or_pairs, **kwargs)`.
    private func dictionary(_ arguments: CallArguments) throws -> JinjaDict {
        guard arguments.positional.count <= 1 else {
            throw JinjaError.type("dict expected at most 1 argument, got \(arguments.positional.count)")
        }
        var result = JinjaDict()
        if let source = arguments.positional.first {
            if case .dict(let dict) = source {
                result = dict
            } else {
                for (offset, pair) in try iterate(source).enumerated() {
                    let parts = try iterate(pair)
                    guard parts.count == 2 else {
                        throw JinjaError.type("ValueError: dictionary update sequence element #\(offset) has length "
                                              + "\(parts.count); 2 is required")
                    }
                    try result.set(parts[1], for: parts[0])
                }
            }
        }
        for (name, value) in arguments.keyword { result[name] = value }
        return result
    }
}
