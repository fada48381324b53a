import ArgumentParser
import Foundation
import MeshChat

struct ChatTemplateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat-template",
        abstract: "Render a conversation with a chat template, exactly as the server will (and as transformers does).",
        discussion: """
        Prints the prompt to stdout with nothing added or trimmed, or one error line and exit status 1. \
        As in transformers' apply_chat_template: without --tools the template sees `tools` as none; \
        with --template, `bos_token`/`eos_token` are undefined unless --bos/--eos give them; with \
        --model they come from tokenizer_config.json. JSON key order is kept (it is the order of \
        `|items` and `|tojson`).

        Examples:
          expertmesh chat-template --model DIR --messages conversation.json \\
              --add-generation-prompt
          expertmesh chat-template --template my.jinja --messages conversation.json \\
              --tools tools.json --bos "<s>"
          echo '[{"role": "user", "content": "Hi"}]' | expertmesh chat-template \\
              --model DIR --messages -
        """)

    @Option(help: "Model directory: its tokenizer_config.json or chat_template.jinja.")
    var model: String?

    @Option(help: "A Jinja template file (instead of --model).")
    var template: String?

    @Option(help: "JSON file with the list of messages (- reads stdin).")
    var messages: String

    @Option(help: "JSON file with the list of tool definitions.")
    var tools: String?

    @Flag(help: "End with the assistant's turn opener, as a chat request does.")
    var addGenerationPrompt = false

    @Option(help: "The bos_token the template sees.")
    var bos: String?

    @Option(help: "The eos_token the template sees.")
    var eos: String?

    func validate() throws {
        guard (model == nil) != (template == nil) else {
            throw ValidationError("give exactly one of --model DIR or --template FILE")
        }
    }

    func run() throws {
        try reportingErrors {
            var bosToken = bos
            var eosToken = eos
            let chatTemplate: ChatTemplate
            if let template {
                chatTemplate = try ChatTemplate(source: try readText(template, option: "--template"))
            } else {
                let loaded = try ChatTemplate.load(modelDirectory: URL(fileURLWithPath: model ?? "."))
                guard let template = loaded.template else {
                    throw CommandError("\(model ?? ".") has no chat template (no 'chat_template' in "
                                       + "tokenizer_config.json, no chat_template.jinja); "
                                       + "pass one with --template FILE")
                }
                chatTemplate = template
                bosToken = bos ?? loaded.bosToken
                eosToken = eos ?? loaded.eosToken
            }
            let conversation = try JinjaValue(json: Data(try readText(messages, option: "--messages").utf8))
            guard case .list(let list) = conversation else {
                throw CommandError("--messages must hold a JSON list of messages")
            }
            let toolList = try tools.map { try JinjaValue(json: Data(try readText($0, option: "--tools").utf8)) }
            let prompt = try chatTemplate.render(messages: chatTemplate.preparedMessages(list), tools: toolList,
                                                 addGenerationPrompt: addGenerationPrompt,
                                                 bosToken: bosToken, eosToken: eosToken)
            FileHandle.standardOutput.write(Data(prompt.utf8))
        }
    }

    private func readText(_ path: String, option: String) throws -> String {
        if path == "-" { return String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CommandError("\(option): cannot read \(path)")
        }
        return String(decoding: data, as: UTF8.self)
    }
}
