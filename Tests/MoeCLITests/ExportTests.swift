import Foundation
import MoeTestSupport
import XCTest

/// `moerec export`: parameters as safetensors (every tensor's bytes are the checkpoint
/// object its manifest names), metric points as CSV and JSON Lines, refusals.
final class ExportTests: XCTestCase {
    func testSafetensorsHoldTheCheckpointsTensorsByteForByte() throws {
        let lineage = try Lineage.shared()
        let dir = TestSupport.temporaryDirectory("export")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("model.safetensors")
        let result = try lineage.store.moerec(["export", String(lineage.attention.prefix(8)), "--format", "safetensors", "--out", file.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        let bytes = try Data(contentsOf: file)
        let headerLength = Int(bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self).littleEndian })
        var header = try XCTUnwrap(try JSONSerialization.jsonObject(with: bytes.subdata(in: 8..<(8 + headerLength))) as? [String: Any])
        let metadata = try XCTUnwrap(header.removeValue(forKey: "__metadata__") as? [String: String])
        XCTAssertEqual(metadata["moerec_run"], lineage.attention)
        let config = try String(contentsOf: dir.appendingPathComponent("model.config.json"), encoding: .utf8)
        XCTAssertEqual(metadata["moerec_config"].map { $0 + "\n" }, config)
        // The manifest of the exported checkpoint: each tensor's SHA-256 and shape.
        let manifestJSON = try lineage.store.sql("""
            SELECT manifest_json FROM checkpoints c JOIN runs r ON r.id = c.run_id WHERE r.hash = '\(lineage.attention)'
            AND c.step = \(metadata["moerec_step"] ?? "-1")
            """)
        let manifest = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(manifestJSON.utf8)) as? [String: Any])
        let entries = try XCTUnwrap(manifest["tensors"] as? [[String: Any]])
        XCTAssertEqual(Set(header.keys), Set(entries.compactMap { $0["name"] as? String }))
        let data = bytes.subdata(in: (8 + headerLength)..<bytes.count)
        var files: [(name: String, sha: String)] = []
        for entry in entries {
            let name = try XCTUnwrap(entry["name"] as? String)
            let info = try XCTUnwrap(header[name] as? [String: Any])
            XCTAssertEqual(info["dtype"] as? String, "F32")
            XCTAssertEqual(info["shape"] as? [Int], entry["shape"] as? [Int], name)
            let range = try XCTUnwrap(info["data_offsets"] as? [Int])
            let tensorFile = dir.appendingPathComponent("tensor-\(files.count)")
            try data.subdata(in: range[0]..<range[1]).write(to: tensorFile)
            files.append((tensorFile.path, try XCTUnwrap(entry["sha256"] as? String)))
        }
        let sums = try Self.sha256sum(files.map(\.name))
        for (file, expected) in files { XCTAssertEqual(sums[file], expected, file) }

        // Refusals: an existing file, a step without a checkpoint, no --out.
        let again = try lineage.store.moerec(["export", lineage.attention, "--format", "safetensors", "--out", file.path])
        XCTAssertEqual(again.status, 2, again.stderr)
        let noStep = try lineage.store.moerec(["export", lineage.attention, "--format", "safetensors", "--step", "7",
                                              "--out", dir.appendingPathComponent("x.safetensors").path])
        XCTAssertEqual(noStep.status, 2, noStep.stderr)
        XCTAssertTrue(noStep.stderr.contains("--step 7") && noStep.stderr.contains("steps:"), noStep.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("x.safetensors").path))
        XCTAssertEqual(try lineage.store.moerec(["export", lineage.attention, "--format", "safetensors"]).status, 2)
    }

    /// The NumPy reference's own safetensors parser reads an exported sparse run back with
    /// every tensor's bytes identical to its checkpoint object (SHA-256 per tensor).
    func testTheReferenceParserReadsAnExportedRunByteForByte() throws {
        _ = try NumPyReference.python()
        let lineage = try Lineage.shared()
        let dir = TestSupport.temporaryDirectory("export-reference")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("moe.safetensors")
        let result = try lineage.store.moerec(["export", lineage.moeParent, "--format", "safetensors", "--out", file.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        let manifestJSON = try lineage.store.sql("""
            SELECT manifest_json FROM checkpoints c JOIN runs r ON r.id = c.run_id WHERE r.hash = '\(lineage.moeParent)'
            ORDER BY c.step DESC LIMIT 1
            """)
        let manifest = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(manifestJSON.utf8)) as? [String: Any])
        let entries = try XCTUnwrap(manifest["tensors"] as? [[String: Any]])
        var expected: [String: String] = [:]
        for entry in entries { expected[try XCTUnwrap(entry["name"] as? String)] = try XCTUnwrap(entry["sha256"] as? String) }
        XCTAssertTrue(expected.keys.contains("layers.1.router.w"), "the exported run is sparse")
        XCTAssertEqual(try NumPyReference.digests(of: file), expected)
    }

    func testMetricPointsAsCSVAndJSONLines() throws {
        let lineage = try Lineage.shared()
        let csv = try lineage.store.moerec(["export", lineage.ffn, "--format", "csv"])
        XCTAssertEqual(csv.status, 0, csv.stderr)
        let lines = csv.stdout.split(separator: "\n")
        XCTAssertEqual(lines.first, "run,step,split,name,value")
        let points = try lineage.store.sql("SELECT count(*) FROM metrics m JOIN runs r ON r.id = m.run_id WHERE r.hash = '\(lineage.ffn)'")
        XCTAssertEqual(String(lines.count - 1), points)
        XCTAssertTrue(lines.dropFirst().allSatisfy { $0.hasPrefix(lineage.ffn + ",") })
        let jsonl = try lineage.store.moerec(["export", "--where", "kind=finetune", "--format", "jsonl"])
        XCTAssertEqual(jsonl.status, 0, jsonl.stderr)
        let rows = try jsonl.stdout.split(separator: "\n").map {
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        XCTAssertEqual(Set(rows.compactMap { $0["run"] as? String }), [lineage.attention, lineage.ffn])
        XCTAssertTrue(rows.allSatisfy { $0["step"] is Int && $0["split"] is String && $0["name"] is String })
        XCTAssertEqual(try lineage.store.moerec(["export", lineage.ffn, "--where", "kind=finetune", "--format", "csv"]).status, 2)
    }

    /// `sha256sum` of the files, by path.
    static func sha256sum(_ paths: [String]) throws -> [String: String] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        process.arguments = paths
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        var sums: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            if parts.count == 2 { sums[String(parts[1].trimmingCharacters(in: .whitespaces))] = String(parts[0]) }
        }
        return sums
    }
}
