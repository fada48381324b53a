/// jinja2's tests (`x is defined`, `x is string`, `x is divisibleby 3` ...), with Python's notion of each type:
/// `true is number` holds, `true is integer` does not, and an undefined value counts as iterable and as a sequence.
extension Renderer {
    static let testNames: Set<String> = [
        "odd", "even", "divisibleby", "defined", "undefined", "filter", "test", "none", "boolean", "false", "true",
        "integer", "float", "lower", "upper", "string", "mapping", "number", "sequence", "iterable", "callable",
        "sameas", "escaped", "in", "==", "eq", "equalto", "!=", "ne", ">", "gt", "greaterthan", ">=", "ge", "<",
        "lt", "lessthan", "<=", "le",
    ]

    func applyTest(_ name: String, to value: JinjaValue, _ arguments: CallArguments) throws -> Bool {
        func argument() throws -> JinjaValue { try arguments.bind(name, [("other", nil)])[0] }
        func noArguments() throws { _ = try arguments.bind(name, []) }
        func compared(_ op: CompareOperator) throws -> Bool {
            let other = try argument()
            if value.isUndefined || other.isUndefined { throw JinjaError.undefined("a compared value") }
            return try Operators.order(op, value, other)
        }
        switch name {
        case "defined", "undefined":
            try noArguments()
            return value.isUndefined == (name == "undefined")
        case "none":
            try noArguments()
            if case .none = value { return true }
            return false
        case "boolean", "true", "false":
            try noArguments()
            guard case .bool(let flag) = value else { return false }
            return name == "boolean" || flag == (name == "true")
        case "integer":
            try noArguments()
            if case .int = value { return true }
            return false
        case "float":
            try noArguments()
            if case .double = value { return true }
            return false
        case "number":
            try noArguments()
            switch value {
            case .int, .double, .bool: return true
            default: return false
            }
        case "string":
            try noArguments()
            return value.stringValue != nil
        case "escaped":
            try noArguments()
            if case .markup = value { return true }
            return false
        case "mapping":
            try noArguments()
            if case .dict = value { return true }
            return false
        case "iterable":
            try noArguments()
            switch value {
            case .string, .markup, .list, .tuple, .dict, .undefined, .iterator, .loop, .view: return true
            default: return false
            }
        case "sequence":
            try noArguments()
            switch value {
            case .string, .markup, .list, .tuple, .dict, .undefined: return true
            case .view(let view):
                if case .range = view.kind { return true }
                return false
            default: return false
            }
        case "callable":
            try noArguments()
            switch value {
            case .macro, .function, .undefined: return true
            default: return false
            }
        case "lower", "upper":
            try noArguments()
            return try callMethod(.string(try Python.str(value)), "is" + name, CallArguments()).isTruthy
        case "odd", "even", "divisibleby":
            let divisor = name == "divisibleby" ? try argument() : .int(2)
            if value.isUndefined || divisor.isUndefined { throw JinjaError.undefined("a tested value") }
            let remainder = try Operators.binary(.modulo, value, divisor)
            return Operators.equal(remainder, .int(name == "odd" ? 1 : 0))
        case "in":
            return try Operators.contains(try argument(), value)
        case "==", "eq", "equalto": return Operators.equal(value, try argument())
        case "!=", "ne": return !Operators.equal(value, try argument())
        case ">", "gt", "greaterthan": return try compared(.greater)
        case ">=", "ge": return try compared(.greaterOrEqual)
        case "<", "lt", "lessthan": return try compared(.less)
        case "<=", "le": return try compared(.lessOrEqual)
        case "sameas":
            // Python identity: None and booleans are singletons, small ints are cached.
            switch (value, try argument()) {
            case (.none, .none): return true
            case (.bool(let a), .bool(let b)): return a == b
            case (.int(let a), .int(let b)): return a == b && (-5...256).contains(a)
            case (.namespace(let a), .namespace(let b)): return a === b
            default: return false
            }
        case "filter", "test":
            let names = name == "filter" ? Self.filterNames : Self.testNames
            return value.stringValue.map(names.contains) ?? false
        default:
            throw JinjaError(.syntax, "no test named \(Python.stringRepr(name))")
        }
    }
}
