import Foundation
import MeshChat
import MeshEngine
import MeshModels
import MeshTokenizers

/// What the API knows of the model it serves: its name, tokenizer, chat template, stop tokens
/// and context length.
public struct ServedModel: Sendable {
    /// The `model` id clients send and `/v1/models` lists.
    public let name: String
    public let tokenizer: Tokenizer?
    public let eosTokenIds: [Int]
    /// nil when config.json does not say.
    public let contextLength: Int?
    public let chatTemplate: ChatTemplate?
    public let bosToken: String?
    public let eosToken: String?
    public let created = Int(Date().timeIntervalSince1970)

    /// Reads the tokenizer and chat template of `directory`; `chatTemplateFile` overrides the
    /// model's own template.
    public init(directory: URL, spec: ModelSpec, name: String? = nil, chatTemplateFile: URL? = nil) throws {
        self.name = name ?? directory.lastPathComponent
        tokenizer = try Tokenizer.inDirectory(directory)
        eosTokenIds = spec.eosTokenIds
        contextLength = spec.maxPositions
        let loaded = try ChatTemplate.load(modelDirectory: directory)
        bosToken = loaded.bosToken
        eosToken = loaded.eosToken
        if let chatTemplateFile {
            let source: String
            do {
                source = try String(contentsOf: chatTemplateFile, encoding: .utf8)
            } catch {
                throw ServerStartError("cannot read the chat template \(chatTemplateFile.path): "
                                       + error.localizedDescription)
            }
            chatTemplate = try ChatTemplate(source: source)
        } else {
            chatTemplate = loaded.template
        }
    }

    /// Chat prompts carry their special tokens in the template's text, so they add none.
    func encode(_ text: String, addSpecialTokens: Bool = true) throws -> [Int] {
        guard let tokenizer else {
            throw APIError.badRequest("this model has no tokenizer.json: send 'prompt' as a list of token ids",
                                      param: "prompt")
        }
        return tokenizer.encode(text, addSpecialTokens: addSpecialTokens)
    }

    /// A request naming another model gets a 404, as OpenAI's servers and vLLM answer.
    func checkName(_ requested: String?) throws {
        guard let requested, requested != name else { return }
        throw APIError.notFound("the model '\(requested)' does not exist; this server serves '\(name)'",
                                code: "model_not_found")
    }

    /// Stop strings need text.
    func checkTextFeatures(stop: [String]) throws {
        if !stop.isEmpty, tokenizer == nil {
            throw APIError.badRequest("'stop' strings need the model's tokenizer.json, which this model lacks; "
                                      + "use 'stop_token_ids'", param: "stop")
        }
    }

    /// A token's text as it reads after `previous` (SentencePiece decoders drop the leading space of a
    /// decode's first token, so a token alone would lose it).
    func tokenText(_ id: Int, after previous: Int?) -> String {
        guard let tokenizer else { return "" }
        guard let previous else { return tokenizer.decode([id]) }
        let before = Array(tokenizer.decode([previous]).unicodeScalars)
        let both = Array(tokenizer.decode([previous, id]).unicodeScalars)
        guard both.starts(with: before) else { return tokenizer.decode([id]) }
        return String(String.UnicodeScalarView(both[before.count...]))
    }

    /// The engine request for a prompt and the shared fields; without a max, as many tokens as
    /// the context and the KV pool leave (`defaultMaxTokens` caps that when given).
    func generationRequest(prompt: [Int], _ fields: SamplingFields, defaultMaxTokens: Int?, logprobs: Int?,
                           promptLogprobs: Int?, service: GenerationService) throws -> GenerationRequest {
        let poolTokens = service.status.stats.blocksTotal * PagedKVCache.blockSize
        let room = min(contextLength ?? Int.max, poolTokens) - prompt.count
        let maxTokens = fields.maxTokens ?? min(defaultMaxTokens ?? Int.max, max(1, room))
        let eos = fields.ignoreEos ? [] : eosTokenIds
        return GenerationRequest(prompt: prompt, maxTokens: maxTokens, sampling: fields.sampling,
                                 stopTokens: Set(eos + fields.stopTokenIds), logprobs: logprobs,
                                 promptLogprobs: promptLogprobs)
    }

    /// vLLM's prompt logprobs: null for the first prompt token, then {token_id: {logprob, rank, decoded_token}}.
    /// Entry i is for prompt position i + 1, read after prompt token i.
    func promptLogprobsObject(_ entries: [TokenLogprobs], prompt: [Int]) -> [Any] {
        [NSNull()] + entries.enumerated().map { index, entry -> [String: Any] in
            func tokenText(_ id: Int) -> String { self.tokenText(id, after: prompt[index]) }
            var map: [String: Any] = [:]
            for (rank, top) in entry.top.enumerated() {
                map[String(top.token)] = ["logprob": JSON.logprob(top.logprob), "rank": rank + 1,
                                          "decoded_token": tokenText(top.token)]
            }
            if map[String(entry.token)] == nil {
                map[String(entry.token)] = ["logprob": JSON.logprob(entry.logprob), "rank": entry.rank,
                                            "decoded_token": tokenText(entry.token)]
            }
            return map
        }
    }

    /// `/v1/models` entry.
    var modelObject: [String: Any] {
        var object: [String: Any] = ["id": name, "object": "model", "created": created, "owned_by": "expertmesh"]
        if let contextLength { object["max_model_len"] = contextLength }
        return object
    }
}
