import ArgumentParser
import Foundation
import MeshEngine
import MeshModels
import MeshTensors
import MeshTokenizers

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text with a model in this process.",
        discussion: """
        Examples:
          expertmesh generate --model ./Tests/Fixtures/models/mixtral \\
              --prompt "The quick brown fox" --max-tokens 16
          expertmesh generate --model DIR --tokens 5,17,42 --temperature 0.8 \\
              --top-p 0.9 --seed 7 --json
          expertmesh generate --model DIR --prompt "Hi" --max-tokens 4 \\
              --logits-out logits.npy
          expertmesh generate --server http://127.0.0.1:8080 \\
              --prompt "Once upon a time" --max-tokens 64 --stream
        """)

    @Option(help: "Model directory (local generation).")
    var model: String?

    @Option(help: "Server URL, e.g. http://127.0.0.1:8080 (generation on a cluster or a `serve`; a key the server asks for is read from EXPERTMESH_API_KEY).")
    var server: String?

    @Option(help: "Prompt text (needs tokenizer.json in the model directory).")
    var prompt: String?

    @Option(help: "Prompt as comma-separated token ids, e.g. 5,17,42.")
    var tokens: String?

    @Option(help: "Number of tokens to generate.")
    var maxTokens: Int = 32

    @Option(help: "Sampling temperature; 0 is greedy.")
    var temperature: Float = 0

    @Option(help: "Sample only among the K most likely tokens.")
    var topK: Int?

    @Option(help: "Sample only among the most likely tokens whose probabilities add up to P.")
    var topP: Float?

    @Option(help: "Random seed; with a seed, sampling is reproducible.")
    var seed: UInt64?

    @Flag(help: "Keep generating after an end-of-sequence token.")
    var ignoreEos = false

    @Flag(help: "Print one JSON object: prompt_tokens, tokens, text, timings.")
    var json = false

    @Flag(help: "With --server: print the text as the server streams it (server-sent events).")
    var stream = false

    @Option(help: "Write the logits of every forward position to this .npy file: [prompt_len + generated - 1, vocab] f32.")
    var logitsOut: String?

    @OptionGroup var compute: ComputeOptions

    @OptionGroup var experts: ExpertWeightOption

    @OptionGroup var dense: DenseWeightOption

    func validate() throws {
        guard (model == nil) != (server == nil) else { throw ValidationError("give exactly one of --model DIR (local) or --server URL (cluster)") }
        if stream, server == nil || json { throw ValidationError("--stream works with --server and without --json") }
        if server != nil, logitsOut != nil { throw ValidationError("--logits-out works with --model only (the API returns logprobs, not logits)") }
        guard (prompt == nil) != (tokens == nil) else { throw ValidationError("give exactly one of --prompt TEXT or --tokens 5,17,42") }
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1") }
        if let problem = SamplingParameters(temperature: temperature, topK: topK, topP: topP, seed: seed).validationError {
            throw ValidationError(problem)
        }
    }

    func run() throws {
        if let server {
            return try reportingErrors { try runRemote(server) }
        }
        try reportingErrors {
            compute.apply()
            let modelOptions = try ModelOptions.parse(["--model", model ?? "."])
            let tokenizer = try modelOptions.tokenizer()
            let promptTokens: [Int]
            if let tokens {
                promptTokens = try parseTokenList(tokens, option: "--tokens")
            } else {
                guard let tokenizer else {
                    throw ModelError("\(modelOptions.model) has no tokenizer.json: pass the prompt as --tokens 5,17,42 instead")
                }
                promptTokens = tokenizer.encode(prompt ?? "")
            }
            let engine = try LocalEngine(directory: modelOptions.directory,
                                         formats: WeightFormats(experts: experts.experts, dense: dense.dense))
            let request = GenerationRequest(
                prompt: promptTokens, maxTokens: maxTokens,
                sampling: SamplingParameters(temperature: temperature, topK: topK, topP: topP, seed: seed),
                stopTokens: ignoreEos ? [] : Set(engine.spec.eosTokenIds), recordLogits: logitsOut != nil)
            var stream = tokenizer.map { StreamingDecoder(tokenizer: $0) }
            let result = try engine.generator.generate(request) { token in
                guard !json, var decoder = stream else { return }
                // Unbuffered, so text appears as it is generated.
                FileHandle.standardOutput.write(Data(decoder.push(token).utf8))
                stream = decoder
            }
            if let logitsOut {
                try Npy.encode(result.logits, shape: [result.logitRows, engine.spec.vocabSize])
                    .write(to: URL(fileURLWithPath: logitsOut))
            }
            try printResult(result, promptTokens: promptTokens, tokenizer: tokenizer, stream: stream)
        }
    }

    private func printResult(_ result: GenerationResult, promptTokens: [Int], tokenizer: Tokenizer?, stream: StreamingDecoder?) throws {
        let prefillRate = Double(promptTokens.count) / max(result.prefillSeconds, 1e-9)
        let decodeSteps = max(result.tokens.count - 1, 0)
        let decodeRate = Double(decodeSteps) / max(result.decodeSeconds, 1e-9)
        if json {
            var object: [String: Any] = [
                "prompt_tokens": promptTokens, "tokens": result.tokens, "finish_reason": result.finishReason,
                "prefill_tokens_per_second": prefillRate, "decode_tokens_per_second": decodeRate,
            ]
            if let tokenizer { object["text"] = tokenizer.decode(result.tokens) }
            print(jsonText(object))
        } else if var stream {
            FileHandle.standardOutput.write(Data((stream.finish() + "\n").utf8))
            printError(String(format: "%d prompt tokens (%.1f tok/s), %d generated (%.1f tok/s decode), finish: %@",
                              promptTokens.count, prefillRate, result.tokens.count, decodeRate, result.finishReason))
        } else {
            print(result.tokens.map(String.init).joined(separator: ","))
        }
    }
}
