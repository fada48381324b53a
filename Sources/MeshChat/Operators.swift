import Foundation

/// Python's operators on template values: arithmetic, `==`, ordering and `in`. Operands are never undefined here;
/// the renderer reports those with the expression's name first.
enum Operators {
    /// A number as Python sees it (`bool` is an `int`).
    private enum Number {
        case int(Int)
        case double(Double)

        init?(_ value: JinjaValue) {
            switch value {
            case .int(let number): self = .int(number)
            case .bool(let flag): self = .int(flag ? 1 : 0)
            case .double(let number): self = .double(number)
            default: return nil
            }
        }

        var double: Double {
            switch self {
            case .int(let number): Double(number)
            case .double(let number): number
            }
        }
    }

    private static func operandError(_ symbol: String, _ lhs: JinjaValue, _ rhs: JinjaValue) -> JinjaError {
        .type("unsupported operand type(s) for \(symbol): '\(lhs.typeName)' and '\(rhs.typeName)'")
    }

    private static func checked(_ result: (partialValue: Int, overflow: Bool)) throws -> JinjaValue {
        guard !result.overflow else { throw JinjaError.unsupported("integers beyond 64 bits") }
        return .int(result.partialValue)
    }

    static func binary(_ op: BinaryOperator, _ lhs: JinjaValue, _ rhs: JinjaValue) throws -> JinjaValue {
        switch op {
        case .add: return try add(lhs, rhs)
        case .multiply: return try multiply(lhs, rhs)
        case .modulo:
            if let format = lhs.stringValue {
                let text = try PercentFormat.format(format, rhs)
                if case .markup = lhs { return .markup(text) }
                return .string(text)
            }
        default: break
        }
        guard let left = Number(lhs), let right = Number(rhs) else { throw operandError(op.rawValue, lhs, rhs) }
        switch (op, left, right) {
        case (.subtract, .int(let a), .int(let b)): return try checked(a.subtractingReportingOverflow(b))
        case (.subtract, _, _): return .double(left.double - right.double)
        case (.divide, _, _):
            guard right.double != 0 else { throw JinjaError.type("ZeroDivisionError: division by zero") }
            return .double(left.double / right.double)
        case (.floorDivide, .int(let a), .int(let b)):
            guard b != 0 else { throw JinjaError.type("ZeroDivisionError: integer division or modulo by zero") }
            let (quotient, remainder) = a.quotientAndRemainder(dividingBy: b)
            return .int(remainder != 0 && (remainder < 0) != (b < 0) ? quotient - 1 : quotient)
        case (.floorDivide, _, _):
            return .double(try floatDivMod(left.double, right.double).quotient)
        case (.modulo, .int(let a), .int(let b)):
            guard b != 0 else { throw JinjaError.type("ZeroDivisionError: integer division or modulo by zero") }
            let remainder = a % b
            return .int(remainder != 0 && (remainder < 0) != (b < 0) ? remainder + b : remainder)
        case (.modulo, _, _):
            return .double(try floatDivMod(left.double, right.double).remainder)
        case (.power, .int(let a), .int(let b)) where b >= 0:
            func times(_ x: Int, _ y: Int) throws -> Int {
                let product = x.multipliedReportingOverflow(by: y)
                guard !product.overflow else { throw JinjaError.unsupported("integers beyond 64 bits") }
                return product.partialValue
            }
            var (result, base, exponent) = (1, a, b)
            while exponent > 0 {
                if exponent & 1 == 1 { result = try times(result, base) }
                exponent >>= 1
                if exponent > 0 { base = try times(base, base) }
            }
            return .int(result)
        case (.power, _, _):
            let (base, exponent) = (left.double, right.double)
            if base == 0, exponent < 0 {
                throw JinjaError.type("ZeroDivisionError: 0.0 cannot be raised to a negative power")
            }
            if base < 0, exponent != exponent.rounded() {
                throw JinjaError.unsupported("a negative number to a fractional power (a complex number)")
            }
            return .double(pow(base, exponent))
        default:
            throw operandError(op.rawValue, lhs, rhs)
        }
    }

    /// Python's float `divmod`: the remainder takes the divisor's sign and the quotient is floored.
    private static func floatDivMod(_ a: Double, _ b: Double) throws -> (quotient: Double, remainder: Double) {
        guard b != 0 else { throw JinjaError.type("ZeroDivisionError: float divmod()") }
        var remainder = fmod(a, b)
        var quotient = (a - remainder) / b
        if remainder != 0 {
            if (b < 0) != (remainder < 0) {
                remainder += b
                quotient -= 1
            }
        } else {
            remainder = copysign(0, b)
        }
        var floored: Double
        if quotient != 0 {
            floored = quotient.rounded(.down)
            if quotient - floored > 0.5 { floored += 1 }
        } else {
            floored = copysign(0, a / b)
        }
        return (floored, remainder)
    }

    private static func add(_ lhs: JinjaValue, _ rhs: JinjaValue) throws -> JinjaValue {
        switch (lhs, rhs) {
        case (.markup(let a), _):
            guard let b = rhs.stringValue else { throw operandError("+", lhs, rhs) }
            if case .markup = rhs { return .markup(a + b) }
            return .markup(a + PythonString.htmlEscape(b))
        case (.string(let a), .markup(let b)): return .markup(PythonString.htmlEscape(a) + b)
        case (.string(let a), .string(let b)): return .string(a + b)
        case (.string, _):
            throw JinjaError.type("can only concatenate str (not \"\(rhs.typeName)\") to str")
        case (.list(let a), .list(let b)): return .list(a + b)
        case (.tuple(let a), .tuple(let b)): return .tuple(a + b)
        case (.list, _): throw JinjaError.type("can only concatenate list (not \"\(rhs.typeName)\") to list")
        default:
            guard let left = Number(lhs), let right = Number(rhs) else { throw operandError("+", lhs, rhs) }
            if case .int(let a) = left, case .int(let b) = right { return try checked(a.addingReportingOverflow(b)) }
            return .double(left.double + right.double)
        }
    }

