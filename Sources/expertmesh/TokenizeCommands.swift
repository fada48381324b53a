import ArgumentParser
import Foundation
import MeshTokenizers

/// `--model DIR | --tokenizer FILE`, shared by tokenize and detokenize.
struct TokenizerOptions: ParsableArguments {
    @Option(help: "Model directory holding tokenizer.json.")
    var model: String?

    @Option(help: "Path to a tokenizer.json file.")
    var tokenizer: String?

    func validate() throws {
        guard (model == nil) != (tokenizer == nil) else { throw ValidationError("give exactly one of --model DIR or --tokenizer FILE") }
    }

    func load() throws -> Tokenizer {
        if let tokenizer { return try Tokenizer(tokenizerJSON: URL(fileURLWithPath: tokenizer)) }
        return try Tokenizer(directory: URL(fileURLWithPath: model ?? "."))
    }
}

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the token ids of a text, as Hugging Face tokenizers would.",
        discussion: """
        Examples:
          expertmesh tokenize --model ./Tests/Fixtures/models/mixtral \\
              --text "Hello world"
          expertmesh tokenize --tokenizer tokenizer.json --text "Hello" --no-special \\
              --json
          expertmesh tokenize --model DIR --file book.txt
        """)

    @OptionGroup var source: TokenizerOptions

    @Option(help: "Text to tokenize.")
    var text: String?

    @Option(help: "Read the text from this file ('-' for standard input).")
    var file: String?

    func validate() throws {
        guard (text == nil) != (file == nil) else { throw ValidationError("give exactly one of --text TEXT or --file PATH") }
    }

    private func input() throws -> String {
        if let text { return text }
        let data = file == "-" ? FileHandle.standardInput.readDataToEndOfFile() : FileManager.default.contents(atPath: file ?? "")
        guard let data else { throw CommandError("cannot read \(file ?? ""): check the path") }
        return String(decoding: data, as: UTF8.self)
    }

    @Flag(help: "Do not add special tokens such as BOS.")
    var noSpecial = false

    @Flag(help: "Print {\"ids\": [...], \"tokens\": [...]} as JSON.")
    var json = false

    func run() throws {
        try reportingErrors {
            let tokenizer = try source.load()
            let ids = tokenizer.encode(try input(), addSpecialTokens: !noSpecial)
            if json {
                print(jsonText(["ids": ids, "tokens": ids.map { tokenizer.token(for: $0) ?? "" }]))
            } else {
                print(ids.map(String.init).joined(separator: ","))
            }
        }
    }
}

struct Detokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the text of comma-separated token ids.",
        discussion: """
        Examples:
          expertmesh detokenize --model ./Tests/Fixtures/models/mixtral \\
              --ids 1,415,2936
          expertmesh detokenize --tokenizer tokenizer.json --ids 1,2,3 \\
              --skip-special --json
        """)

    @OptionGroup var source: TokenizerOptions

    @Option(help: "Comma-separated token ids.")
    var ids: String

    @Flag(help: "Leave out special tokens such as BOS/EOS.")
    var skipSpecial = false

    @Flag(help: "Print {\"text\": ...} as JSON.")
    var json = false

    func run() throws {
        try reportingErrors {
            let tokenizer = try source.load()
            let list = try parseTokenList(ids, option: "--ids")
            if let bad = list.first(where: { $0 >= tokenizer.vocabSize }) {
                throw ValidationError("--ids: \(bad) is outside the vocabulary (0..<\(tokenizer.vocabSize))")
            }
            let text = tokenizer.decode(list, skipSpecialTokens: skipSpecial)
            print(json ? jsonText(["text": text]) : text)
        }
    }
}
