import Foundation
import MeshChat

/// The prompt of a chat request: its `messages` (and `tools`) rendered by the model's chat
/// template as transformers renders it, key order kept as the client sent it.
enum ChatPrompt {
    static func render(_ fields: RequestFields, model: ServedModel) throws -> String {
        guard let template = model.chatTemplate else {
            throw APIError.badRequest("this model has no chat template (no 'chat_template' in "
                                      + "tokenizer_config.json and no chat_template.jinja): use /v1/completions, "
                                      + "or start the server with --chat-template FILE", param: "messages")
        }
        guard let messages = try? fields.list("messages"), !messages.isEmpty else {
            throw APIError.badRequest("'messages' is required: a non-empty list of {\"role\", \"content\"} objects",
                                      param: "messages")
        }
        for (index, message) in messages.enumerated() {
            guard case .dict(let message) = message, case .string? = message["role"] else {
                throw APIError.badRequest("messages[\(index)] must be an object with a 'role' string",
                                          param: "messages")
            }
            if case .list(let parts)? = message["content"] {
                for part in parts {
                    guard case .dict(let part) = part, case .string("text")? = part["type"] else {
                        throw APIError.badRequest("messages[\(index)].content: only text parts ({\"type\": \"text\", "
                                                  + "\"text\": …}) are supported", param: "messages")
                    }
                }
            }
        }
        let tools = try fields.list("tools").map(JinjaValue.list)
        let addGenerationPrompt = try fields.bool("add_generation_prompt") ?? true
        var extra: [String: JinjaValue] = [:]
        for case (.string(let key), let value) in try fields.object("chat_template_kwargs")?.dict.entries ?? [] {
            extra[key] = value
        }
        do {
            return try template.render(messages: template.preparedMessages(messages), tools: tools,
                                       addGenerationPrompt: addGenerationPrompt, bosToken: model.bosToken,
                                       eosToken: model.eosToken, extra: extra)
        } catch let error as JinjaError {
            throw APIError.badRequest("the model's chat template rejected the conversation: \(error)",
                                      param: "messages")
        }
    }
}
