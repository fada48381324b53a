/// Evaluated call arguments.
struct CallArguments {
    var positional: [JinjaValue] = []
    var keyword: [(name: String, value: JinjaValue)] = []

    /// Binds the arguments to a Python signature (`nil` default = required), with Python's errors.
    func bind(_ function: String, _ parameters: [(String, JinjaValue?)]) throws -> [JinjaValue] {
        guard positional.count <= parameters.count else {
            throw JinjaError.type("\(function)() takes at most \(parameters.count) argument(s) "
                                  + "(\(positional.count) given)")
        }
        var values: [JinjaValue?] = positional + Array(repeating: nil, count: parameters.count - positional.count)
        for (name, value) in keyword {
            guard let index = parameters.firstIndex(where: { $0.0 == name }) else {
                throw JinjaError.type("\(function)() got an unexpected keyword argument '\(name)'")
            }
            guard values[index] == nil else {
                throw JinjaError.type("\(function)() got multiple values for argument '\(name)'")
            }
            values[index] = value
        }
        return try parameters.indices.map { index in
            if let value = values[index] ?? parameters[index].1 { return value }
            throw JinjaError.type("\(function)() missing required argument: '\(parameters[index].0)'")
        }
    }
}

extension Renderer {
    /// Evaluates an expression; a failure without a line number gets this expression's line.
    func evaluate(_ expression: Expression, in scope: Scope) throws -> JinjaValue {
        do {
            return try evaluateKind(expression, in: scope)
        } catch let error as JinjaError where error.line == nil {
            var located = error
            located.line = expression.line
            throw located
        }
    }

    private func defined(_ expression: Expression, in scope: Scope) throws -> JinjaValue {
        let value = try evaluate(expression, in: scope)
        if value.isUndefined { throw JinjaError.undefined("'\(describe(expression))'") }
        return value
    }

    private func evaluateKind(_ expression: Expression, in scope: Scope) throws -> JinjaValue {
        switch expression.kind {
        case .literal(let value):
            return value
        case .name(let name):
            return scope.lookup(name) ?? .undefined
        case .list(let items):
            return .list(try items.map { try evaluate($0, in: scope) })
        case .tuple(let items):
            return .tuple(try items.map { try evaluate($0, in: scope) })
        case .dict(let pairs):
            var dict = JinjaDict()
            for pair in pairs {
                let key = try evaluate(pair.key, in: scope)
                try dict.set(try evaluate(pair.value, in: scope), for: key)
            }
            return .dict(dict)
        case .attribute(let base, let name):
            return try attribute(of: try defined(base, in: scope), name)
        case .item(let base, let key):
            let object = try defined(base, in: scope)
            if case .slice(let start, let stop, let step) = key.kind {
                return try slice(object, [start, stop, step].map { try $0.map { try evaluate($0, in: scope) } })
            }
            return try item(of: object, try evaluate(key, in: scope))
        case .slice:
            throw JinjaError.syntax("a slice outside of a subscript", line: expression.line)
        case .call(let callee, let arguments):
            let function = try defined(callee, in: scope)
            return try call(function, try evaluateArguments(arguments, in: scope))
        case .filter(let input, let filter):
            return try applyFilter(filter, to: try evaluate(input, in: scope), in: scope)
        case .test(let subject, let name, let arguments):
            let value = try evaluate(subject, in: scope)
            return .bool(try applyTest(name, to: value, try evaluateArguments(arguments, in: scope)))
        case .not(let operand):
            return .bool(!(try evaluate(operand, in: scope).isTruthy))
        case .negate(let operand):
            switch try defined(operand, in: scope) {
            case .int(let number):
                guard number != .min else { throw JinjaError.unsupported("integers beyond 64 bits") }
                return .int(-number)
            case .bool(let flag): return .int(flag ? -1 : 0)
            case .double(let number): return .double(-number)
            case let value: throw JinjaError.type("bad operand type for unary -: '\(value.typeName)'")
            }
        case .plus(let operand):
            switch try defined(operand, in: scope) {
            case .int(let number): return .int(number)
            case .bool(let flag): return .int(flag ? 1 : 0)
            case .double(let number): return .double(number)
            case let value: throw JinjaError.type("bad operand type for unary +: '\(value.typeName)'")
            }
        case .binary(let op, let lhs, let rhs):
            let left = try defined(lhs, in: scope)
            // `str % Undefined` is formatted by str itself (Undefined passes for a mapping), so it is no error.
            if op == .modulo, left.stringValue != nil {
                return try Operators.binary(op, left, try evaluate(rhs, in: scope))
            }
            return try Operators.binary(op, left, try defined(rhs, in: scope))
        case .and(let lhs, let rhs):
            let left = try evaluate(lhs, in: scope)
            return left.isTruthy ? try evaluate(rhs, in: scope) : left
        case .or(let lhs, let rhs):
            let left = try evaluate(lhs, in: scope)
            return left.isTruthy ? left : try evaluate(rhs, in: scope)
        case .compare(let first, let operations):
            var leftExpression = first
            var left = try evaluate(first, in: scope)
            for (op, rightExpression) in operations {
                let right = try evaluate(rightExpression, in: scope)
                let holds: Bool
                switch op {
                case .equal: holds = Operators.equal(left, right)
                case .notEqual: holds = !Operators.equal(left, right)
                case .contains: holds = try Operators.contains(right, left)
                case .notContains: holds = !(try Operators.contains(right, left))
                default:
                    for (value, source) in [(left, leftExpression), (right, rightExpression)] where value.isUndefined {
                        throw JinjaError.undefined("'\(describe(source))'")
                    }
                    holds = try Operators.order(op, left, right)
                }
                guard holds else { return .bool(false) }
                (left, leftExpression) = (right, rightExpression)
            }
            return .bool(true)
        case .concat(let operands):
            return .string(try operands.map { try Python.str(try evaluate($0, in: scope)) }.joined())
        case .conditional(let test, let then, let otherwise):
            if try evaluate(test, in: scope).isTruthy { return try evaluate(then, in: scope) }
            return try otherwise.map { try evaluate($0, in: scope) } ?? .undefined
        }
    }

