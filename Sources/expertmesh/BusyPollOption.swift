import ArgumentParser

/// `--busy-poll` of the coordinator, pipeline stages and workers.
struct BusyPollOption: ParsableArguments {
    @Option(help: ArgumentHelp("""
        Microseconds to wait for a worker's reply (coordinator, stage) or for the next request after a \
        reply (worker) by polling without sleeping, before the thread sleeps: a message that lands \
        meanwhile costs no thread wake-up (0.1–0.2 ms each on the machines we measured). Only where the \
        process has a core to itself; processes sharing cores lose theirs to it, and far more than it \
        saves. Default: 0 (sleep at once).
        """, valueName: "MICROSECONDS"))
    var busyPoll = 0

    func validate() throws {
        guard (0...100_000).contains(busyPoll) else { throw ValidationError("--busy-poll must be 0 to 100000 microseconds") }
    }

    var seconds: Double { Double(busyPoll) * 1e-6 }
}
