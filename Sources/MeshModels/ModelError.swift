import MeshTensors

/// Problems with a model directory, its config or its weights. Messages name the field,
/// tensor or file and say what to do.
public struct ModelError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
