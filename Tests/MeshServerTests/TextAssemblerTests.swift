import Foundation
import MeshServer
import MeshTokenizers
import XCTest

/// Stop strings are matched on decoded text across token boundaries; released text never
/// contains a stop string or anything after it, and always adds up to the text before it.
final class TextAssemblerTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let tokenizer = try! Tokenizer(directory: root.appendingPathComponent("Tests/Fixtures/models/mixtral"))

    /// Feeds `text`'s tokens one by one; returns every released piece and the final text.
    func run(_ text: String, stop: [String]) -> (pieces: [String], text: String, stop: String?) {
        var assembler = TextAssembler(tokenizer: tokenizer, stop: stop, skipSpecialTokens: false)
        var pieces: [String] = []
        for token in tokenizer.encode(text, addSpecialTokens: false) {
            pieces.append(assembler.push(token))
            if assembler.matchedStop != nil { break }
        }
        pieces.append(assembler.finish())
        return (pieces, pieces.joined(), assembler.matchedStop)
    }

    func testStopStringAcrossTokensEndsTheTextBeforeIt() {
        let text = "The quick brown fox jumps over the lazy dog"
        for stop in ["fox", "k brow", "n f", "over the l", "dog", "The"] {
            let result = run(text, stop: [stop, "never"])
            XCTAssertEqual(result.text, String(text[..<text.range(of: stop)!.lowerBound]), stop)
            XCTAssertEqual(result.stop, stop)
        }
    }

    func testEarliestOfSeveralStopsWins() {
        let result = run("one two three four", stop: ["four", "two", "wo th"])
        XCTAssertEqual(result.text, "one ")
        XCTAssertEqual(result.stop, "two")
    }

    func testTextThatMightStartAStopIsHeldBackThenReleased() {
        // After each token, exactly the decoded text minus its longest end that begins the stop
        // string is out: "over the " waits until "hill" rules out "over the lazy".
        let stop = "over the lazy"
        let tokens = tokenizer.encode("The fox jumps over the hill", addSpecialTokens: false)
        var assembler = TextAssembler(tokenizer: tokenizer, stop: [stop], skipSpecialTokens: false)
        var released = ""
        var heldSomething = false
        for (index, token) in tokens.enumerated() {
            released += assembler.push(token)
            let decoded = tokenizer.decode(Array(tokens[...index]))
            let held = (0..<stop.count).last { decoded.hasSuffix(stop.prefix($0)) } ?? 0
            XCTAssertEqual(released, String(decoded.dropLast(held)), "after token \(index)")
            heldSomething = heldSomething || held > 1
        }
        released += assembler.finish()
        XCTAssertTrue(heldSomething)
        XCTAssertEqual(released, tokenizer.decode(tokens))
        XCTAssertNil(assembler.matchedStop)
    }

    func testWithoutStopsEveryTokenReleasesItsText() {
        let text = "Grüße, 世界! naïve café"
        let result = run(text, stop: [])
        XCTAssertEqual(result.text, tokenizer.decode(tokenizer.encode(text, addSpecialTokens: false)))
        XCTAssertFalse(result.pieces.contains { $0.unicodeScalars.contains("\u{FFFD}") }, "\(result.pieces)")
    }
}
