/// An expression with the template line it starts on.
struct Expression: Sendable {
    let kind: ExpressionKind
    let line: Int
}

indirect enum ExpressionKind: Sendable {
    case literal(JinjaValue)
    case name(String)
    case list([Expression])
    case tuple([Expression])
    case dict([(key: Expression, value: Expression)])
    /// `object.name`: attribute first, then item (jinja2's `getattr`).
    case attribute(Expression, String)
    /// `object[key]`: item first, then attribute (jinja2's `getitem`).
    case item(Expression, Expression)
    case slice(start: Expression?, stop: Expression?, step: Expression?)
    case call(Expression, Arguments)
    case filter(Expression, FilterCall)
    case test(Expression, name: String, Arguments)
    case not(Expression)
    case negate(Expression)
    case plus(Expression)
    case binary(BinaryOperator, Expression, Expression)
    case and(Expression, Expression)
    case or(Expression, Expression)
    /// A comparison chain: `a < b <= c` is `a < b and b <= c`, as in Python.
    case compare(Expression, [(CompareOperator, Expression)])
    /// `a ~ b ~ c`: the operands' `str()` joined.
    case concat([Expression])
    case conditional(test: Expression, then: Expression, otherwise: Expression?)
}

enum BinaryOperator: String, Sendable {
    case add = "+", subtract = "-", multiply = "*", divide = "/", floorDivide = "//", modulo = "%", power = "**"
}

enum CompareOperator: String, Sendable {
    case equal = "==", notEqual = "!=", less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
    case contains = "in", notContains = "not in"
}

/// Call arguments, including `*args` and `**kwargs` spreads.
struct Arguments: Sendable {
    var positional: [Expression] = []
    var keyword: [(name: String, value: Expression)] = []
    var spreadPositional: Expression?
    var spreadKeyword: Expression?
}

struct FilterCall: Sendable {
    let name: String
    let arguments: Arguments
    let line: Int
}

/// What `{% set %}` and `{% for %}` assign to.
indirect enum AssignTarget: Sendable {
    case name(String)
    case tuple([AssignTarget])
    /// `ns.attribute`, only allowed on namespaces.
    case namespaceAttribute(String, String)
}

struct Statement: Sendable {
    let kind: StatementKind
    let line: Int
}

indirect enum StatementKind: Sendable {
    case text(String)
    case output(Expression)
    case ifBlock(branches: [(test: Expression, body: [Statement])], otherwise: [Statement])
    case forLoop(ForLoop)
    case set(AssignTarget, Expression)
    /// `{% set x | filters %}body{% endset %}`.
    case setBlock(AssignTarget, filters: [FilterCall], body: [Statement])
    case macro(MacroDefinition)
    case filterBlock([FilterCall], body: [Statement])
    case with(assignments: [(AssignTarget, Expression)], body: [Statement])
    /// transformers' `{% generation %}` (AssistantTracker): renders its body in a new scope.
    case generation([Statement])
    case breakLoop
    case continueLoop
}

struct ForLoop: Sendable {
    let target: AssignTarget
    let iterable: Expression
    let condition: Expression?
    let body: [Statement]
    let otherwise: [Statement]
    /// Whether the body mentions `loop` (jinja2 then wraps the iterable in a LoopContext that may read ahead).
    let usesLoopVariable: Bool
}

struct MacroDefinition: Sendable {
    let name: String
    let parameters: [(name: String, defaultValue: Expression?)]
    let body: [Statement]
    /// jinja2 collects extra positional/keyword arguments only when the body mentions `varargs`/`kwargs`.
    let takesVarargs: Bool
    let takesKwargs: Bool
}
