import MeshTensors

/// One MoE layer's routed work: tokens [T, H] with their routes.
public struct ExpertRequest: Sendable {
    public var layer: Int
    public var input: Matrix
    public var routes: [TokenRoute]
    public var placement: RoutingWeightPlacement

    public init(layer: Int, input: Matrix, routes: [TokenRoute], placement: RoutingWeightPlacement) {
        self.layer = layer
        self.input = input
        self.routes = routes
        self.placement = placement
    }
}

/// The seam between the forward pass and wherever the routed experts live (this process, or
/// workers across the network). `dispatch` starts the work and returns at once if it can;
/// the engine runs the shared expert, then `combine` adds the routed results into `output`.
public protocol ExpertBackend: AnyObject {
    associatedtype Pending
    func dispatch(_ request: ExpertRequest) throws -> Pending
    /// output[T, H] += Σ over each token's experts of its weighted expert output.
    func combine(_ pending: Pending, into output: Matrix) throws
}

/// Experts held in this process.
public final class LocalExpertBackend: ExpertBackend {
    public let experts: [ExpertKey: MLPWeights]

    public init(experts: [ExpertKey: MLPWeights]) { self.experts = experts }

    public func dispatch(_ request: ExpertRequest) throws -> ExpertRequest { request }

    public func combine(_ request: ExpertRequest, into output: Matrix) throws {
        output.add(try ExpertCompute.run(request) { expert in self.experts[ExpertKey(layer: request.layer, expert: expert)] })
    }
}

/// The expert computation itself, shared by the local backend and the workers.
public enum ExpertCompute {
    public struct MissingExpert: Error, CustomStringConvertible {
        public let key: ExpertKey
        public var description: String { "\(key) is not held here" }
    }

    /// Gathers the tokens of each expert, runs the expert MLP as one batched product per expert
    /// ([n, H] → [n, I] → [n, H]), weights it and sums per token. Returns [T, H] partial sums.
    public static func run(_ request: ExpertRequest, lookup: (Int) -> MLPWeights?) throws -> Matrix {
        let hidden = request.input.columns
        let result = Matrix(rows: request.input.rows, columns: hidden)
        // expert -> [(token, weight)], experts in ascending order (transformers' loop order).
        var assignments: [Int: [(token: Int, weight: Float)]] = [:]
        for (token, route) in request.routes.enumerated() {
            for (expert, weight) in zip(route.experts, route.weights) { assignments[expert, default: []].append((token, weight)) }
        }
        for expert in assignments.keys.sorted() {
            guard let weights = lookup(expert) else { throw MissingExpert(key: ExpertKey(layer: request.layer, expert: expert)) }
            let members = assignments[expert]!
            let gathered = Matrix(rows: members.count, columns: hidden)    // [n, H]
            for (row, member) in members.enumerated() {
                let source = request.input.row(member.token)
                let target = gathered.row(row)
                let scale = request.placement == .input ? member.weight : 1
                for j in 0..<hidden { target[j] = source[j] * scale }
            }
            let expertOut = Matrix(rows: members.count, columns: hidden)   // [n, H]
            weights.forward(gathered.data, rows: members.count, into: expertOut.data, accumulate: false)
            for (row, member) in members.enumerated() {
                axpy(request.placement == .output ? member.weight : 1, expertOut.row(row), result.row(member.token), hidden)
            }
        }
        return result
    }
}