    private static func multiply(_ lhs: JinjaValue, _ rhs: JinjaValue) throws -> JinjaValue {
        func repeated(_ sequence: JinjaValue, _ count: Int) -> JinjaValue? {
            let times = max(count, 0)
            switch sequence {
            case .string(let text): return .string(String(repeating: text, count: times))
            case .markup(let text): return .markup(String(repeating: text, count: times))
            case .list(let items): return .list(Array(repeatElement(items, count: times).joined()))
            case .tuple(let items): return .tuple(Array(repeatElement(items, count: times).joined()))
            default: return nil
            }
        }
        if case .int(let count)? = Number(rhs), let result = repeated(lhs, count) { return result }
        if case .int(let count)? = Number(lhs), let result = repeated(rhs, count) { return result }
        guard let left = Number(lhs), let right = Number(rhs) else { throw operandError("*", lhs, rhs) }
        if case .int(let a) = left, case .int(let b) = right {
            return try checked(a.multipliedReportingOverflow(by: b))
        }
        return .double(left.double * right.double)
    }

    /// Python `==`: numbers by value across int/float/bool, strings by code point, dicts regardless of order,
    /// lists never equal to tuples; jinja2's Undefined equals only another Undefined.
    static func equal(_ lhs: JinjaValue, _ rhs: JinjaValue) -> Bool {
        if let left = Number(lhs), let right = Number(rhs) {
            switch (left, right) {
            case (.int(let a), .int(let b)): return a == b
            case (.int(let a), .double(let b)), (.double(let b), .int(let a)):
                return Int(exactly: b) == a
            case (.double(let a), .double(let b)): return a == b
            }
        }
        switch (lhs, rhs) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.string(let a), .string(let b)), (.string(let a), .markup(let b)),
             (.markup(let a), .string(let b)), (.markup(let a), .markup(let b)):
            return PythonString.equal(a, b)
        case (.list(let a), .list(let b)), (.tuple(let a), .tuple(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { equal($0, $1) }
        case (.dict(let a), .dict(let b)):
            return a.count == b.count && a.entries.allSatisfy { entry in
                ((try? b.value(for: entry.key)) ?? nil).map { equal(entry.value, $0) } ?? false
            }
        case (.namespace(let a), .namespace(let b)): return a === b
        case (.view(let a), .view(let b)):
            // Ranges compare as sequences; key and item views as sets; value views never compare equal.
            switch (a.kind, b.kind) {
            case (.range, .range):
                return a.items.count == b.items.count && zip(a.items, b.items).allSatisfy { equal($0, $1) }
            case (.keys, .keys), (.items, .items):
                return a.items.count == b.items.count && a.items.allSatisfy { x in b.items.contains { equal(x, $0) } }
            default:
                return false
            }
        case (.iterator(let a), .iterator(let b)): return a === b
        case (.macro(let a), .macro(let b)): return a === b
        default: return false
        }
    }

    /// Python's rich comparison for `<`, `<=`, `>`, `>=`.
    static func order(_ op: CompareOperator, _ lhs: JinjaValue, _ rhs: JinjaValue) throws -> Bool {
        if let left = Number(lhs), let right = Number(rhs) {
            if case .int(let a) = left, case .int(let b) = right { return holds(op, a, b) }
            return holds(op, left.double, right.double)
        }
        switch (lhs, rhs) {
        case (.string(let a), .string(let b)), (.string(let a), .markup(let b)),
             (.markup(let a), .string(let b)), (.markup(let a), .markup(let b)):
            if PythonString.equal(a, b) { return op == .lessOrEqual || op == .greaterOrEqual }
            let less = PythonString.less(a, b)
            return op == .less || op == .lessOrEqual ? less : !less
        case (.list(let a), .list(let b)), (.tuple(let a), .tuple(let b)):
            for (x, y) in zip(a, b) where !equal(x, y) { return try order(op, x, y) }
            return holds(op, a.count, b.count)
        default:
            throw JinjaError.type("'\(op.rawValue)' not supported between instances of '\(lhs.typeName)' and "
                                  + "'\(rhs.typeName)'")
        }
    }

    private static func holds<T: Comparable>(_ op: CompareOperator, _ a: T, _ b: T) -> Bool {
        switch op {
        case .less: a < b
        case .lessOrEqual: a <= b
        case .greater: a > b
        case .greaterOrEqual: a >= b
        default: false
        }
    }

    /// Python `item in container`. Testing membership in a generator consumes it up to the match, as in Python.
    static func contains(_ container: JinjaValue, _ item: JinjaValue) throws -> Bool {
        switch container {
        case .string(let text), .markup(let text):
            guard let needle = item.stringValue else {
                throw JinjaError.type("'in <string>' requires string as left operand, not \(item.typeName)")
            }
            return PythonString.contains(text, needle)
        case .list(let items), .tuple(let items): return items.contains { equal($0, item) }
        case .view(let view): return view.items.contains { equal($0, item) }
        case .dict(let dict): return try dict.value(for: item) != nil
        case .undefined: return false
        case .iterator(let iterator):
            while let next = try iterator.next() {
                if equal(next, item) { return true }
            }
            return false
        default:
            throw JinjaError.type("argument of type '\(container.typeName)' is not iterable")
        }
    }
}
