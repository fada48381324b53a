import Foundation

/// A Hugging Face checkpoint: `model.safetensors`, or shards listed by `model.safetensors.index.json`.
/// Tracks which tensors were used so the loader can report the ones it did not use.
public final class Checkpoint: @unchecked Sendable {
    public let directory: URL
    private var files: [String: SafetensorsFile] = [:]   // file name -> file
    private var location: [String: String] = [:]          // tensor name -> file name
    private var used: Set<String> = []
    private let lock = NSLock()

    public init(directory: URL) throws {
        self.directory = directory
        let fm = FileManager.default
        let index = directory.appendingPathComponent("model.safetensors.index.json")
        var fileNames: [String]
        if fm.fileExists(atPath: index.path) {
            guard let data = fm.contents(atPath: index.path),
                  let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let weightMap = json["weight_map"] as? [String: String] else {
                throw TensorError.corrupt(file: "model.safetensors.index.json", reason: "it has no 'weight_map' object")
            }
            fileNames = Array(Set(weightMap.values)).sorted()
        } else {
            let listing = (try? fm.contentsOfDirectory(atPath: directory.path)) ?? []
            fileNames = listing.filter { $0.hasSuffix(".safetensors") }.sorted()
        }
        guard !fileNames.isEmpty else {
            throw TensorError.io("no *.safetensors files in \(directory.path): point --model at a Hugging Face model directory")
        }
        for fileName in fileNames {
            let path = directory.appendingPathComponent(fileName).path
            guard fm.fileExists(atPath: path) else {
                throw TensorError.io("shard \(fileName) listed in model.safetensors.index.json is missing from \(directory.path)")
            }
            let file = try SafetensorsFile(path: path)
            files[fileName] = file
            for name in file.entries.keys { location[name] = fileName }
        }
    }

    public var tensorNames: [String] { location.keys.sorted() }

    public func contains(_ name: String) -> Bool { location[name] != nil }

    /// Returns the tensor and marks it used.
    public func tensor(_ name: String) throws -> TensorView {
        guard let fileName = location[name], let file = files[fileName] else {
            throw TensorError.missingTensor(name: name, file: directory.lastPathComponent)
        }
        lock.lock(); used.insert(name); lock.unlock()
        return try file.tensor(name)
    }

    /// Returns a tensor of bytes (U8) and marks it used.
    public func byteTensor(_ name: String) throws -> ByteTensor {
        guard let fileName = location[name], let file = files[fileName] else {
            throw TensorError.missingTensor(name: name, file: directory.lastPathComponent)
        }
        lock.lock(); used.insert(name); lock.unlock()
        return try file.byteTensor(name)
    }

    /// Returns the tensor after checking its shape.
    public func tensor(_ name: String, shape: [Int]) throws -> TensorView {
        let view = try tensor(name)
        try view.expect(shape: shape)
        return view
    }

    /// A tensor's header entry (dtype, shape) without marking it used.
    public func peek(_ name: String) throws -> SafetensorsFile.Entry {
        guard let fileName = location[name], let entry = files[fileName]?.entries[name] else {
            throw TensorError.missingTensor(name: name, file: directory.lastPathComponent)
        }
        return entry
    }

    /// Tensors present in the files that no call to `tensor` asked for.
    public var unusedTensorNames: [String] {
        lock.lock(); defer { lock.unlock() }
        return location.keys.filter { !used.contains($0) }.sorted()
    }
}
