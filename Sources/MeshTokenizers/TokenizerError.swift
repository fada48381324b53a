/// A tokenizer.json that cannot be used; the message names the file, field or component.
public struct TokenizerError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
