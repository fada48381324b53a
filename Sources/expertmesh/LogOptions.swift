import ArgumentParser
import Foundation
import Logging

/// `--log-level` and `--log-format` of the service commands. The executable alone makes loggers;
/// the libraries log through the one they are given, with metadata (worker, layer, request…).
struct LogOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Least severe messages logged.", valueName: "trace|debug|info|notice|warning|error|critical"))
    var logLevel: Logger.Level = .info

    @Option(help: ArgumentHelp("""
        text: 'TIME [component] message key=value…' lines; json: one object a line with time, level, component, \
        message and the metadata as fields (for log collectors).
        """, valueName: "text|json"))
    var logFormat: LogLine.Format = .text

    /// The same options for a child process (spawned workers).
    var arguments: [String] { ["--log-level", logLevel.rawValue, "--log-format", logFormat.rawValue] }

    /// The logger of `component`, logging system bootstrapped on first use.
    func logger(_ component: String) -> Logger {
        LogLine.bootstrap(format: logFormat)
        var logger = Logger(label: component)
        logger.logLevel = logLevel
        return logger
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// Log lines on stderr, as text or JSON.
struct LogLine: LogHandler {
    enum Format: String, ExpressibleByArgument, Sendable {
        case text, json
    }

    private static let once = NSLock()
    nonisolated(unsafe) private static var bootstrapped = false

    static func bootstrap(format: Format) {
        once.lock()
        defer { once.unlock() }
        guard !bootstrapped else { return }
        bootstrapped = true
        LoggingSystem.bootstrap { LogLine(label: $0, format: format) }
    }

    let label: String
    let format: Format
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let time = ISO8601DateFormatter().string(from: Date())
        let fields = metadata.merging(event.metadata ?? [:]) { $1 }
        let line: String
        switch format {
        case .text:
            // Warnings and worse say so; every line names its component, then the message and its fields.
            let level = event.level >= .warning ? "\(event.level): " : ""
            let extra = fields.sorted { $0.key < $1.key }.map { " \($0.key)=\($0.value)" }.joined()
            line = "\(time) [\(label)] \(level)\(event.message)\(extra)"
        case .json:
            var object: [String: Any] = ["time": time, "level": event.level.rawValue, "component": label,
                                         "message": "\(event.message)"]
            for (key, value) in fields where object[key] == nil { object[key] = Self.json(value) }
            line = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
                .map { String(decoding: $0, as: UTF8.self) } ?? "\(event.message)"
        }
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    private static func json(_ value: Logger.Metadata.Value) -> Any {
        switch value {
        case .string(let text): return text
        case .stringConvertible(let value): return Int("\(value)") ?? Double("\(value)") ?? "\(value)"
        case .array(let values): return values.map(json)
        case .dictionary(let entries): return entries.mapValues(json)
        }
    }
}
