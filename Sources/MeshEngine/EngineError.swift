/// Why the engine refused or dropped a request. The kind decides the HTTP status at the edge.
public struct EngineError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable {
        /// The request itself is wrong or can never be served (400).
        case badRequest
        /// The queue is full; try again later (429).
        case busy
        /// The engine cannot serve now: workers lost, shutting down (503).
        case unavailable
        /// A fault of ours (500).
        case internalError
    }

    public let kind: Kind
    public let description: String

    public init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = description
    }
}
