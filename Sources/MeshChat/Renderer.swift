import Foundation

/// A variable scope. jinja2 gives each loop iteration, macro call, `{% with %}`, `{% set %}`/`{% filter %}` block
/// and `{% generation %}` body its own scope over the enclosing one; `{% if %}` has none, so a `set` inside an `if`
/// changes the enclosing scope, while a `set` inside a loop body is gone by the next iteration.
final class Scope {
    var variables: [String: JinjaValue] = [:]
    let parent: Scope?

    init(parent: Scope?, variables: [String: JinjaValue] = [:]) {
        self.parent = parent
        self.variables = variables
    }

    func lookup(_ name: String) -> JinjaValue? {
        var scope: Scope? = self
        while let current = scope {
            if let value = current.variables[name] { return value }
            scope = current.parent
        }
        return nil
    }
}

/// Runs a parsed template once. Not shared between threads: each render makes its own.
final class Renderer {
    enum Flow { case normal, breakLoop, continueLoop }

    /// The template context: render arguments and top-level `set`s, over the globals.
    let root: Scope
    let now: Date
    private var output = ""
    private var macroDepth = 0

    static let globalNames = ["range", "dict", "namespace", "raise_exception", "strftime_now", "lipsum", "cycler",
                              "joiner"]

    init(context: [String: JinjaValue], now: Date) {
        let globals = Scope(parent: nil)
        for name in Self.globalNames { globals.variables[name] = .function(JinjaFunction(kind: .global(name))) }
        root = Scope(parent: globals, variables: context)
        self.now = now
    }

    func render(_ body: [Statement]) throws -> String {
        _ = try execute(body, in: root)
        return output
    }

    /// Runs `body` with output collected separately and returns what it wrote.
    func capture(_ body: () throws -> Void) throws -> String {
        let saved = output
        output = ""
        defer { output = saved }
        try body()
        return output
    }

    func execute(_ statements: [Statement], in scope: Scope) throws -> Flow {
        for statement in statements {
            let flow: Flow
            do {
                flow = try run(statement, in: scope)
            } catch let error as JinjaError where error.line == nil {
                var located = error
                located.line = statement.line
                throw located
            }
            if flow != .normal { return flow }
        }
        return .normal
    }

    private func run(_ statement: Statement, in scope: Scope) throws -> Flow {
        switch statement.kind {
        case .text(let text):
            output += text
        case .output(let expression):
            output += try Python.str(evaluate(expression, in: scope))
        case .ifBlock(let branches, let otherwise):
            for branch in branches {
                if try evaluate(branch.test, in: scope).isTruthy { return try execute(branch.body, in: scope) }
            }
            return try execute(otherwise, in: scope)
        case .forLoop(let loop):
            return try runLoop(loop, in: scope)
        case .set(let target, let expression):
            try assign(target, try evaluate(expression, in: scope), in: scope)
        case .setBlock(let target, let filters, let body):
            // A break or continue inside the block leaves the loop at once: nothing is assigned.
            var flow = Flow.normal
            var value = JinjaValue.string(try capture { flow = try execute(body, in: Scope(parent: scope)) })
            guard flow == .normal else { return flow }
            for filter in filters { value = try applyFilter(filter, to: value, in: scope) }
            try assign(target, value, in: scope)
        case .macro(let definition):
            scope.variables[definition.name] = .macro(JinjaMacro(definition: definition, captured: closure(of: scope)))
        case .filterBlock(let filters, let body):
            // As in jinja2, a break or continue drops what the block had written so far.
            var flow = Flow.normal
            var value = JinjaValue.string(try capture { flow = try execute(body, in: Scope(parent: scope)) })
            guard flow == .normal else { return flow }
            for filter in filters { value = try applyFilter(filter, to: value, in: scope) }
            output += try Python.str(value)
        case .with(let assignments, let body):
            let inner = Scope(parent: scope)
            for (target, expression) in assignments {
                try assign(target, try evaluate(expression, in: scope), in: inner)
            }
            return try execute(body, in: inner)
        case .generation(let body):
            return try execute(body, in: Scope(parent: scope))
        case .breakLoop:
            return .breakLoop
        case .continueLoop:
            return .continueLoop
        }
        return .normal
    }

