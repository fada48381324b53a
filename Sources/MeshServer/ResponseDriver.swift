import Foundation
import Hummingbird
import MeshEngine

/// Builds one endpoint's JSON from response pieces: the whole body, or the chunks of a stream.
protocol ResponseRenderer {
    /// Chunks (JSON objects) to stream for a piece; may be none.
    mutating func chunks(for piece: ResponsePiece) -> [[String: Any]]
    /// The chunk that carries `usage` after the last one (`stream_options.include_usage`).
    func usageChunk(_ usage: [String: Any]) -> [String: Any]
    /// The non-streaming answer.
    func body(_ response: CollectedResponse, usage: [String: Any]) -> [String: Any]
}

/// A whole response, collected from its pieces.
struct CollectedResponse {
    var text = ""
    var tokens: [Int] = []
    var logprobs: [TokenLogprobs] = []
    var promptLogprobs: [TokenLogprobs] = []
    var finishReason = "length"
    var stopReason: StopReason?

    mutating func absorb(_ piece: ResponsePiece) {
        switch piece {
        case .promptLogprobs(let entries):
            promptLogprobs = entries
        case .token(let token, let text, let entry):
            tokens.append(token)
            self.text += text
            if let entry { logprobs.append(entry) }
        case .finished(let reason, let stop, let text):
            self.text += text
            finishReason = reason
            stopReason = stop
        }
    }
}

/// Sends a submitted generation as one JSON body or as server-sent events. A client that goes
/// away (its connection closes, or a stream write fails) cancels the sequence; so does the
/// handler task's cancellation (graceful shutdown past its bound).
enum ResponseDriver {
    /// `Sendable` transfer of the session and renderer into the response body's writer task;
    /// only one task ever touches them. Whatever way the response ends, even before its body
    /// started (a connection that died before the headers went out), the sequence ends with it.
    private final class State<Renderer: ResponseRenderer>: @unchecked Sendable {
        var session: GenerationSession
        var renderer: Renderer
        let promptTokens: Int
        init(_ session: GenerationSession, _ renderer: Renderer, promptTokens: Int) {
            self.session = session
            self.renderer = renderer
            self.promptTokens = promptTokens
        }

        deinit { session.channel.cancel() }

        var usage: [String: Any] {
            let completion = session.generatedTokens
            return ["prompt_tokens": promptTokens, "completion_tokens": completion,
                    "total_tokens": promptTokens + completion]
        }
    }

    /// Submits `generation` (throwing at once for a bad request or a full queue) and answers in the
    /// renderer's shape, streamed or whole as the request's fields ask.
    static func respond<Renderer: ResponseRenderer>(
        submitting generation: GenerationRequest, fields: SamplingFields, model: ServedModel,
        service: GenerationService, peer: PeerCloseWatcher, renderer: Renderer
    ) async throws -> Response {
        let session = try GenerationSession(generation, service: service, tokenizer: model.tokenizer,
                                            stop: fields.stop, stopTokenIds: fields.stopTokenIds,
                                            skipSpecialTokens: fields.skipSpecialTokens)
        return try await respond(peer: peer, session: session, renderer: renderer,
                                 promptTokens: generation.prompt.count, stream: fields.stream,
                                 includeUsage: fields.includeUsage)
    }

    private static func respond<Renderer: ResponseRenderer>(
        peer: PeerCloseWatcher, session: GenerationSession, renderer: Renderer, promptTokens: Int,
        stream: Bool, includeUsage: Bool
    ) async throws -> Response {
        let state = State(session, renderer, promptTokens: promptTokens)
        let channel = session.channel
        guard stream else {
            let watch = peer.onPeerGone { channel.cancel() }
            defer { peer.forget(watch) }
            do {
                return try await withTaskCancellationHandler {
                    var response = CollectedResponse()
                    while let piece = try await state.session.next() { response.absorb(piece) }
                    return JSON.response(state.renderer.body(response, usage: state.usage))
                } onCancel: { channel.cancel() }
            } catch is CancellationError {
                channel.cancel()
                return Response(status: .init(code: 499, reasonPhrase: "Client Closed Request"))
            }
        }
        let headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            func send(_ object: [String: Any]) async throws {
                try await writer.write(ByteBuffer(bytes: Data("data: ".utf8) + JSON.data(object) + Data("\n\n".utf8)))
            }
            let watch = peer.onPeerGone { channel.cancel() }
            defer { peer.forget(watch) }
            do {
                try await withTaskCancellationHandler {
                    while let piece = try await state.session.next() {
                        for chunk in state.renderer.chunks(for: piece) { try await send(chunk) }
                    }
                    if includeUsage { try await send(state.renderer.usageChunk(state.usage)) }
                } onCancel: { channel.cancel() }
            } catch let error as APIError {
                // The status line is sent already: the error travels as an event, as OpenAI's does.
                try await send(error.jsonObject)
            } catch {
                channel.cancel()
                throw error
            }
            try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            try await writer.finish(nil)
        })
    }
}
