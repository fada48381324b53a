import Foundation
import MeshTokenizers
import XCTest

/// Encode/decode of every fixture text equals Hugging Face tokenizers (scripts/make-tokenizer-fixtures.py).
final class HuggingFaceParityTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../Fixtures/tokenizers").standardizedFileURL

    struct Case: Decodable {
        let text: String
        let ids: [Int]
        let ids_no_special: [Int]
        let decoded: String
        let decoded_skip: String
    }

    func check(_ name: String) throws {
        let directory = Self.root.appendingPathComponent(name)
        let tokenizer = try Tokenizer(tokenizerJSON: directory.appendingPathComponent("tokenizer.json"))
        let cases = try JSONDecoder().decode([Case].self, from: Data(contentsOf: directory.appendingPathComponent("cases.json")))
        XCTAssertGreaterThan(cases.count, 20)
        for c in cases {
            XCTAssertEqual(tokenizer.encode(c.text), c.ids, "\(name): encode \(c.text.debugDescription)")
            XCTAssertEqual(tokenizer.encode(c.text, addSpecialTokens: false), c.ids_no_special, "\(name): encode without specials \(c.text.debugDescription)")
            XCTAssertEqual(tokenizer.decode(c.ids), c.decoded, "\(name): decode \(c.ids)")
            XCTAssertEqual(tokenizer.decode(c.ids, skipSpecialTokens: true), c.decoded_skip, "\(name): decode skipping specials \(c.ids)")
            var stream = StreamingDecoder(tokenizer: tokenizer)
            var streamed = c.ids.map { stream.push($0) }.joined()
            streamed += stream.finish()
            XCTAssertEqual(streamed, c.decoded, "\(name): streamed decode of \(c.text.debugDescription)")
        }
    }

    func testLlama3ByteLevel() throws { try check("llama3-bytelevel") }
    func testQwenByteLevelWithNFC() throws { try check("qwen-bytelevel") }
    func testLlama4ByteLevel() throws { try check("llama4-bytelevel") }
    func testDeepSeekSequenceOfSplits() throws { try check("deepseek-bytelevel") }
    func testSentencePieceBPEWithByteFallback() throws { try check("sentencepiece-bpe") }
    func testSentencePieceMetaspace() throws { try check("sentencepiece-metaspace") }

    func testStreamingHoldsBackHalfCharacters() throws {
        let tokenizer = try Tokenizer(tokenizerJSON: Self.root.appendingPathComponent("sentencepiece-bpe/tokenizer.json"))
        // "☃" is not in the vocabulary: it falls back to three byte tokens.
        let ids = tokenizer.encode("☃", addSpecialTokens: false)
        XCTAssertEqual(ids.count, 4, "▁ plus three byte tokens: \(ids)")
        var stream = StreamingDecoder(tokenizer: tokenizer)
        let pieces = ids.map { stream.push($0) }
        XCTAssertEqual(pieces.last, "☃")
        XCTAssertTrue(pieces.dropLast().allSatisfy { !$0.contains("\u{FFFD}") }, "\(pieces)")
    }

    func testErrorsSayWhatIsWrong() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        XCTAssertThrowsError(try Tokenizer(directory: directory)) { XCTAssertTrue("\($0)".contains("no tokenizer.json in"), "\($0)") }
        let file = directory.appendingPathComponent("tokenizer.json")
        try Data("{not json".utf8).write(to: file)
        XCTAssertThrowsError(try Tokenizer(tokenizerJSON: file)) { XCTAssertTrue("\($0)".contains("is not valid JSON"), "\($0)") }
        try Data(#"{"model": {"type": "WordPiece", "vocab": {}}}"#.utf8).write(to: file)
        XCTAssertThrowsError(try Tokenizer(tokenizerJSON: file)) { XCTAssertTrue("\($0)".contains("model type 'WordPiece' is not supported; supported: BPE"), "\($0)") }
        try Data(#"{"model": {"type": "BPE", "vocab": {}, "merges": []}, "pre_tokenizer": {"type": "BertPreTokenizer"}}"#.utf8).write(to: file)
        XCTAssertThrowsError(try Tokenizer(tokenizerJSON: file)) { XCTAssertTrue("\($0)".contains("pre_tokenizer 'BertPreTokenizer' is not supported"), "\($0)") }
    }
}