    private func runLoop(_ loop: ForLoop, in scope: Scope) throws -> Flow {
        let iterable = try evaluate(loop.iterable, in: scope)
        var items = try iterate(iterable)
        if let condition = loop.condition {
            items = try items.filter { item in
                let probe = Scope(parent: scope)
                try assign(loop.target, item, in: probe)
                return try evaluate(condition, in: probe).isTruthy
            }
        }
        // jinja2 marks the loop as "iterated" only when a body run ends normally, so if every iteration ends in
        // break or continue, the else block runs too.
        var completedAnIteration = false
        for (index, item) in items.enumerated() {
            let iteration = Scope(parent: scope)
            iteration.variables["loop"] = .loop(JinjaLoop(
                index0: index, length: items.count,
                previous: index > 0 ? items[index - 1] : nil,
                next: index + 1 < items.count ? items[index + 1] : nil))
            try assign(loop.target, item, in: iteration)
            let flow = try execute(loop.body, in: iteration)
            if flow == .normal { completedAnIteration = true }
            if flow == .breakLoop {
                // A generator keeps what the loop did not reach (jinja2 iterates it lazily).
                if case .iterator(let iterator) = iterable {
                    iterator.loopStopped(leaving: Array(items[(index + 1)...]),
                                         mayHavePeeked: loop.usesLoopVariable || loop.condition != nil)
                }
                break
            }
        }
        if !completedAnIteration { return try execute(loop.otherwise, in: Scope(parent: scope)) }
        return .normal
    }

    /// The values a Python `for` loop over `value` sees.
    func iterate(_ value: JinjaValue) throws -> [JinjaValue] {
        switch value {
        case .list(let items), .tuple(let items): return items
        case .view(let view): return view.items
        case .dict(let dict): return dict.entries.map(\.key)
        case .string(let text), .markup(let text): return text.unicodeScalars.map { .string(String($0)) }
        case .undefined: return []
        case .iterator(let iterator): return try iterator.drain()
        default: throw JinjaError.type("'\(value.typeName)' object is not iterable")
        }
    }

    func assign(_ target: AssignTarget, _ value: JinjaValue, in scope: Scope) throws {
        switch target {
        case .name(let name):
            scope.variables[name] = value
        case .tuple(let targets):
            let items = try iterate(value)
            guard items.count == targets.count else {
                throw JinjaError.type(items.count < targets.count
                    ? "ValueError: not enough values to unpack (expected \(targets.count), got \(items.count))"
                    : "ValueError: too many values to unpack (expected \(targets.count))")
            }
            for (target, item) in zip(targets, items) { try assign(target, item, in: scope) }
        case .namespaceAttribute(let name, let attribute):
            guard case .namespace(let namespace)? = scope.lookup(name) else {
                throw JinjaError.type("cannot assign attribute on non-namespace object")
            }
            try Self.checkNamespaceName(attribute)
            namespace[attribute] = value
        }
    }

    /// transformers' TemplateNamespace refuses underscore-prefixed attributes.
    static func checkNamespaceName(_ name: String) throws {
        if name.hasPrefix("_") {
            throw JinjaError.security("Chat templates cannot store underscore-prefixed attributes on a namespace, "
                                      + "but got \(Python.stringRepr(name))")
        }
    }

    /// The local variables a macro defined in `scope` closes over (everything below the template context).
    private func closure(of scope: Scope) -> [String: JinjaValue] {
        var chain: [Scope] = []
        var current: Scope? = scope
        while let level = current, level !== root {
            chain.append(level)
            current = level.parent
        }
        var captured: [String: JinjaValue] = [:]
        for level in chain.reversed() { captured.merge(level.variables) { _, inner in inner } }
        return captured
    }

    /// Calls a macro the way jinja2's `Macro.__call__` binds arguments: positional, then keywords, then defaults
    /// evaluated in the macro's scope; extras go to `varargs`/`kwargs` only if the body uses them.
    func callMacro(_ macro: JinjaMacro, _ arguments: CallArguments) throws -> JinjaValue {
        let definition = macro.definition
        macroDepth += 1
        defer { macroDepth -= 1 }
        guard macroDepth <= 100 else { throw JinjaError.unsupported("macro calls nested deeper than 100") }
        let scope = Scope(parent: root, variables: macro.captured)
        var keywords = arguments.keyword
        var missing: [(name: String, defaultValue: Expression?)] = []
        for (index, parameter) in definition.parameters.enumerated() {
            if index < arguments.positional.count {
                scope.variables[parameter.name] = arguments.positional[index]
            } else if let found = keywords.firstIndex(where: { $0.name == parameter.name }) {
                scope.variables[parameter.name] = keywords.remove(at: found).value
            } else {
                missing.append(parameter)
            }
        }
        if definition.takesKwargs {
            scope.variables["kwargs"] = .dict(JinjaDict(keywords.map { ($0.name, $0.value) }))
        } else if let extra = keywords.first {
            throw JinjaError.type("macro \(Python.stringRepr(definition.name)) takes no keyword argument "
                                  + Python.stringRepr(extra.name))
        }
        let extras = Array(arguments.positional.dropFirst(definition.parameters.count))
        if definition.takesVarargs {
            scope.variables["varargs"] = .tuple(extras)
        } else if !extras.isEmpty {
            throw JinjaError.type("macro \(Python.stringRepr(definition.name)) takes not more than "
                                  + "\(definition.parameters.count) argument(s)")
        }
        for parameter in missing {
            let value = try parameter.defaultValue.map { try evaluate($0, in: scope) }
            scope.variables[parameter.name] = value ?? .undefined
        }
        return .string(try capture { _ = try execute(definition.body, in: scope) })
    }
}
