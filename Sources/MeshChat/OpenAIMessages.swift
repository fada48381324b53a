import Foundation

extension ChatTemplate {
    /// Whether the template walks a message's content parts itself (`{% for part in message['content'] %}`, as
    /// Llama 4's does): vLLM's test for passing OpenAI content lists through unchanged.
    public var readsContentParts: Bool {
        source.contains(#/for\s+\w+\s+in\s+\w+(\[\s*['"]content['"]\s*\]|\.content)/#)
    }

    /// Messages as OpenAI clients send them, made ready for this template as vLLM makes them: content given as a
    /// list of text parts becomes one string (the parts joined by newlines) unless the template reads the parts
    /// itself, and tool-call `arguments` sent as a JSON string become the object they encode (templates print them
    /// with `tojson` or walk their `items()`).
    public func preparedMessages(_ messages: [JinjaValue]) -> JinjaValue {
        let joinParts = !readsContentParts
        return .list(messages.map { message in
            guard case .dict(var fields) = message else { return message }
            if joinParts, case .list(let parts)? = fields["content"] {
                let texts = parts.compactMap { part -> String? in
                    guard case .dict(let part) = part else { return nil }
                    return part["text"]?.stringValue
                }
                fields["content"] = .string(texts.joined(separator: "\n"))
            }
            if case .list(let calls)? = fields["tool_calls"] {
                fields["tool_calls"] = .list(calls.map(Self.parsingArguments))
            }
            return .dict(fields)
        })
    }

    private static func parsingArguments(_ call: JinjaValue) -> JinjaValue {
        guard case .dict(var fields) = call, case .dict(var function)? = fields["function"],
              let text = function["arguments"]?.stringValue,
              let arguments = try? JinjaValue(json: Data(text.utf8)), case .dict = arguments else { return call }
        function["arguments"] = arguments
        fields["function"] = .dict(function)
        return .dict(fields)
    }
}
