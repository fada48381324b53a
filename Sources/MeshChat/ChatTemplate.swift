import Foundation

/// A Hugging Face chat template, rendered as transformers' `apply_chat_template(..., tokenize=False)` renders it
/// with Python jinja2 (transformers 5.x): an ImmutableSandboxedEnvironment with `trim_blocks`, `lstrip_blocks` and
/// loop controls, its `tojson`, `raise_exception`, `strftime_now`, `dict` and `namespace`.
public struct ChatTemplate: Sendable {
    /// The template text as given.
    public let source: String
    let body: [Statement]

    /// Parses a template. A syntax error is a ``JinjaError`` naming the template line.
    public init(source: String) throws {
        self.source = source
        body = try Parser.parse(source)
    }

    /// The chat template of a Hugging Face model directory and the special tokens it is rendered with.
    ///
    /// The template comes from `chat_template.jinja` if the directory has one (transformers prefers that file),
    /// else from `tokenizer_config.json`'s `"chat_template"`: a string, or the list form
    /// `[{"name": ..., "template": ...}]` from which the `"default"` template is used. `bosToken`/`eosToken` come
    /// from `tokenizer_config.json`'s `"bos_token"`/`"eos_token"` (a string or an AddedToken object with
    /// `"content"`); null or absent gives nil, and the template then sees the variable as undefined.
    /// The special tokens are read even when the directory has no template (`template` is then nil), since a
    /// template given from elsewhere is rendered with them.
    public static func load(
        modelDirectory: URL
    ) throws -> (template: ChatTemplate?, bosToken: String?, eosToken: String?) {
        let configURL = modelDirectory.appendingPathComponent("tokenizer_config.json")
        var config = JinjaDict()
        if FileManager.default.fileExists(atPath: configURL.path) {
            let data = try read(configURL)
            let parsed: JinjaValue
            do {
                parsed = try JinjaValue(json: data)
            } catch let error as JinjaError {
                throw JinjaError.input("\(configURL.path): \(error.message)")
            }
            guard case .dict(let dict) = parsed else {
                throw JinjaError.input("\(configURL.path) is not a JSON object")
            }
            config = dict
        }
        let bosToken = try token(config["bos_token"], "bos_token", configURL)
        let eosToken = try token(config["eos_token"], "eos_token", configURL)
        let fileURL = modelDirectory.appendingPathComponent("chat_template.jinja")
        let source: String
        let origin: String
        if FileManager.default.fileExists(atPath: fileURL.path) {
            guard let text = String(data: try read(fileURL), encoding: .utf8) else {
                throw JinjaError.input("\(fileURL.path) is not UTF-8 text")
            }
            (source, origin) = (text, fileURL.path)
        } else if let text = try templateText(config["chat_template"], in: configURL) {
            (source, origin) = (text, configURL.path + " chat_template")
        } else {
            return (nil, bosToken, eosToken)
        }
        let template: ChatTemplate
        do {
            template = try ChatTemplate(source: source)
        } catch let error as JinjaError {
            throw JinjaError(error.kind, "\(origin): \(error.message)", line: error.line)
        }
        return (template, bosToken, eosToken)
    }

    private static func read(_ url: URL) throws -> Data {
        do {
            return try Data(contentsOf: url)
        } catch {
            throw JinjaError.input("cannot read \(url.path): \(error.localizedDescription)")
        }
    }

    private static func templateText(_ value: JinjaValue?, in url: URL) throws -> String? {
        switch value {
        case nil, .none?:
            return nil
        case .string(let text)?:
            return text
        case .list(let entries)?:
            var names: [String] = []
            for entry in entries {
                guard case .dict(let dict) = entry, let name = dict["name"]?.stringValue,
                      let text = dict["template"]?.stringValue else {
                    throw JinjaError.input(
                        "\(url.path): chat_template list entries need string \"name\" and \"template\"")
                }
                if name == "default" { return text }
                names.append(name)
            }
            throw JinjaError.input("\(url.path): chat_template has no \"default\" entry (names: "
                                   + names.joined(separator: ", ") + ")")
        default:
            throw JinjaError.input("\(url.path): chat_template must be a string or a list of named templates")
        }
    }

