import Foundation
import Hummingbird
import MeshEngine

/// An error as OpenAI's servers send it: `{"error": {"message", "type", "param", "code"}}` with
/// its HTTP status. Thrown by handlers; Hummingbird turns it into the response.
public struct APIError: Error, CustomStringConvertible, HTTPResponseError, Sendable {
    public var statusCode: Int
    public var message: String
    public var type: String
    /// The request field at fault, if one is.
    public var param: String?
    public var code: String?
    /// Seconds a client should wait before retrying (429, 503).
    public var retryAfter: Int?

    public init(status: Int, _ message: String, type: String, param: String? = nil, code: String? = nil,
                retryAfter: Int? = nil) {
        statusCode = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.retryAfter = retryAfter
    }

    public var description: String { message }

    public static func badRequest(_ message: String, param: String? = nil) -> APIError {
        APIError(status: 400, message, type: "invalid_request_error", param: param)
    }

    public static func notFound(_ message: String, code: String = "not_found") -> APIError {
        APIError(status: 404, message, type: "invalid_request_error", code: code)
    }

    /// The engine's error kinds as HTTP statuses: 400 bad request, 429 busy, 503 unavailable, 500.
    public init(_ error: EngineError) {
        switch error.kind {
        case .badRequest:
            self = .badRequest(error.description)
        case .busy:
            self.init(status: 429, error.description, type: "rate_limit_error", code: "server_busy", retryAfter: 1)
        case .unavailable:
            self.init(status: 503, error.description, type: "server_error", code: "unavailable", retryAfter: 5)
        case .internalError:
            self.init(status: 500, error.description, type: "server_error", code: "internal_error")
        }
    }

    /// Any error a handler meets, in OpenAI's shape: Hummingbird's own (404 no route, 413 body
    /// too large) keep their status with a message that says what to do.
    public init(wrapping error: any Error) {
        switch error {
        case let error as APIError:
            self = error
        case let error as EngineError:
            self.init(error)
        case let error as HTTPError where error.status == .contentTooLarge:
            self.init(status: 413, "the request body is too large", type: "invalid_request_error",
                      code: "request_too_large")
        case let error as HTTPError where error.status == .notFound:
            self = .notFound(error.body ?? "no such route", code: "unknown_url")
        case let error as HTTPError:
            self.init(status: Int(error.status.code), error.body ?? error.status.reasonPhrase,
                      type: error.status.code < 500 ? "invalid_request_error" : "server_error")
        default:
            self.init(status: 500, "internal error: \(error)", type: "server_error", code: "internal_error")
        }
    }

    public var status: HTTPResponse.Status { HTTPResponse.Status(code: statusCode) }

    var jsonObject: [String: Any] {
        ["error": ["message": message, "type": type, "param": param.map { $0 as Any } ?? NSNull(),
                   "code": code.map { $0 as Any } ?? NSNull()]]
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers: HTTPFields = [:]
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        return JSON.response(jsonObject, status: status, headers: headers)
    }
}

/// JSON text of dictionaries, arrays, strings and numbers as the API sends it.
enum JSON {
    static func data(_ object: Any) -> Data {
        (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
            ?? Data((#"{"error": {"message": "internal error: the answer could not be encoded as JSON", "#
                     + #""type": "server_error", "param": null, "code": "internal_error"}}"#).utf8)
    }

    /// JSON has no infinities: an impossible token's -inf logprob is sent as -9999, as vLLM does.
    static func logprob(_ value: Float) -> Double { value.isFinite ? Double(value) : -9999 }

    /// A JSON response.
    static func response(_ object: Any, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var headers = headers
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data(object))))
    }
}
