import Foundation
import MeshModels

/// A whole model in one process: dense weights and every expert, checked against config.json.
public final class LocalEngine {
    public let model: LoadedModel
    public let generator: Generator<LocalExpertBackend>

    public var spec: ModelSpec { model.spec }

    public init(directory: URL, formats: WeightFormats = WeightFormats()) throws {
        model = try LoadedModel(directory: directory, denseFormat: formats.dense)
        let experts = try model.loadAllExpertsChecked(format: formats.experts)
        generator = Generator(Transformer(spec: model.spec, weights: model.dense, backend: LocalExpertBackend(experts: experts)))
    }
}
