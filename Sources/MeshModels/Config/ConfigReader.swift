import Foundation

/// Typed access to a `config.json` object with errors that name the missing or invalid field.
public struct ConfigReader: @unchecked Sendable {
    public let values: [String: Any]
    /// Where the values came from, for messages ("config.json" or "config.json text_config").
    public let context: String

    public init(values: [String: Any], context: String) {
        self.values = values
        self.context = context
    }

    public init(file: URL) throws {
        guard let data = FileManager.default.contents(atPath: file.path) else {
            throw ModelError("cannot read \(file.path): is --model a Hugging Face model directory with a config.json?")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ModelError("\(file.lastPathComponent) is not a JSON object: fix or re-download it")
        }
        self.init(values: object, context: file.lastPathComponent)
    }

    public func has(_ key: String) -> Bool { values[key] != nil && !(values[key] is NSNull) }

    public func string(_ key: String) -> String? { values[key] as? String }

    public func int(_ key: String) throws -> Int {
        guard let value = optionalInt(key) else { throw missing(key, "an integer") }
        return value
    }

    public func positiveInt(_ key: String) throws -> Int {
        let value = try int(key)
        guard value > 0 else { throw ModelError("\(context): field '\(key)' is \(value); it must be positive") }
        return value
    }

    public func optionalInt(_ key: String) -> Int? {
        (values[key] as? NSNumber)?.intValue
    }

    public func double(_ key: String) throws -> Double {
        guard let value = optionalDouble(key) else { throw missing(key, "a number") }
        return value
    }

    public func optionalDouble(_ key: String) -> Double? { (values[key] as? NSNumber)?.doubleValue }

    public func bool(_ key: String, default fallback: Bool) -> Bool { (values[key] as? Bool) ?? fallback }

    public func intList(_ key: String) -> [Int]? { (values[key] as? [NSNumber])?.map(\.intValue) }

    /// An int or a list of ints (e.g. `eos_token_id`).
    public func intOrList(_ key: String) -> [Int] {
        if let single = optionalInt(key) { return [single] }
        return intList(key) ?? []
    }

    public func object(_ key: String) -> ConfigReader? {
        (values[key] as? [String: Any]).map { ConfigReader(values: $0, context: "\(context) \(key)") }
    }

    private func missing(_ key: String, _ kind: String) -> ModelError {
        ModelError("\(context): missing or invalid field '\(key)' (expected \(kind))")
    }
}
