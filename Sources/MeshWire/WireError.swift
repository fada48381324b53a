/// A message that cannot be accepted; the text says what was wrong.
public struct WireError: Error, CustomStringConvertible, Sendable, Equatable {
    public let code: WireErrorCode
    public let description: String
    public init(_ code: WireErrorCode = .malformed, _ description: String) {
        self.code = code
        self.description = description
    }
}