    func evaluateArguments(_ arguments: Arguments, in scope: Scope) throws -> CallArguments {
        var result = CallArguments()
        result.positional = try arguments.positional.map { try evaluate($0, in: scope) }
        if let spread = arguments.spreadPositional { result.positional += try iterate(try evaluate(spread, in: scope)) }
        result.keyword = try arguments.keyword.map { ($0.name, try evaluate($0.value, in: scope)) }
        if let spread = arguments.spreadKeyword {
            guard case .dict(let dict) = try evaluate(spread, in: scope) else {
                throw JinjaError.type("argument after ** must be a mapping")
            }
            for entry in dict.entries {
                guard let name = entry.key.stringValue else { throw JinjaError.type("keywords must be strings") }
                guard !result.keyword.contains(where: { $0.name == name }) else {
                    throw JinjaError.type("got multiple values for keyword argument '\(name)'")
                }
                result.keyword.append((name, entry.value))
            }
        }
        return result
    }

    /// Source-like text of an expression, to name what was undefined.
    func describe(_ expression: Expression) -> String {
        switch expression.kind {
        case .name(let name): return name
        case .attribute(let base, let name): return describe(base) + "." + name
        case .item(let base, let key):
            if case .literal(let value) = key.kind, let text = try? Python.repr(value) {
                return describe(base) + "[" + text + "]"
            }
            return describe(base) + "[...]"
        case .call(let callee, _): return describe(callee) + "()"
        case .filter(let input, let filter): return describe(input) + "|" + filter.name
        default: return "value"
        }
    }

    func call(_ function: JinjaValue, _ arguments: CallArguments) throws -> JinjaValue {
        switch function {
        case .macro(let macro): return try callMacro(macro, arguments)
        case .function(let function):
            switch function.kind {
            case .global(let name): return try callGlobal(name, arguments)
            case .method(let receiver, let name): return try callMethod(receiver, name, arguments)
            }
        default:
            throw JinjaError.type("'\(function.typeName)' object is not callable")
        }
    }

    /// jinja2's sandboxed `getattr`: a Python attribute (a method) first, then the item of that name.
    func attribute(of object: JinjaValue, _ name: String) throws -> JinjaValue {
        switch object {
        case .undefined:
            throw JinjaError(.undefined, "cannot read '\(name)' of an undefined value")
        case .dict(let dict):
            if let method = try method(of: object, name) { return method }
            return dict[name] ?? .undefined
        case .namespace(let namespace):
            return name.hasPrefix("_") ? .undefined : namespace[name] ?? .undefined
        case .loop(let loop):
            return loopAttribute(loop, name)
        case .macro(let macro):
            switch name {
            case "name": return .string(macro.definition.name)
            case "arguments": return .tuple(macro.definition.parameters.map { .string($0.name) })
            default: return .undefined
            }
        default:
            return try method(of: object, name) ?? .undefined
        }
    }

