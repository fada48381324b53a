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
    /// Touched on the engine thread only.
    private var timer = RequestTimer()

    init() {
        (events, continuation) = AsyncStream.makeStream(of: SequenceEvent.self)
    }

    /// Called on the engine thread.
    func push(_ event: SequenceEvent) {
        timer.observe(event)
        continuation.yield(event)
    }

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
    /// `reason` is "stop" or "length"; `stopReason` what stopped it, when a stop string or one of
    /// the request's `stop_token_ids` did; `text` whatever was still held back.
    case finished(reason: String, stopReason: StopReason?, text: String)
}

/// vLLM's `stop_reason`: the stop string that matched, or the stop token id that was generated.
enum StopReason {
    case string(String)
    case token(Int)

    var json: Any {
        switch self {
        case .string(let text): return text
        case .token(let id): return id
        }
    }
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
    /// `stopTokenIds`: the client's own stop tokens (named as the stop reason).
    init(_ request: GenerationRequest, service: GenerationService, tokenizer: Tokenizer?, stop: [String],
         stopTokenIds: [Int], skipSpecialTokens: Bool) throws {
        let channel = EventChannel()
        do {
            try service.submit(request, isCancelled: { channel.isCancelled }, events: { channel.push($0) })
        } catch {
            throw APIError(wrapping: error)
        }
        self.channel = channel
        stopTokens = request.stopTokens
        clientStopTokens = Set(stopTokenIds)
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
                // A stop token ends the text without adding its own, as vLLM's detokenizer does.
                if stopTokens.contains(token) {
                    stoppedBy = clientStopTokens.contains(token) ? .token(token) : nil
                    return .token(token, text: "", logprobs: logprobs)
                }
                let text = assembler.push(token)
                if let stop = assembler.matchedStop {
                    // The engine finishes the sequence at its next step and frees its blocks.
                    channel.cancel()
                    done = true
                    queued = .finished(reason: "stop", stopReason: .string(stop), text: "")
                }
                return .token(token, text: text, logprobs: logprobs)
            case .finished(let reason, _):
                done = true
                guard reason != .cancelled else { throw CancellationError() }
                return .finished(reason: reason.rawValue, stopReason: stoppedBy, text: assembler.finish())
            case .failed(let error):
                done = true
                throw APIError(error)
            }
        }
    }

    /// The end, after a token that matched a stop string.
    private var queued: ResponsePiece?
    private let stopTokens: Set<Int>
    private let clientStopTokens: Set<Int>
    private var stoppedBy: StopReason?
}
