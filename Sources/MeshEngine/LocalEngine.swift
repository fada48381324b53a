import Foundation
import MeshModels

/// A whole model in one process: dense weights and every expert, checked against config.json.
public final class LocalEngine {
    public let model: LoadedModel
    public let generator: Generator<LocalExpertBackend>

    public var spec: ModelSpec { model.spec }

    public init(directory: URL) throws {
        model = try LoadedModel(directory: directory)
        let experts = try model.loadAllExpertsChecked()
        generator = Generator(Transformer(spec: model.spec, weights: model.dense, backend: LocalExpertBackend(experts: experts)))
    }
}
