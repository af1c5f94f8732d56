import Foundation
import MoeCheckpoint
import XCTest

final class ManifestTests: XCTestCase {
    private let shaA = String(repeating: "a", count: 64)
    private let shaB = String(repeating: "b", count: 64)

    private func smallManifest(state: [String: String]) -> CheckpointManifest {
        CheckpointManifest(
            runHash: "abc123", step: 7,
            tensors: [TensorEntry(name: "w", shape: [2], group: "ffn", sha256: shaA, rawSize: 8, storedSize: 16)],
            optimizer: [], optimizerStep: 7, state: state, configJSON: #"{"lr":0.001}"#)
    }

    func testJSONIsCompactWithSortedKeys() {
        let json = smallManifest(state: ["rng": "3", "loader": "12"]).jsonString()
        let expected = #"{"config_json":"{\"lr\":0.001}","format_version":1,"optimizer":[],"optimizer_step":7,"#
            + #""run_hash":"abc123","state":{"loader":"12","rng":"3"},"step":7,"tensors":[{"dtype":"f32","#
            + #""group":"ffn","name":"w","raw_size":8,"sha256":"\#(shaA)","shape":[2],"stored_size":16}]}"#
        XCTAssertEqual(json, expected)
    }

    func testEqualManifestsGiveEqualBytes() {
        // Dictionaries built in different orders (and so, usually, iterated differently).
        var first: [String: String] = [:]
        var second: [String: String] = [:]
        let keys = (0..<50).map { "key\($0)" }
        for key in keys { first[key] = key.uppercased() }
        for key in keys.reversed() { second[key] = key.uppercased() }
        XCTAssertEqual(smallManifest(state: first).jsonString(), smallManifest(state: second).jsonString())
        XCTAssertNotEqual(smallManifest(state: first).jsonString(), smallManifest(state: ["key0": "x"]).jsonString())
    }

    func testJSONRoundTrip() throws {
        let dir = try TemporaryDirectory()
        let store = ObjectStore(root: dir.objects)
        let (manifest, _) = try FlatModel(seed: 4).write(to: store, runHash: "f00d", step: 1234)
        let decoded = try CheckpointManifest(json: manifest.jsonString())
        XCTAssertEqual(decoded, manifest)
        XCTAssertEqual(decoded.jsonString(), manifest.jsonString())
        XCTAssertEqual(decoded.state["loader.position"], "39488")
        XCTAssertEqual(decoded.configJSON, #"{"d_model":16,"experts":4}"#)
    }

    func testInvalidManifestsAreRefused() throws {
        let good = smallManifest(state: [:])
        var future = good
        future.formatVersion = CheckpointManifest.currentFormatVersion + 1
        var traversal = good
        traversal.tensors[0].sha256 = "../../../../../../etc/passwd"
        var sizeDisagrees = good
        sizeDisagrees.tensors[0].rawSize = 12
        var duplicate = good
        duplicate.optimizer = [good.tensors[0]]
        var otherType = good
        otherType.tensors[0].dtype = "bf16"

        for (label, manifest) in [("future", future), ("traversal", traversal), ("size", sizeDisagrees),
                                  ("duplicate", duplicate), ("dtype", otherType)] {
            guard case .invalidManifest? = assertCheckpointError(try CheckpointManifest(json: manifest.jsonString())) else {
                return XCTFail("\(label) manifest must be refused")
            }
        }
        guard case .invalidManifest? = assertCheckpointError(try CheckpointManifest(json: "{\"step\": 1}")) else {
            return XCTFail("incomplete JSON must be refused")
        }
        XCTAssertEqual(try CheckpointManifest(json: good.jsonString()), good)
    }

    // MARK: Parameter digest

    func testDigestFollowsTheDocumentedEncoding() {
        var manifest = smallManifest(state: [:])
        manifest.tensors = [
            TensorEntry(name: "embed.wte", shape: [2], group: "embed", sha256: shaA, rawSize: 8, storedSize: 9),
            TensorEntry(name: "head.w", shape: [2], group: "head", sha256: shaB, rawSize: 8, storedSize: 9),
        ]
        // Computed outside Swift: sha256(b"embed.wte\0" + a*64 + b"\n" + b"head.w\0" + b*64 + b"\n").
        XCTAssertEqual(manifest.parameterDigest, "bdd5d37fd7c666a7874a04dc9c95b7df3b4f1fc07b3546235491d5a4d113dd64")
    }

    func testIdenticalParametersGiveIdenticalDigests() throws {
        let dir = try TemporaryDirectory()
        let store = ObjectStore(root: dir.objects)
        let model = FlatModel(seed: 5)
        let (first, _) = try model.write(to: store, runHash: "run-1", step: 10)
        // Another run, step and optimizer state; the same parameter bytes.
        for i in model.m.indices { model.m[i] += 1 }
        let (second, _) = try model.write(to: store, runHash: "run-2", step: 20, trainable: ["head.w"])
        XCTAssertNotEqual(first, second)
        XCTAssertEqual(first.parameterDigest, second.parameterDigest)

        // One sign bit (0.0 → -0.0 compares equal as a Float, but is other bytes).
        model.parameters[5] = 0.0
        let (positiveZero, _) = try model.write(to: store)
        model.parameters[5] = -0.0
        let (negativeZero, _) = try model.write(to: store)
        XCTAssertNotEqual(positiveZero.parameterDigest, negativeZero.parameterDigest)

        // Same bytes under another name, or in another order.
        var renamed = first
        renamed.tensors[0].name = "embed.wpe"
        XCTAssertNotEqual(renamed.parameterDigest, first.parameterDigest)
        var reordered = first
        reordered.tensors.swapAt(0, 1)
        XCTAssertNotEqual(reordered.parameterDigest, first.parameterDigest)

        // Optimizer state and the stored sizes (which depend on the zlib level) do not count.
        var resized = first
        resized.tensors[0].storedSize += 1
        resized.optimizer = []
        XCTAssertEqual(resized.parameterDigest, first.parameterDigest)
    }
}

final class BenchmarkTests: XCTestCase {
    func testBenchmarkReportsEachLevel() throws {
        let dir = try TemporaryDirectory()
        let results = try CheckpointBenchmark.measure(
            tensorBytes: [256 << 10, 100_000], levels: [1, 9], repetitions: 1, scratchDirectory: dir.url)
        XCTAssertEqual(results.map(\.level), [1, 9, 6])
        XCTAssertEqual(results.map(\.strategy), [.standard, .standard, .huffmanOnly])
        for result in results {
            XCTAssertEqual(result.rawBytes, (256 << 10) + 100_000)
            // N(0, 0.02) floats: the sign/exponent byte is predictable, the mantissa is not,
            // so zlib gains a little but far from 2x.
            XCTAssertGreaterThan(result.compressionRatio, 1.01)
            XCTAssertLessThan(result.compressionRatio, 1.5)
            for speed in [result.compressMBps, result.decompressMBps, result.putMBps, result.getMBps] {
                XCTAssertTrue(speed.isFinite && speed > 0, "\(result)")
            }
        }
        XCTAssertLessThanOrEqual(results[1].storedBytes, results[0].storedBytes)
        XCTAssertEqual(dir.files(under: dir.url), [], "the benchmark cleans up its stores")
    }
}

/// Each entry carries a digest binding its object to its name, shape and size, and the
/// manifest the parameter digest it was written with: a swap of two same-size tensors'
/// objects passes every object check but not these.
final class ManifestBindingTests: XCTestCase {
    func testWrittenManifestIsBoundAndAnySwapIsNamed() throws {
        let dir = try TemporaryDirectory()
        let store = ObjectStore(root: dir.objects)
        let (manifest, _) = try FlatModel(seed: 7).write(to: store, runHash: "f00d", step: 3)
        XCTAssertTrue(manifest.bindingProblems.isEmpty)
        XCTAssertEqual(manifest.recordedParameterDigest, manifest.parameterDigest)
        let decoded = try CheckpointManifest(json: manifest.jsonString())
        XCTAssertTrue(decoded.bindingProblems.isEmpty)

        let entries = manifest.tensors + manifest.optimizer
        var pairs = 0
        for i in entries.indices {
            for j in entries.indices where i < j && entries[i].rawSize == entries[j].rawSize && entries[i].sha256 != entries[j].sha256 {
                var swapped = manifest
                func setObject(_ name: String, _ sha: String) {
                    if let k = swapped.tensors.firstIndex(where: { $0.name == name }) { swapped.tensors[k].sha256 = sha }
                    if let k = swapped.optimizer.firstIndex(where: { $0.name == name }) { swapped.optimizer[k].sha256 = sha }
                }
                setObject(entries[i].name, entries[j].sha256)
                setObject(entries[j].name, entries[i].sha256)
                let named = Set(swapped.bindingProblems.compactMap(\.tensor))
                XCTAssertEqual(named, [entries[i].name, entries[j].name])
                XCTAssertThrowsError(try readCheckpoint(objects: store, manifest: swapped) { _ in nil })
                pairs += 1
            }
        }
        XCTAssertGreaterThan(pairs, 0, "the fixture has no same-size pair")
    }

    func testManifestWithoutDigestsStillReadsAndVerifies() throws {
        let dir = try TemporaryDirectory()
        let store = ObjectStore(root: dir.objects)
        var (manifest, _) = try FlatModel(seed: 8).write(to: store, runHash: "f00d", step: 3)
        manifest.recordedParameterDigest = nil
        for k in manifest.tensors.indices { manifest.tensors[k].digest = nil }
        for k in manifest.optimizer.indices { manifest.optimizer[k].digest = nil }
        let json = manifest.jsonString()
        XCTAssertFalse(json.contains("digest"), "a manifest written before digests has none")
        let old = try CheckpointManifest(json: json)
        XCTAssertTrue(old.bindingProblems.isEmpty)
        XCTAssertTrue(verifyCheckpoint(objects: store, manifest: old).isEmpty)
        XCTAssertEqual(try readCheckpoint(objects: store, manifest: old) { _ in nil }.skipped.count,
                       old.tensors.count + old.optimizer.count)
    }

    func testEditedRecordedParameterDigestIsReported() throws {
        let dir = try TemporaryDirectory()
        var (manifest, _) = try FlatModel(seed: 9).write(to: ObjectStore(root: dir.objects), runHash: "f00d", step: 3)
        manifest.recordedParameterDigest = String(repeating: "0", count: 64)
        XCTAssertEqual(manifest.bindingProblems.count, 1)
        XCTAssertNil(manifest.bindingProblems.first?.tensor)
    }
}
