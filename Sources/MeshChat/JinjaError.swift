/// Why a template could not be parsed or rendered, and where. Every failure of this module is one of these: a
/// template that jinja2 would reject, a conversation the template rejects, or a construct this engine does not
/// support (never a silently different prompt).
public struct JinjaError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// The template text is not valid Jinja.
        case syntax
        /// An operation on an undefined value (jinja2's UndefinedError).
        case undefined
        /// A Python TypeError/ValueError/ZeroDivisionError raised while rendering.
        case type
        /// What jinja2's ImmutableSandboxedEnvironment forbids (e.g. `list.append`).
        case security
        /// The template called `raise_exception(message)`; `message` is the template's text.
        case raised
        /// Valid jinja2 that this engine does not implement.
        case unsupported
        /// Bad input from the caller: messages, tools, JSON or a model directory.
        case input
    }

    public let kind: Kind
    public let message: String
    /// The template line the failure comes from, when it comes from the template.
    public internal(set) var line: Int?

    init(_ kind: Kind, _ message: String, line: Int? = nil) {
        self.kind = kind
        self.message = message
        self.line = line
    }

    public var description: String {
        guard let line else { return message }
        return "template line \(line): \(message)"
    }

    static func syntax(_ message: String, line: Int) -> JinjaError { JinjaError(.syntax, message, line: line) }
    static func type(_ message: String) -> JinjaError { JinjaError(.type, message) }
    /// Valid jinja2 that this engine does not implement; `what` names the construct.
    static func unsupported(_ what: String, line: Int? = nil) -> JinjaError {
        JinjaError(.unsupported, "not supported: " + what, line: line)
    }
    static func undefined(_ what: String) -> JinjaError { JinjaError(.undefined, "\(what) is undefined") }
    static func security(_ message: String) -> JinjaError { JinjaError(.security, message) }
    static func input(_ message: String) -> JinjaError { JinjaError(.input, message) }
}
