import Foundation

/// NumPy `.npy` (format 1.0, little-endian f32, C order): the logits dump format that
/// Python tools read with `numpy.load`.
public enum Npy {
    public static func encode(_ values: [Float], shape: [Int]) -> Data {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shapeText), }"
        // Magic (6) + version (2) + length (2) + header + newline must be a multiple of 64.
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        let length = UInt16(header.utf8.count)
        data.append(contentsOf: [UInt8(length & 0xFF), UInt8(length >> 8)])
        data.append(contentsOf: Array(header.utf8))
        values.withUnsafeBufferPointer { data.append(Data(buffer: $0)) }
        return data
    }

    /// Reads a `<f4` C-order array; returns values and shape.
    public static func decode(_ data: Data, name: String = "array") throws -> (values: [Float], shape: [Int]) {
        let bytes = [UInt8](data)
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1...5]) == Array("NUMPY".utf8) else {
            throw TensorError.corrupt(file: name, reason: "not a .npy file")
        }
        let major = bytes[6]
        let headerLength: Int
        let headerStart: Int
        if major == 1 {
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        } else {
            guard bytes.count >= 12 else { throw TensorError.corrupt(file: name, reason: "short .npy header") }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        }
        guard headerStart + headerLength <= bytes.count,
              let header = String(bytes: bytes[headerStart..<(headerStart + headerLength)], encoding: .ascii) else {
            throw TensorError.corrupt(file: name, reason: "truncated .npy header")
        }
        guard header.contains("'<f4'"), header.contains("'fortran_order': False") else {
            throw TensorError.corrupt(file: name, reason: "only little-endian f32 C-order arrays are supported, header: \(header)")
        }
        guard let open = header.range(of: "'shape': ("), let close = header[open.upperBound...].firstIndex(of: ")") else {
            throw TensorError.corrupt(file: name, reason: "no shape in .npy header")
        }
        let shape = header[open.upperBound..<close].split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let count = shape.reduce(1, *)
        let dataStart = headerStart + headerLength
        guard bytes.count - dataStart == count * 4 else {
            throw TensorError.corrupt(file: name, reason: "expected \(count * 4) data bytes, found \(bytes.count - dataStart)")
        }
        let values = bytes[dataStart...].withUnsafeBytes { raw in
            (0..<count).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) }
        }
        return (values, shape)
    }
}
