import Foundation

/// Writes a `.safetensors` file (used to make benchmark models and test checkpoints).
public enum SafetensorsWriter {
    public struct Entry {
        public var name: String
        /// The safetensors dtype name ("F32", "BF16", "U8", …).
        public var dtypeName: String
        public var shape: [Int]
        public var bytes: Data
        public init(name: String, dtype: DType, shape: [Int], bytes: Data) {
            self.init(name: name, dtypeName: dtype.rawValue, shape: shape, bytes: bytes)
        }
        public init(name: String, dtypeName: String, shape: [Int], bytes: Data) {
            self.name = name
            self.dtypeName = dtypeName
            self.shape = shape
            self.bytes = bytes
        }
    }

    public static func write(_ entries: [Entry], to url: URL) throws {
        var header: [String: Any] = [:]
        var offset = 0
        for entry in entries {
            header[entry.name] = ["dtype": entry.dtypeName, "shape": entry.shape, "data_offsets": [offset, offset + entry.bytes.count]]
            offset += entry.bytes.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad the header with spaces so tensor data starts 8-byte aligned.
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        var file = Data()
        var length = UInt64(json.count).littleEndian
        file.append(Data(bytes: &length, count: 8))
        file.append(json)
        for entry in entries { file.append(entry.bytes) }
        try file.write(to: url)
    }

    /// f32 values as bytes of `dtype`.
    public static func bytes(_ values: [Float], as dtype: DType) -> Data {
        var data = Data(count: values.count * dtype.byteSize)
        data.withUnsafeMutableBytes { raw in
            values.withUnsafeBufferPointer { convertFromFloat($0.baseAddress!, count: values.count, to: dtype, into: raw.baseAddress!) }
        }
        return data
    }
}
