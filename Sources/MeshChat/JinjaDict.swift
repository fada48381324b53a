/// An insertion-ordered Python dict. Keys from JSON are strings; templates can also use ints, floats, booleans,
/// None and tuples as keys (`{0: 'a'}`), with Python's key equality (`1`, `1.0` and `True` are one key; strings
/// compare by code point, so "é" and "e\u{301}" are two keys, unlike Swift's `String ==`).
public struct JinjaDict: Sendable {
    private struct Entry: Sendable {
        let key: JinjaValue
        let hashKey: DictKey
        var value: JinjaValue
    }

    private var storage: [Entry] = []
    private var index: [DictKey: Int] = [:]

    public init() {}

    /// Builds from pairs in order; a repeated key keeps its first position and takes the last value, like Python.
    public init(_ pairs: [(String, JinjaValue)]) {
        for (key, value) in pairs { self[key] = value }
    }

    public var count: Int { storage.count }
    public var isEmpty: Bool { storage.isEmpty }
    /// Keys and values in insertion order.
    public var entries: [(key: JinjaValue, value: JinjaValue)] { storage.map { ($0.key, $0.value) } }

    /// Reads a string key; assigning nil removes it.
    public subscript(key: String) -> JinjaValue? {
        get { index[.string(ExactString(key))].map { storage[$0].value } }
        set {
            if let newValue {
                set(newValue, at: .string(ExactString(key)), key: .string(key))
            } else if let position = index.removeValue(forKey: .string(ExactString(key))) {
                storage.remove(at: position)
                for offset in position..<storage.count { index[storage[offset].hashKey] = offset }
            }
        }
    }

    /// Python `d[key]` for any key; nil when absent. Throws for unhashable keys (lists, dicts).
    func value(for key: JinjaValue) throws -> JinjaValue? {
        index[try DictKey(key)].map { storage[$0].value }
    }

    mutating func set(_ value: JinjaValue, for key: JinjaValue) throws {
        set(value, at: try DictKey(key), key: key)
    }

    private mutating func set(_ value: JinjaValue, at hashKey: DictKey, key: JinjaValue) {
        if let position = index[hashKey] {
            storage[position].value = value
        } else {
            index[hashKey] = storage.count
            storage.append(Entry(key: key, hashKey: hashKey, value: value))
        }
    }
}

/// A dict key as Python hashes it: numbers by value across int/float/bool, strings by code point.
enum DictKey: Hashable, Sendable {
    case string(ExactString)
    case int(Int)
    case double(Double)
    case none
    case undefined
    indirect case tuple([DictKey])

    init(_ value: JinjaValue) throws {
        switch value {
        case .string(let text), .markup(let text): self = .string(ExactString(text))
        case .int(let number): self = .int(number)
        case .bool(let flag): self = .int(flag ? 1 : 0)
        case .double(let number): self = Int(exactly: number).map { .int($0) } ?? .double(number)
        case .none: self = .none
        case .undefined: self = .undefined
        case .tuple(let items): self = .tuple(try items.map(DictKey.init))
        default: throw JinjaError.type("unhashable type: '\(value.typeName)'")
        }
    }
}

/// A string hashed and compared by its UTF-8 bytes, i.e. by code points as Python compares strings.
struct ExactString: Hashable, Sendable {
    let value: String
    init(_ value: String) { self.value = value }
    static func == (lhs: ExactString, rhs: ExactString) -> Bool { lhs.value.utf8.elementsEqual(rhs.value.utf8) }
    func hash(into hasher: inout Hasher) {
        for byte in value.utf8 { hasher.combine(byte) }
    }
}
