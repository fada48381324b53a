import Foundation
import MeshEngine
import MeshTokenizers

/// One request's events, handed from the engine thread to its HTTP handler task without blocking
/// either; also carries the cancellation the handler raises (client gone, stop string matched).
final class EventChannel: @unchecked Sendable {
    let events: AsyncStream<SequenceEvent>
    private let continuation: AsyncStream<SequenceEvent>.Continuation
    private let lock = NSLock()
    private var cancelled = false

    init() {
        (events, continuation) = AsyncStream.makeStream(of: SequenceEvent.self)
    }

    /// Called on the engine thread.
    func push(_ event: SequenceEvent) { continuation.yield(event) }

    func cancel() {
        lock.lock()
        cancelled = true
        lock.unlock()
    }

    var isCancelled: Bool {
        lock.lock()
        defer { lock.unlock() }
        return cancelled
    }
}

/// What a response is made of, in order: prompt logprobs (if asked), one piece per generated
/// token with the text it releases, then the end.
enum ResponsePiece {
    case promptLogprobs([TokenLogprobs])
    case token(Int, text: String, logprobs: TokenLogprobs?)
    /// `reason` is "stop" or "length"; `stopString` the stop text that ended it, if one did;
    /// `text` whatever was still held back.
    case finished(reason: String, stopString: String?, text: String)
}

/// Reads a submitted request's events and turns them into response pieces: text assembled with
/// stop strings applied (a matched stop string finishes the response and cancels the sequence).
struct GenerationSession {
    let channel: EventChannel
    private var iterator: AsyncStream<SequenceEvent>.Iterator
    private var assembler: TextAssembler
    private(set) var generatedTokens = 0
    private var done = false

    /// Submits `request` to `service`; throws (nothing queued) for a bad request or a full queue.
    init(_ request: GenerationRequest, service: GenerationService, tokenizer: Tokenizer?, stop: [String],
         skipSpecialTokens: Bool) throws {
        let channel = EventChannel()
        do {
            try service.submit(request, isCancelled: { channel.isCancelled }, events: { channel.push($0) })
        } catch {
            throw APIError(wrapping: error)
        }
        self.channel = channel
        iterator = channel.events.makeAsyncIterator()
        assembler = TextAssembler(tokenizer: tokenizer, stop: stop, skipSpecialTokens: skipSpecialTokens)
    }

    /// The next piece, nil after `.finished`. Throws the engine's failure as an API error, and
    /// `CancellationError` when the sequence was cancelled from outside (the client left).
    mutating func next() async throws -> ResponsePiece? {
        if let queued {
            self.queued = nil
            return queued
        }
        guard !done else { return nil }
        while true {
            guard let event = await iterator.next() else { throw CancellationError() }
            switch event {
            case .promptLogprobs(let entries):
                return .promptLogprobs(entries)
            case .logits:
                continue
            case .token(let token, let logprobs):
                generatedTokens += 1
                let text = assembler.push(token)
                if let stop = assembler.matchedStop {
                    // The engine finishes the sequence at its next step and frees its blocks.
                    channel.cancel()
                    done = true
                    queued = .finished(reason: "stop", stopString: stop, text: "")
                }
                return .token(token, text: text, logprobs: logprobs)
            case .finished(let reason, _):
                done = true
                guard reason != .cancelled else { throw CancellationError() }
                return .finished(reason: reason.rawValue, stopString: nil, text: assembler.finish())
            case .failed(let error):
                done = true
                throw APIError(error)
            }
        }
    }

    /// The end, after a token that matched a stop string.
    private var queued: ResponsePiece?
}
