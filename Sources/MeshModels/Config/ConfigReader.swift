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

    /// JSON booleans, integers and floats all arrive as NSNumber; its objCType tells them apart.
    private static func isBool(_ number: NSNumber) -> Bool { number.objCType.pointee == UInt8(ascii: "c") }

    /// A present field of the wrong type is an error naming it, never a silent default.
    public func string(_ key: String) throws -> String? {
        guard has(key) else { return nil }
        guard let text = values[key] as? String else { throw invalid(key, "a string") }
        return text
    }

    public func int(_ key: String) throws -> Int {
        guard let value = try optionalInt(key) else { throw missing(key, "an integer") }
        return value
    }

    public func positiveInt(_ key: String) throws -> Int {
        let value = try int(key)
        guard value > 0 else { throw ModelError("\(context): field '\(key)' is \(value); it must be positive") }
        return value
    }

    public func optionalInt(_ key: String) throws -> Int? {
        guard has(key) else { return nil }
        guard let value = Self.integer(values[key]) else { throw invalid(key, "an integer") }
        return value
    }

    private static func integer(_ value: Any?) -> Int? {
        guard let number = value as? NSNumber, !isBool(number), number.doubleValue == number.doubleValue.rounded(),
              abs(number.doubleValue) < 9e18 else { return nil }
        return number.intValue
    }

    public func double(_ key: String) throws -> Double {
        guard let value = try optionalDouble(key) else { throw missing(key, "a number") }
        return value
    }

    public func optionalDouble(_ key: String) throws -> Double? {
        guard has(key) else { return nil }
        guard let number = values[key] as? NSNumber, !Self.isBool(number) else { throw invalid(key, "a number") }
        return number.doubleValue
    }

    public func bool(_ key: String, default fallback: Bool) throws -> Bool {
        guard has(key) else { return fallback }
        guard let number = values[key] as? NSNumber, Self.isBool(number) else { throw invalid(key, "true or false") }
        return number.boolValue
    }

    public func intList(_ key: String) throws -> [Int]? {
        guard has(key) else { return nil }
        guard let list = values[key] as? [Any] else { throw invalid(key, "a list of integers") }
        return try list.map { item in
            guard let value = Self.integer(item) else { throw invalid(key, "a list of integers") }
            return value
        }
    }

    public func stringList(_ key: String) throws -> [String]? {
        guard has(key) else { return nil }
        guard let list = values[key] as? [String] else { throw invalid(key, "a list of strings") }
        return list
    }

    /// An int or a list of ints (e.g. `eos_token_id`).
    public func intOrList(_ key: String) throws -> [Int] {
        guard has(key) else { return [] }
        if let single = Self.integer(values[key]) { return [single] }
        guard let list = try? intList(key) else { throw invalid(key, "an integer or a list of integers") }
        return list
    }

    public func object(_ key: String) throws -> ConfigReader? {
        guard has(key) else { return nil }
        guard let object = values[key] as? [String: Any] else { throw invalid(key, "an object") }
        return ConfigReader(values: object, context: "\(context) \(key)")
    }

    private func missing(_ key: String, _ kind: String) -> ModelError {
        ModelError("\(context): missing or invalid field '\(key)' (expected \(kind))")
    }

    private func invalid(_ key: String, _ kind: String) -> ModelError {
        ModelError("\(context): field '\(key)' must be \(kind), got \(Self.describe(values[key])); fix config.json")
    }

    /// A value as JSON writes it, for messages.
    private static func describe(_ value: Any?) -> String {
        switch value {
        case let text as String: return "\"\(text)\""
        case let number as NSNumber where isBool(number): return number.boolValue ? "true" : "false"
        case let value?: return "\(value)"
        case nil: return "nothing"
        }
    }
}
