import Foundation

/// A value a chat template sees or makes, with Python's semantics (templates are Python jinja2 code).
///
/// Callers pass the JSON-shaped cases, `none` through `dict`, usually parsed with ``init(json:)`` or written as
/// literals (`["role": "user", "content": "Hi"]` keeps its key order). The cases after `dict` are kinds that only a
/// running template creates; they are public only because a public enum cannot have internal cases.
public indirect enum JinjaValue: Sendable {
    /// jinja2's `Undefined`: a missing variable, key or attribute. Prints as "", is falsy, iterates as empty.
    case undefined
    /// Python `None` (JSON null).
    case none
    case bool(Bool)
    /// Python `int` (a JSON number without fraction or exponent).
    case int(Int)
    /// Python `float` (a JSON number with a fraction or exponent, even `1.0`).
    case double(Double)
    case string(String)
    case list([JinjaValue])
    /// A Python dict, in insertion order.
    case dict(JinjaDict)
    /// A Python tuple (`(a, b)`, `dict.items()` pairs): prints with parentheses and never equals a list.
    case tuple([JinjaValue])
    /// markupsafe's `Markup` (from `|safe`, `|escape`): prints as is, but `+` HTML-escapes a plain string operand.
    case markup(String)
    /// jinja2's `namespace()` object, shared by reference.
    case namespace(JinjaNamespace)
    /// A one-shot generator (`|select`, `|map`, `|reverse` ...): truthy even when empty, has no length, and is used
    /// up by iterating it, as in Python.
    case iterator(JinjaIterator)
    /// A `{% macro %}`.
    case macro(JinjaMacro)
    /// A global function such as `range`, or a bound method such as `"a b".split`.
    case function(JinjaFunction)
    /// The `loop` variable of a `{% for %}`.
    case loop(JinjaLoop)
    /// `dict.keys()`/`.values()`/`.items()` or `range(...)`: iterable any number of times, with a length, but
    /// printed and indexed the way Python does those objects (`dict_items([...])`, `range(0, 3)`).
    case view(JinjaView)
}

/// jinja2's `namespace()`: the one mutable object a template can make, shared by reference.
/// Templates run on one thread; the lock only makes the reference type safe to mark `Sendable`.
public final class JinjaNamespace: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: JinjaDict

    init(_ attributes: JinjaDict) { storage = attributes }

    var attributes: JinjaDict { lock.withLock { storage } }
    subscript(name: String) -> JinjaValue? {
        get { lock.withLock { storage[name] } }
        set { lock.withLock { storage[name] = newValue } }
    }
}

/// A Python generator: yields its items once. Items are computed eagerly (every source is a finite list), but
/// consumption is tracked so a second loop over the same generator sees nothing, as in jinja2.
public final class JinjaIterator: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [JinjaValue]
    private var position = 0
    /// Set when a loop left the generator in a state this engine cannot reproduce (see `Renderer.runLoop`).
    private var unreproducible = false

    init(_ items: [JinjaValue]) { self.items = items }

    private func checkUsable() throws {
        if unreproducible {
            throw JinjaError.unsupported("using a generator again after a loop over it ended early with `loop` "
                                         + "lookahead (jinja2 would have consumed part of it)")
        }
    }

    /// Takes everything not yet yielded.
    func drain() throws -> [JinjaValue] {
        try lock.withLock {
            try checkUsable()
            let rest = Array(items[position...])
            position = items.count
            return rest
        }
    }

    /// Takes the next item, or nil when exhausted.
    func next() throws -> JinjaValue? {
        try lock.withLock {
            try checkUsable()
            guard position < items.count else { return nil }
            position += 1
            return items[position - 1]
        }
    }

    /// After a loop that drained the generator stopped early: Python would still hold the items the loop did not
    /// reach, unless the loop peeked ahead (`loop.last`, `loop.length` ...), which consumes an unknown number.
    func loopStopped(leaving rest: [JinjaValue], mayHavePeeked: Bool) {
        lock.withLock {
            if mayHavePeeked {
                unreproducible = true
            } else {
                items = rest
                position = 0
            }
        }
    }
}

/// A `{% macro %}`: its definition plus the local variables visible where it was defined (jinja2 closures).
public final class JinjaMacro: Sendable {
    let definition: MacroDefinition
    let captured: [String: JinjaValue]

    init(definition: MacroDefinition, captured: [String: JinjaValue]) {
        self.definition = definition
        self.captured = captured
    }
}

/// A callable that is not a macro: a global such as `range`, or a bound method such as `"a b".split`.
public struct JinjaFunction: Sendable {
    enum Kind: Sendable {
        case global(String)
        case method(JinjaValue, String)
    }
    let kind: Kind
}

/// A Python dict view or range object.
public struct JinjaView: Sendable {
    enum Kind: Sendable {
        case keys, values, items
        case range(start: Int, stop: Int, step: Int)
    }
    let kind: Kind
    let items: [JinjaValue]
}

/// The `loop` variable inside `{% for %}`.
public struct JinjaLoop: Sendable {
    let index0: Int
    let length: Int
    let previous: JinjaValue?
    let next: JinjaValue?
}

extension JinjaValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JinjaValue...) { self = .list(elements) }
    /// Keeps the literal's key order.
    public init(dictionaryLiteral elements: (String, JinjaValue)...) { self = .dict(JinjaDict(elements)) }
}

extension JinjaValue {
    /// The Python type name, for error messages that match Python's.
    var typeName: String {
        switch self {
        case .undefined: "Undefined"
        case .none: "NoneType"
        case .bool: "bool"
        case .int: "int"
        case .double: "float"
        case .string: "str"
        case .list: "list"
        case .dict: "dict"
        case .tuple: "tuple"
        case .markup: "Markup"
        case .namespace: "Namespace"
        case .iterator: "generator"
        case .macro: "Macro"
        case .function: "function"
        case .loop: "LoopContext"
        case .view(let view):
            switch view.kind {
            case .keys: "dict_keys"
            case .values: "dict_values"
            case .items: "dict_items"
            case .range: "range"
            }
        }
    }

    /// Python truthiness.
    var isTruthy: Bool {
        switch self {
        case .undefined, .none: false
        case .bool(let value): value
        case .int(let value): value != 0
        case .double(let value): value != 0
        case .string(let value), .markup(let value): !value.isEmpty
        case .list(let items), .tuple(let items): !items.isEmpty
        case .view(let view): !view.items.isEmpty
        case .dict(let dict): !dict.isEmpty
        case .namespace, .iterator, .macro, .function, .loop: true
        }
    }

    /// The text of a `str` or `Markup`.
    var stringValue: String? {
        switch self {
        case .string(let value), .markup(let value): value
        default: nil
        }
    }

    var isUndefined: Bool {
        if case .undefined = self { return true }
        return false
    }
}