    /// jinja2's sandboxed `getitem`: the item first, then (for string keys) the attribute of that name.
    func item(of object: JinjaValue, _ key: JinjaValue) throws -> JinjaValue {
        switch object {
        case .undefined:
            throw JinjaError(.undefined, "cannot read [\((try? Python.repr(key)) ?? "...")] of an undefined value")
        case .dict(let dict):
            // Python's KeyError and TypeError (unhashable key) both fall through to undefined here.
            if let found = (try? dict.value(for: key)) ?? nil { return found }
        case .list(let items), .tuple(let items):
            if let index = Self.integer(key) { return Self.element(items, index) ?? .undefined }
        case .view(let view):
            // A range can be indexed; a dict view cannot (jinja2 turns Python's TypeError into undefined).
            if case .range = view.kind, let index = Self.integer(key) {
                return Self.element(view.items, index) ?? .undefined
            }
        case .string(let text), .markup(let text):
            if let index = Self.integer(key) {
                guard let scalar = Self.element(Array(text.unicodeScalars), index) else { return .undefined }
                if case .markup = object { return .markup(String(scalar)) }
                return .string(String(scalar))
            }
        default:
            break
        }
        guard let name = key.stringValue else { return .undefined }
        return try attribute(of: object, name)
    }

    private static func integer(_ value: JinjaValue) -> Int? {
        switch value {
        case .int(let number): number
        case .bool(let flag): flag ? 1 : 0
        default: nil
        }
    }

    private static func element<T>(_ items: [T], _ index: Int) -> T? {
        let position = index < 0 ? index + items.count : index
        return items.indices.contains(position) ? items[position] : nil
    }

    /// `object[start:stop:step]` with Python's index clamping. jinja2 compiles slices to plain Python
    /// subscripts (not its forgiving `getitem`), so a bad bound or an unsliceable object is an error.
    private func slice(_ object: JinjaValue, _ bounds: [JinjaValue?]) throws -> JinjaValue {
        var numbers: [Int?] = []
        for bound in bounds {
            switch bound {
            case nil, .none?: numbers.append(nil)
            case let value?:
                guard let number = Self.integer(value) else {
                    throw JinjaError.type("slice indices must be integers or None or have an __index__ method")
                }
                numbers.append(number)
            }
        }
        let step = numbers[2] ?? 1
        guard step != 0 else { throw JinjaError.type("ValueError: slice step cannot be zero") }
        func indices(_ count: Int) -> [Int] {
            func adjust(_ bound: Int?, _ fallback: Int) -> Int {
                guard var value = bound else { return fallback }
                if value < 0 {
                    value += count
                    if value < 0 { value = step < 0 ? -1 : 0 }
                } else if value >= count {
                    value = step < 0 ? count - 1 : count
                }
                return value
            }
            let start = adjust(numbers[0], step < 0 ? count - 1 : 0)
            let stop = adjust(numbers[1], step < 0 ? -1 : count)
            return Array(stride(from: start, to: stop, by: step))
        }
        switch object {
        case .list(let items): return .list(indices(items.count).map { items[$0] })
        case .tuple(let items): return .tuple(indices(items.count).map { items[$0] })
        case .view(let view):
            if case .range = view.kind { throw JinjaError.unsupported("slicing a range") }
            throw JinjaError.type("'\(object.typeName)' object is not subscriptable")
        case .string(let text), .markup(let text):
            let scalars = Array(text.unicodeScalars)
            let result = PythonString.string(indices(scalars.count).map { scalars[$0] })
            if case .markup = object { return .markup(result) }
            return .string(result)
        default:
            throw JinjaError.type("'\(object.typeName)' object is not subscriptable")
        }
    }

    private func loopAttribute(_ loop: JinjaLoop, _ name: String) -> JinjaValue {
        switch name {
        case "index": .int(loop.index0 + 1)
        case "index0": .int(loop.index0)
        case "revindex": .int(loop.length - loop.index0)
        case "revindex0": .int(loop.length - loop.index0 - 1)
        case "first": .bool(loop.index0 == 0)
        case "last": .bool(loop.index0 == loop.length - 1)
        case "length": .int(loop.length)
        case "depth": .int(1)
        case "depth0": .int(0)
        case "previtem": loop.previous ?? .undefined
        case "nextitem": loop.next ?? .undefined
        case "cycle", "changed": .function(JinjaFunction(kind: .method(.loop(loop), name)))
        default: .undefined
        }
    }
}
