import ArgumentParser
import Foundation

/// A failure at run time (not a usage mistake): printed as one `error:` line, exit status 1.
struct CommandError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs `body`; any error becomes one line on stderr and exit status 1 (no stack trace).
func reportingErrors<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as ExitCode {
        throw error
    } catch let error as ValidationError {
        throw error
    } catch {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// Parses "5,17,42" into token ids.
func parseTokenList(_ text: String, option: String) throws -> [Int] {
    let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    var ids: [Int] = []
    for part in parts {
        guard let id = Int(part), id >= 0 else {
            throw ValidationError("\(option): '\(part)' is not a token id; give comma-separated non-negative integers, e.g. 5,17,42")
        }
        ids.append(id)
    }
    guard !ids.isEmpty else { throw ValidationError("\(option) is empty; give comma-separated token ids, e.g. 5,17,42") }
    return ids
}

/// JSON text of a value built from dictionaries, arrays, strings and numbers (keys sorted).
func jsonText(_ object: Any) -> String {
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
    return String(decoding: data, as: UTF8.self)
}
