import Foundation

/// llama.cpp's `llama-bench`, run on a GGUF file of the same model between our own runs, so both
/// programs see the same machine (the peer ExpertMesh is measured against).
struct LlamaBench {
    let binary: String
    let gguf: String
    /// How this llama-bench spells "weights in memory, not memory-mapped" (asked once).
    let loadInMemory: [String]

    init(binary: String, gguf: String) {
        self.binary = binary
        self.gguf = gguf
        loadInMemory = Self.loadInMemoryArguments(binary)
    }

    struct Figures {
        var prefill: Double
        var decode: Double
        var modelType: String
        var build: String
    }

    /// Newer llama-bench spells "no memory map" `-lm none`, older `-mmp 0`.
    static func loadInMemoryArguments(_ binary: String) -> [String] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["--help"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        guard (try? process.run()) != nil else { return ["-mmp", "0"] }
        let help = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return help.contains("--load-mode") ? ["-lm", "none"] : ["-mmp", "0"]
    }

    /// One measurement: a `promptTokens` prefill and a `decodeTokens` decode, weights loaded into
    /// memory (not memory-mapped), as our engine reads them.
    func measure(promptTokens: Int, decodeTokens: Int, threads: Int) throws -> Figures {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["-m", gguf, "-t", String(threads), "-p", String(promptTokens), "-n", String(decodeTokens),
                             "-r", "1", "-o", "json"] + loadInMemory
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        do { try process.run() } catch {
            throw CommandError("cannot run llama-bench at \(binary): \(error.localizedDescription)")
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0,
              let tests = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
            let tail = stderr.split(separator: "\n").suffix(3).joined(separator: " | ")
            throw CommandError("llama-bench failed on \(gguf) (status \(process.terminationStatus)): \(tail)")
        }
        func rate(_ isPrefill: Bool) -> Double? {
            tests.first { (($0[isPrefill ? "n_prompt" : "n_gen"] as? Int) ?? 0) > 0 }?["avg_ts"] as? Double
        }
        guard let prefill = rate(true), let decode = rate(false) else {
            throw CommandError("llama-bench on \(gguf) printed no prompt and generation figures")
        }
        return Figures(prefill: prefill, decode: decode, modelType: tests.first?["model_type"] as? String ?? "?",
                       build: tests.first?["build_commit"] as? String ?? "?")
    }
}
