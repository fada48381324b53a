import Foundation
import XCTest

/// The committed protobuf-c code must be exactly what protoc-c makes from proto/.
final class GeneratedCodeTests: XCTestCase {
    func testCommittedProtobufCCodeMatchesProto() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardizedFileURL
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("gen-proto-\(UUID().uuidString)")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [root.appendingPathComponent("scripts/gen-proto.sh").path, output.path]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "scripts/gen-proto.sh failed")
        let committed = root.appendingPathComponent("Sources/ExpertMeshProtoC")
        for file in ["mesh.pb-c.c", "include/mesh.pb-c.h"] {
            let fresh = try String(contentsOf: output.appendingPathComponent(file), encoding: .utf8)
            let kept = try String(contentsOf: committed.appendingPathComponent(file), encoding: .utf8)
            XCTAssertEqual(fresh, kept, "\(file) differs from protoc-c's output: run scripts/gen-proto.sh and commit")
        }
    }
}
