import Foundation

/// Owns the C memory of a protobuf-c message being built; everything is freed together.
final class CArena {
    private var allocations: [UnsafeMutableRawPointer] = []

    deinit { allocations.forEach { free($0) } }

    func string(_ value: String) -> UnsafeMutablePointer<CChar> {
        let copy = strdup(value)!
        allocations.append(UnsafeMutableRawPointer(copy))
        return copy
    }

    func array<T>(_ values: [T]) -> UnsafeMutablePointer<T>? {
        guard !values.isEmpty else { return nil }
        let memory = malloc(values.count * MemoryLayout<T>.stride)!
        allocations.append(memory)
        let typed = memory.bindMemory(to: T.self, capacity: values.count)
        typed.initialize(from: values, count: values.count)
        return typed
    }

    func value<T>(_ value: T) -> UnsafeMutablePointer<T> {
        let memory = malloc(MemoryLayout<T>.stride)!
        allocations.append(memory)
        let typed = memory.bindMemory(to: T.self, capacity: 1)
        typed.initialize(to: value)
        return typed
    }
}
