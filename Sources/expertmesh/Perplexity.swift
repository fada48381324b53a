import ArgumentParser
import Foundation
import MeshEngine
import MeshModels
import MeshTokenizers

struct Perplexity: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure a model's perplexity on a text, in this process (the quality cost of int8 weights, of bf16).",
        discussion: """
        The tokens are cut into windows of --sequence; in each, every position predicts the token after it \
        (the last one predicts the first token past the window), as a training script's validation loss \
        does. Prints the mean loss in nats and its exponential, the perplexity. \
        Tests/Fixtures/demo/validation.json holds the demo model's held-out fortunes and transformers' \
        loss on each window (scripts/train-demo-model.py --validation-out).

        Examples:
          expertmesh perplexity --model models/demo \\
              --token-file Tests/Fixtures/demo/validation.json
          expertmesh perplexity --model models/demo \\
              --token-file Tests/Fixtures/demo/validation.json \\
              --weights-dtype int8 --dense-dtype int8 --windows 40 --json
          expertmesh perplexity --model DIR --text held-out.txt --sequence 512
        """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "A text file, encoded with the model's tokenizer.json.")
    var text: String?

    @Option(help: "A JSON file of token ids: an array, or an object whose \"tokens\" is one.")
    var tokenFile: String?

    @Option(help: "Tokens per window.")
    var sequence = 256

    @Option(help: "Use only the first N windows (default: every whole window).")
    var windows: Int?

    @Flag(help: "Print one JSON object: loss, perplexity, windows, predictions, window_losses, seconds.")
    var json = false

    @OptionGroup var compute: ComputeOptions

    @OptionGroup var experts: ExpertWeightOption

    @OptionGroup var dense: DenseWeightOption

    func validate() throws {
        guard (text == nil) != (tokenFile == nil) else {
            throw ValidationError("give exactly one of --text FILE or --token-file FILE")
        }
        guard sequence >= 1 else { throw ValidationError("--sequence must be at least 1") }
        if let windows, windows < 1 { throw ValidationError("--windows must be at least 1") }
    }

    func run() throws {
        try reportingErrors {
            let tokens = try readTokens()
            let available = (tokens.count - 1) / sequence
            guard available >= 1 else {
                throw CommandError("\(tokens.count) tokens make no window of --sequence \(sequence) (and the token after it): "
                                   + "give a longer text or a smaller --sequence")
            }
            let count = min(windows ?? available, available)
            let setup = compute.apply()
            let engine = try LocalEngine(directory: modelOptions.directory,
                                         formats: WeightFormats(experts: experts.experts, dense: dense.dense))
            let start = Date()
            var losses: [Double] = []
            for window in 0..<count {
                // The window and the token after it: prompt logprobs give each position's prediction.
                let first = window * sequence
                let result = try engine.generator.generate(GenerationRequest(
                    prompt: Array(tokens[first ... first + sequence]), maxTokens: 1, promptLogprobs: 0))
                losses.append(-result.promptLogprobs.reduce(0.0) { $0 + Double($1.logprob) } / Double(sequence))
                if !json, (window + 1) % 10 == 0 || window + 1 == count {
                    printError(String(format: "window %d/%d: mean loss so far %.4f", window + 1, count,
                                      losses.reduce(0, +) / Double(losses.count)))
                }
            }
            let loss = losses.reduce(0, +) / Double(count)
            let seconds = Date().timeIntervalSince(start)
            if json {
                print(jsonText(["loss": loss, "perplexity": exp(loss), "windows": count, "sequence": sequence,
                                "predictions": count * sequence, "window_losses": losses, "seconds": seconds,
                                "weights": "experts \(experts.experts.rawValue), dense \(dense.dense.rawValue)"]))
            } else {
                print(String(format: "perplexity %.3f (mean loss %.5f nats over %d windows of %d tokens); %@; "
                             + "experts %@, dense %@; %.1f s", exp(loss), loss, count, sequence, setup,
                             experts.experts.rawValue, dense.dense.rawValue, seconds))
            }
        }
    }

    private func readTokens() throws -> [Int] {
        if let text {
            guard let tokenizer = try modelOptions.tokenizer() else {
                throw CommandError("\(modelOptions.model) has no tokenizer.json: give --token-file instead")
            }
            guard let contents = try? String(contentsOfFile: text, encoding: .utf8) else {
                throw CommandError("cannot read --text \(text) as UTF-8 text: check the path")
            }
            return tokenizer.encode(contents)
        }
        let path = tokenFile ?? ""
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CommandError("cannot read --token-file \(path): check the path")
        }
        let object = try? JSONSerialization.jsonObject(with: data)
        guard let tokens = (object as? [Int]) ?? ((object as? [String: Any])?["tokens"] as? [Int]) else {
            throw CommandError("\(path): expected a JSON array of token ids, or an object with \"tokens\"")
        }
        return tokens
    }
}
