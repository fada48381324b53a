import MeshModels
import MeshTensors

/// Identifies a model's weights without reading them: FNV-1a 64 over the architecture,
/// dimensions and every tensor's name, dtype and shape. Coordinator and workers compare it
/// so a worker with a different local copy is refused at hello.
public enum ModelFingerprint {
    public static func of(_ model: LoadedModel) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ text: String) {
            for byte in text.utf8 {
                hash ^= UInt64(byte)
                hash = hash &* 0x0000_0100_0000_01B3
            }
        }
        let spec = model.spec
        mix("\(spec.modelType) v\(spec.vocabSize) h\(spec.hiddenSize) l\(spec.layerCount) ")
        for name in model.checkpoint.tensorNames {
            if let tensor = try? model.checkpoint.peek(name) { mix("\(name):\(tensor.dtypeName):\(tensor.shape);") }
        }
        return "\(spec.modelType)-\(String(hash, radix: 16))"
    }
}
