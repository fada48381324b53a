import Foundation

/// A Hugging Face `tokenizer.json` (BPE: byte-level or SentencePiece-style with byte fallback):
/// added tokens → normaliser → pre-tokeniser → BPE → post-processor; decoding through the
/// decoder chain. Matches HF tokenizers on the fixtures in Tests/Fixtures/tokenizers.
public struct Tokenizer: @unchecked Sendable {
    private let model: BPEModel
    private let normalizer: Normalizer?
    private let preTokenizer: PreTokenizer?
    private let decoder: TokenDecoder?
    private let splitter: AddedTokenSplitter
    private let idToToken: [Int: String]
    private let specialIds: Set<Int>
    /// TemplateProcessing (single sequence): ids added before and after the text.
    private let prefixIds: [Int]
    private let suffixIds: [Int]

    public var vocabSize: Int { (idToToken.keys.max() ?? -1) + 1 }

    public init(tokenizerJSON url: URL) throws {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw TokenizerError("cannot read \(url.path): give the path of a Hugging Face tokenizer.json")
        }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? JSONObject else {
            throw TokenizerError("\(url.lastPathComponent) is not valid JSON: re-download or re-export the tokenizer")
        }
        try self.init(json: json)
    }

    /// Loads `tokenizer.json` from a model directory.
    /// The directory's tokenizer.json, or nil if it has none.
    public static func inDirectory(_ directory: URL) throws -> Tokenizer? {
        FileManager.default.fileExists(atPath: directory.appendingPathComponent("tokenizer.json").path)
            ? try Tokenizer(directory: directory) : nil
    }

    public init(directory: URL) throws {
        let file = directory.appendingPathComponent("tokenizer.json")
        guard let data = FileManager.default.contents(atPath: file.path) else {
            throw TokenizerError("no tokenizer.json in \(directory.path): pass --tokenizer FILE or use token ids")
        }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? JSONObject else {
            throw TokenizerError("\(file.path) is not valid JSON: re-download or re-export the tokenizer")
        }
        try self.init(json: json)
    }

    init(json: JSONObject) throws {
        guard let modelJSON = json.object("model") else { throw TokenizerError("tokenizer.json has no 'model' object") }
        model = try BPEModel(modelJSON)
        normalizer = try Normalizer.parse(json.object("normalizer"))
        preTokenizer = try PreTokenizer.parse(json.object("pre_tokenizer"))
        decoder = try TokenDecoder.parse(json.object("decoder"))
        let added = try (json.objects("added_tokens") ?? []).map(AddedToken.init)
        splitter = AddedTokenSplitter(added)
        var idToToken = Dictionary(model.vocab.map { ($1, String(decoding: $0.bytes, as: UTF8.self)) }, uniquingKeysWith: { a, _ in a })
        for token in added { idToToken[token.id] = token.content }
        self.idToToken = idToToken
        specialIds = Set(added.filter(\.special).map(\.id))
        (prefixIds, suffixIds) = try Tokenizer.template(json.object("post_processor"))
    }

    /// The ids TemplateProcessing puts around a single sequence.
    private static func template(_ json: JSONObject?) throws -> ([Int], [Int]) {
        guard let json else { return ([], []) }
        let type: String = try json.require("type", "post_processor")
        switch type {
        case "TemplateProcessing":
            let single: [JSONObject] = try json.require("single", "TemplateProcessing")
            let specials = json.object("special_tokens") ?? [:]
            var before: [Int] = [], after: [Int] = []
            var seenSequence = false
            for item in single {
                if item.object("Sequence") != nil { seenSequence = true; continue }
                guard let special = item.object("SpecialToken"), let id = special.string("id"),
                      let ids = specials.object(id)?["ids"] as? [NSNumber] else { continue }
                if seenSequence { after += ids.map(\.intValue) } else { before += ids.map(\.intValue) }
            }
            return (before, after)
        case "ByteLevel":
            return ([], [])
        case "Sequence":
            let items: [JSONObject] = try json.require("processors", "Sequence post_processor")
            return try items.reduce(([], [])) { acc, item in
                let (b, a) = try template(item)
                return (acc.0 + b, a + acc.1)
            }
        default:
            throw TokenizerError("tokenizer.json: post_processor '\(type)' is not supported; supported: TemplateProcessing, ByteLevel, Sequence")
        }
    }

    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int] {
        var ids: [Int] = []
        for segment in splitter.split(text) {
            switch segment {
            case .added(let token):
                ids.append(token.id)
            case .text(let piece, let isFirst):
                let normalized = normalizer?.apply(piece) ?? piece
                let words = (try? preTokenizer?.apply([Piece(text: normalized, isFirst: isFirst)])) ?? [Piece(text: normalized, isFirst: isFirst)]
                for word in words where !word.text.isEmpty { ids += model.tokenize(word.text) }
            }
        }
        return addSpecialTokens ? prefixIds + ids + suffixIds : ids
    }

    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        let tokens = ids.compactMap { id -> String? in
            if skipSpecialTokens, specialIds.contains(id) { return nil }
            return idToToken[id]
        }
        return (decoder?.decode(tokens) ?? tokens).joined()
    }

    /// The token string of an id (as in tokenizer.json), nil if unknown.
    public func token(for id: Int) -> String? { idToToken[id] }

}

/// Emits text as tokens arrive, holding back an incomplete UTF-8 sequence (a byte-level or
/// byte-fallback character split across tokens) until it completes. Each step decodes only a short
/// window (vLLM's prefix and read offsets), so a long generation costs linear time; the window
/// starts a few tokens back so decoders that treat a sequence's first token specially (a leading
/// space stripped, a prefix added) see the same context as a whole decode.
public struct StreamingDecoder: Sendable {
    private let tokenizer: Tokenizer
    private let skipSpecialTokens: Bool
    private var ids: [Int] = []
    /// Tokens before `prefixOffset` are fully emitted; `prefixOffset..<readOffset` is the context
    /// whose text was already emitted.
    private var prefixOffset = 0
    private var readOffset = 0

    public init(tokenizer: Tokenizer, skipSpecialTokens: Bool = false) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    public mutating func push(_ id: Int) -> String {
        ids.append(id)
        return emit(final: false)
    }

    /// Whatever is still held back (e.g. a genuinely invalid byte sequence at the end).
    public mutating func finish() -> String { emit(final: true) }

    private func decode(_ range: Range<Int>) -> [Unicode.Scalar] {
        Array(tokenizer.decode(Array(ids[range]), skipSpecialTokens: skipSpecialTokens).unicodeScalars)
    }

    /// Compares unicode scalars, not characters: a new scalar may join the previous grapheme.
    private mutating func emit(final: Bool) -> String {
        let context = decode(prefixOffset..<readOffset)
        let text = decode(prefixOffset..<ids.count)
        // A trailing replacement character may be half of a multi-byte character: wait for more.
        guard text.count > context.count, final || text.last != "\u{FFFD}",
              text[..<context.count].elementsEqual(context) else { return "" }
        var delta = String.UnicodeScalarView()
        delta.append(contentsOf: text[context.count...])
        // Keep the last few tokens as context for the next step.
        prefixOffset = max(readOffset, ids.count - Self.contextTokens)
        readOffset = ids.count
        return String(delta)
    }

    private static let contextTokens = 5
}
