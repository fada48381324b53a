import Foundation

/// One `.safetensors` file: an 8-byte little-endian header length, a JSON header
/// `{name: {dtype, shape, data_offsets: [begin, end]}}`, then the raw tensor bytes.
/// Every offset is checked against the file size before any tensor is handed out,
/// so a truncated download is reported instead of crashing on a page fault.
public final class SafetensorsFile: @unchecked Sendable {
    public struct Entry: Sendable {
        public let dtypeName: String
        public let shape: [Int]
        public let begin: Int
        public let end: Int
    }

    public let path: String
    public let entries: [String: Entry]
    private let file: MappedFile
    private let dataStart: Int

    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        let name = (path as NSString).lastPathComponent
        guard file.byteCount >= 8 else {
            throw TensorError.corrupt(file: name, reason: "file is \(file.byteCount) bytes, shorter than the 8-byte header length (truncated?)")
        }
        let headerLength = Int(UInt64(littleEndian: file.base.loadUnaligned(as: UInt64.self)))
        guard headerLength > 0, headerLength <= file.byteCount - 8 else {
            throw TensorError.corrupt(file: name, reason: "header length \(headerLength) exceeds the file size \(file.byteCount) (truncated?)")
        }
        dataStart = 8 + headerLength
        let headerBytes = Data(bytes: file.base + 8, count: headerLength)
        guard let json = try? JSONSerialization.jsonObject(with: headerBytes) as? [String: Any] else {
            throw TensorError.corrupt(file: name, reason: "the JSON header does not parse")
        }
        let dataLength = file.byteCount - dataStart
        var parsed: [String: Entry] = [:]
        for (tensorName, value) in json where tensorName != "__metadata__" {
            guard let fields = value as? [String: Any],
                  let dtypeName = fields["dtype"] as? String,
                  let shape = fields["shape"] as? [Int],
                  let offsets = fields["data_offsets"] as? [Int], offsets.count == 2 else {
                throw TensorError.corrupt(file: name, reason: "entry '\(tensorName)' lacks dtype, shape or data_offsets")
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, begin <= end, end <= dataLength else {
                throw TensorError.corrupt(file: name, reason: "tensor '\(tensorName)' spans bytes \(begin)..<\(end) but the data section has \(dataLength) bytes (truncated?)")
            }
            guard shape.allSatisfy({ $0 >= 0 }) else {
                throw TensorError.corrupt(file: name, reason: "tensor '\(tensorName)' has a negative dimension in \(shape)")
            }
            if let dtype = DType(rawValue: dtypeName) {
                let expectedBytes = shape.reduce(1, *) * dtype.byteSize
                guard expectedBytes == end - begin else {
                    throw TensorError.corrupt(file: name, reason: "tensor '\(tensorName)' has \(end - begin) bytes but shape \(shape) of \(dtypeName) needs \(expectedBytes)")
                }
            }
            parsed[tensorName] = Entry(dtypeName: dtypeName, shape: shape, begin: begin, end: end)
        }
        entries = parsed
    }

    public func tensor(_ name: String) throws -> TensorView {
        guard let entry = entries[name] else {
            throw TensorError.missingTensor(name: name, file: (path as NSString).lastPathComponent)
        }
        guard let dtype = DType(rawValue: entry.dtypeName) else {
            throw TensorError.unsupportedDType(name: name, dtype: entry.dtypeName)
        }
        return TensorView(name: name, dtype: dtype, shape: entry.shape, data: file.base + dataStart + entry.begin, owner: file)
    }

    /// A tensor of bytes ("U8": MXFP4 blocks and scales), whatever the DType list holds.
    public func byteTensor(_ name: String) throws -> ByteTensor {
        guard let entry = entries[name] else {
            throw TensorError.missingTensor(name: name, file: (path as NSString).lastPathComponent)
        }
        guard entry.dtypeName == "U8", entry.end - entry.begin == entry.shape.reduce(1, *) else {
            throw TensorError.unsupportedDType(name: name, dtype: entry.dtypeName + " (expected U8)")
        }
        return ByteTensor(name: name, shape: entry.shape,
                          data: (file.base + dataStart + entry.begin).assumingMemoryBound(to: UInt8.self), owner: file)
    }
}

/// Raw bytes of a checkpoint tensor (MXFP4 blocks and scales).
public struct ByteTensor: @unchecked Sendable {
    public let name: String
    public let shape: [Int]
    public let data: UnsafePointer<UInt8>
    public let owner: AnyObject

    /// The `index`-th slice along the first axis.
    public func slice(_ index: Int) -> ByteTensor {
        let inner = Array(shape.dropFirst())
        return ByteTensor(name: "\(name)[\(index)]", shape: inner, data: data + index * inner.reduce(1, *), owner: owner)
    }
}