    private static func token(_ value: JinjaValue?, _ name: String, _ url: URL) throws -> String? {
        switch value {
        case nil, .none?: return nil
        case .string(let text)?: return text
        case .dict(let dict)?:
            guard let content = dict["content"]?.stringValue else {
                throw JinjaError.input("\(url.path): \(name) object has no string \"content\"")
            }
            return content
        default: throw JinjaError.input("\(url.path): \(name) must be a string, an AddedToken object or null")
        }
    }

    /// Renders a conversation.
    ///
    /// - Parameters:
    ///   - messages: a list of message dicts (`role`, `content`, `tool_calls` ...). As transformers does, keys whose
    ///     value is null are dropped, and a message with `reasoning_content`, `thinking` or `reasoning` gets the
    ///     reasoning under both `thinking` and `reasoning_content`.
    ///   - tools: JSON-schema tool definitions (a list of dicts), or nil, which the template sees as `none`.
    ///   - bosToken, eosToken: passed only when non-nil; a nil token is undefined in the template.
    ///   - extra: further template variables (e.g. `enable_thinking`, `date_string`); they may override
    ///     `bos_token`/`eos_token` but not `messages`, `tools`, `documents` or `add_generation_prompt` (transformers
    ///     rejects those too).
    /// - Throws: ``JinjaError``: `.raised` when the template rejects the conversation via `raise_exception`.
    public func render(messages: JinjaValue, tools: JinjaValue? = nil, addGenerationPrompt: Bool,
                       bosToken: String?, eosToken: String?, extra: [String: JinjaValue] = [:]) throws -> String {
        try render(messages: messages, tools: tools, addGenerationPrompt: addGenerationPrompt, bosToken: bosToken,
                   eosToken: eosToken, extra: extra, now: Date())
    }

    /// `render` with the clock that `strftime_now` reads, for reproducible prompts and tests.
    public func render(messages: JinjaValue, tools: JinjaValue?, addGenerationPrompt: Bool, bosToken: String?,
                eosToken: String?, extra: [String: JinjaValue], now: Date) throws -> String {
        var context: [String: JinjaValue] = [
            "messages": try Self.normalized(messages),
            "tools": try Self.normalizedTools(tools),
            "documents": .none,
            "add_generation_prompt": .bool(addGenerationPrompt),
        ]
        if let bosToken { context["bos_token"] = .string(bosToken) }
        if let eosToken { context["eos_token"] = .string(eosToken) }
        for name in ["messages", "tools", "documents", "add_generation_prompt"] where extra[name] != nil {
            throw JinjaError.input("extra variable '\(name)' clashes with a render argument")
        }
        context.merge(extra) { _, new in new }
        return try Renderer(context: context, now: now).render(body)
    }

    /// transformers' `_normalize_chat_messages` and `_alias_reasoning_fields`.
    private static func normalized(_ messages: JinjaValue) throws -> JinjaValue {
        guard case .list(let list) = messages else { throw JinjaError.input("messages must be a list of dicts") }
        guard !list.isEmpty else {
            throw JinjaError.input("Cannot apply chat template to an empty conversation. Provide at least one message.")
        }
        return .list(try list.map { message in
            guard case .dict(let dict) = message else {
                throw JinjaError.input("Chat messages should be dicts, but got \(message.typeName)")
            }
            var kept = JinjaDict()
            for entry in dict.entries {
                if case .none = entry.value { continue }
                try kept.set(entry.value, for: entry.key)
            }
            let reasoning = ["reasoning_content", "thinking", "reasoning"].lazy.compactMap { kept[$0] }.first
            if let reasoning {
                var aliased = JinjaDict([("thinking", reasoning)])
                for entry in kept.entries { try aliased.set(entry.value, for: entry.key) }
                aliased["reasoning_content"] = reasoning
                kept = aliased
            }
            return .dict(kept)
        })
    }

    private static func normalizedTools(_ tools: JinjaValue?) throws -> JinjaValue {
        switch tools {
        case nil, .none?: return .none
        case .list(let list)?:
            for tool in list {
                guard case .dict = tool else { throw JinjaError.input("each tool must be a JSON schema object") }
            }
            return .list(list)
        default:
            throw JinjaError.input("tools must be a list of JSON schema objects")
        }
    }
}
