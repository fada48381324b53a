import ArgumentParser

/// The `expertmesh` command line: one subcommand per service or tool.
struct ExpertMeshCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "expertmesh",
        abstract: "Serve Mixture-of-Experts language models across machines by expert parallelism.",
        discussion: """
        Examples:
          expertmesh generate --model ./Tests/Fixtures/models/mixtral \\
              --prompt "Hello" --max-tokens 8
          expertmesh tokenize --model ./Tests/Fixtures/models/mixtral \\
              --text "Hello world"
          expertmesh bench --model ./bench-models/mixtral-1b-bf16
        """,
        subcommands: [Generate.self, ChatTemplateCommand.self, Serve.self, Coordinator.self, StageCommand.self, WorkerCommand.self, Status.self, Keygen.self, Tokenize.self, Detokenize.self, Bench.self, BenchServe.self, BenchExchange.self, Plan.self, Perplexity.self, BenchEcho.self])
}

ExpertMeshCommand.main()
