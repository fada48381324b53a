import MeshTensors

/// The layers other processes hold: the pipeline stages after this one (`expertmesh stage`).
/// A micro-batch's hidden states go through all of them, in order, and come back. The
/// coordinator implements this over the network; the model knows no sockets.
public protocol LaterStages: AnyObject {
    /// Steps the engine keeps in flight at once, each over other sequences: with one per stage,
    /// every stage has a step to run (vLLM's virtual engines), where one step at a time leaves all
    /// but one stage idle.
    var stepsInFlight: Int { get }
    /// Micro-batches a step is cut into, so that this process runs one while the later stages
    /// run those before it (1: steps are not cut).
    var microBatches: Int { get }
    /// Sends a micro-batch's hidden states x [T, H] (after this process's layers) on and returns
    /// at once, with a ticket for `collect`.
    func dispatch(_ x: Matrix, batch: ForwardBatch) throws -> Int
    /// Waits for the micro-batch sent as `ticket`: its hidden states [T, H] after the last layer.
    func collect(_ ticket: Int) throws -> Matrix
    /// Changes whenever a later stage's KV cache was lost (it restarted): what the cache held
    /// for running sequences and cached prefixes is gone there.
    var cacheEpoch: Int { get }
}
