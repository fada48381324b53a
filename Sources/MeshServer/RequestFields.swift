import Foundation
import MeshChat

/// Typed access to the fields of a JSON request body, parsed once in order (the chat template
/// sees keys as the client sent them) with JSON's own types (1 is an int, 1.0 a float). Unknown
/// fields are ignored, as OpenAI's servers do; a known field of the wrong type is a 400 naming it.
struct RequestFields {
    let dict: JinjaDict

    init(json body: Data) throws {
        let value: JinjaValue
        do {
            value = try JinjaValue(json: body)
        } catch let error as JinjaError {
            throw APIError.badRequest("the request body is not valid JSON: \(error.message)")
        }
        guard case .dict(let dict) = value else {
            throw APIError.badRequest("the request body must be a JSON object, "
                                      + "e.g. {\"prompt\": \"Hello\", \"max_tokens\": 16}")
        }
        self.dict = dict
    }

    init(dict: JinjaDict) { self.dict = dict }

    /// The value of a field that is present and not null.
    func value(_ key: String) -> JinjaValue? {
        guard let value = dict[key] else { return nil }
        if case .none = value { return nil }
        return value
    }

    private func wrongType(_ key: String, _ expected: String) -> APIError {
        .badRequest("'\(key)' must be \(expected)", param: key)
    }

    func string(_ key: String) throws -> String? {
        guard let value = value(key) else { return nil }
        guard case .string(let text) = value else { throw wrongType(key, "a string") }
        return text
    }

    func bool(_ key: String) throws -> Bool? {
        guard let value = value(key) else { return nil }
        guard case .bool(let flag) = value else { throw wrongType(key, "true or false") }
        return flag
    }

    func int(_ key: String) throws -> Int? {
        guard let value = value(key) else { return nil }
        guard case .int(let number) = value else { throw wrongType(key, "an integer") }
        return number
    }

    func number(_ key: String) throws -> Double? {
        switch value(key) {
        case nil: return nil
        case .int(let number)?: return Double(number)
        case .double(let number)?: return number
        default: throw wrongType(key, "a number")
        }
    }

    func object(_ key: String) throws -> RequestFields? {
        guard let value = value(key) else { return nil }
        guard case .dict(let dict) = value else { throw wrongType(key, "an object") }
        return RequestFields(dict: dict)
    }

    func list(_ key: String) throws -> [JinjaValue]? {
        guard let value = value(key) else { return nil }
        guard case .list(let items) = value else { throw wrongType(key, "a list") }
        return items
    }

    /// A string or a list of strings (`stop`).
    func strings(_ key: String) throws -> [String]? {
        switch value(key) {
        case nil: return nil
        case .string(let text)?: return [text]
        case .list(let items)?:
            return try items.map { item in
                guard case .string(let text) = item else { throw wrongType(key, "a string or a list of strings") }
                return text
            }
        default: throw wrongType(key, "a string or a list of strings")
        }
    }

    /// A list of non-negative integers (token ids).
    func tokenIds(_ key: String) throws -> [Int]? {
        guard let value = value(key) else { return nil }
        guard case .list(let items) = value else { throw wrongType(key, "a list of token ids (non-negative integers)") }
        return try items.map { item in
            guard case .int(let id) = item, id >= 0 else {
                throw wrongType(key, "a list of token ids (non-negative integers)")
            }
            return id
        }
    }
}
