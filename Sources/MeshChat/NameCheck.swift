/// jinja2's compile-time check that every filter and test exists. jinja2 defers the check to runtime only for
/// names used directly inside `{% if %}` blocks and inline `if` expressions (its "soft" frames); anywhere else,
/// even in a branch that never runs, an unknown name makes the whole template fail to compile.
enum NameCheck {
    static func check(_ statements: [Statement], soft: Bool = false) throws {
        for statement in statements { try check(statement, soft: soft) }
    }

    private static func check(_ statement: Statement, soft: Bool) throws {
        switch statement.kind {
        case .text, .breakLoop, .continueLoop:
            break
        case .output(let expression), .set(_, let expression):
            try check(expression, soft: soft)
        case .ifBlock(let branches, let otherwise):
            for branch in branches {
                try check(branch.test, soft: true)
                try check(branch.body, soft: true)
            }
            try check(otherwise, soft: true)
        case .forLoop(let loop):
            // The iterable is evaluated in the enclosing frame; the rest gets a new (not soft) frame.
            try check(loop.iterable, soft: soft)
            if let condition = loop.condition { try check(condition, soft: false) }
            try check(loop.body)
            try check(loop.otherwise)
        case .setBlock(_, let filters, let body), .filterBlock(let filters, let body):
            try check(body)
            for filter in filters { try check(filter) }
        case .macro(let definition):
            for parameter in definition.parameters {
                if let value = parameter.defaultValue { try check(value, soft: false) }
            }
            try check(definition.body)
        case .with(let assignments, let body):
            for (_, value) in assignments { try check(value, soft: soft) }
            try check(body)
        case .generation(let body):
            try check(body)
        }
    }

    private static func check(_ filter: FilterCall) throws {
        guard Renderer.filterNames.contains(filter.name) else {
            throw JinjaError.syntax("no filter named \(Python.stringRepr(filter.name))", line: filter.line)
        }
        try check(filter.arguments, soft: false)
    }

    private static func check(_ arguments: Arguments, soft: Bool) throws {
        for value in arguments.positional + arguments.keyword.map(\.value) { try check(value, soft: soft) }
        for spread in [arguments.spreadPositional, arguments.spreadKeyword].compactMap({ $0 }) {
            try check(spread, soft: soft)
        }
    }

    private static func check(_ expression: Expression, soft: Bool) throws {
        switch expression.kind {
        case .literal, .name:
            break
        case .list(let items), .tuple(let items), .concat(let items):
            for item in items { try check(item, soft: soft) }
        case .dict(let pairs):
            for pair in pairs {
                try check(pair.key, soft: soft)
                try check(pair.value, soft: soft)
            }
        case .attribute(let base, _), .not(let base), .negate(let base), .plus(let base):
            try check(base, soft: soft)
        case .item(let base, let key):
            try check(base, soft: soft)
            try check(key, soft: soft)
        case .slice(let start, let stop, let step):
            for part in [start, stop, step].compactMap({ $0 }) { try check(part, soft: soft) }
        case .call(let callee, let arguments):
            try check(callee, soft: soft)
            try check(arguments, soft: soft)
        case .filter(let input, let filter):
            try check(input, soft: soft)
            if !soft, !Renderer.filterNames.contains(filter.name) {
                throw JinjaError.syntax("no filter named \(Python.stringRepr(filter.name))", line: filter.line)
            }
            try check(filter.arguments, soft: soft)
        case .test(let subject, let name, let arguments):
            try check(subject, soft: soft)
            if !soft, !Renderer.testNames.contains(name) {
                throw JinjaError.syntax("no test named \(Python.stringRepr(name))", line: expression.line)
            }
            try check(arguments, soft: soft)
        case .binary(_, let lhs, let rhs), .and(let lhs, let rhs), .or(let lhs, let rhs):
            try check(lhs, soft: soft)
            try check(rhs, soft: soft)
        case .compare(let first, let operations):
            try check(first, soft: soft)
            for (_, operand) in operations { try check(operand, soft: soft) }
        case .conditional(let test, let then, let otherwise):
            for part in [test, then, otherwise].compactMap({ $0 }) { try check(part, soft: true) }
        }
    }
}
