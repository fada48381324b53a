/// Errors about tensor files and shapes. Each message names the file or tensor and what to fix.
public enum TensorError: Error, CustomStringConvertible, Sendable, Equatable {
    case io(String)
    case corrupt(file: String, reason: String)
    case missingTensor(name: String, file: String)
    case shapeMismatch(name: String, expected: [Int], found: [Int])
    case dtypeMismatch(name: String, expected: String, found: String)
    case unsupportedDType(name: String, dtype: String)

    public var description: String {
        switch self {
        case .io(let message):
            return message
        case .corrupt(let file, let reason):
            return "\(file) is not a valid safetensors file: \(reason). Re-download or re-export the checkpoint."
        case .missingTensor(let name, let file):
            return "tensor '\(name)' is missing from \(file)"
        case .shapeMismatch(let name, let expected, let found):
            return "tensor '\(name)' has shape \(found), expected \(expected): the checkpoint does not match config.json"
        case .dtypeMismatch(let name, let expected, let found):
            return "tensor '\(name)' has dtype \(found), expected \(expected)"
        case .unsupportedDType(let name, let dtype):
            return "tensor '\(name)' has dtype \(dtype); supported: F32, BF16, F16"
        }
    }
}
