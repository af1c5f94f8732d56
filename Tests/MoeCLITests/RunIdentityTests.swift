import Foundation
import MoeTestSupport
import XCTest

/// `moerec run`: a repeated config is a cache hit, and the run hash depends on the values
/// of the resolved config only, not on how they were written.
final class RunIdentityTests: XCTestCase {
    func testRepeatedRunIsACacheHitAndDoesNotRetrain() throws {
        let store = StoreUnderTest.fresh("cli-cache-hit")
        defer { store.remove() }
        let data = try Fixtures.writeData(in: store.dir.deletingLastPathComponent())
        let config = try write(Fixtures.pretrainConfig(corpus: data.corpus, steps: 20),
                               to: store.dir.deletingLastPathComponent().appendingPathComponent("pretrain.json"))
        let args = ["run", config.path, "--set", "checkpoint_interval=20"]

        let t0 = Date()
        let first = try store.moerec(args)
        let firstSeconds = Date().timeIntervalSince(t0)
        XCTAssertEqual(first.status, 0, first.stderr)
        let hash = try XCTUnwrap(Output.runHash(first.stdout), first.stdout)
        XCTAssertTrue(first.stdout.contains("\(hash)  completed"), first.stdout)
        XCTAssertFalse(Output.trainedSteps(of: hash, in: first.stderr).isEmpty, "the first run printed no progress: \(first.stderr)")
        let row = try store.lifecycleRow(hash), series = try store.metricSeries(hash)
        let manifests = try store.checkpointManifests(hash), objects = try objectFiles(store)
        let timings = try store.sql("SELECT count(*) FROM metric_points WHERE run_hash = '\(hash)' AND split = 'timing'")

        let t1 = Date()
        let second = try store.moerec(args)
        let secondSeconds = Date().timeIntervalSince(t1)
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertEqual(Output.runHash(second.stdout), hash)
        XCTAssertTrue(second.stdout.contains("cache hit"), second.stdout)
        XCTAssertFalse(second.stdout.contains("completed ("), second.stdout)
        XCTAssertEqual(Output.trainedSteps(of: hash, in: second.stderr), [], "the cache hit trained")
        XCTAssertLessThan(secondSeconds, firstSeconds, "the cache hit took as long as training")

        // Nothing about the run was rewritten: lifecycle, every metric point, checkpoints, objects.
        XCTAssertEqual(try store.lifecycleRow(hash), row)
        XCTAssertEqual(try store.metricSeries(hash), series)
        XCTAssertEqual(try store.sql("SELECT count(*) FROM metric_points WHERE run_hash = '\(hash)' AND split = 'timing'"), timings)
        XCTAssertEqual(try store.checkpointManifests(hash), manifests)
        XCTAssertEqual(try objectFiles(store), objects)
        let runs = try store.runs()
        XCTAssertEqual(runs.count, 1)
        XCTAssertEqual(runs.first?["hash"] as? String, hash)
        XCTAssertEqual(runs.first?["status"] as? String, "completed")
        XCTAssertEqual(runs.first?["steps"] as? Int, 20)
    }

    func testSameValuesGiveTheSameHashHoweverTheConfigIsWritten() throws {
        let store = StoreUnderTest.fresh("cli-invariance")
        defer { store.remove() }
        let dir = store.dir.deletingLastPathComponent()
        let data = try Fixtures.writeData(in: dir)
        // (key, JSON text, YAML text, --set text) of a tiny pretraining config.
        let fields: [(String, String, String, String)] = [
            ("kind", "\"pretrain\"", "pretrain", "pretrain"),
            ("corpus", "\"\(data.corpus.path)\"", data.corpus.path, data.corpus.path),
            ("context", "16", "16", "16"), ("d_model", "16", "16", "16"), ("layers", "2", "2", "2"),
            ("heads", "2", "2", "2"), ("d_ff", "32", "32", "32"), ("experts", "4", "4", "4"), ("top_k", "2", "2", "2"),
            ("steps", "4", "4", "4"), ("batch_size", "4", "4", "4"), ("eval_interval", "2", "2", "2"),
            ("eval_batches", "1", "1", "1"), ("checkpoint_interval", "100", "100", "100"), ("warmup_steps", "1", "1", "1"),
            ("lr", "0.002", "0.002", "0.002"),
        ]
        // Defaults written out, some in another spelling (an integer for a float key, 1e-3 for 0.001).
        let defaults: [(String, String, String)] = [
            ("seed", "0", "0"), ("dropout", "0.1", "0.1"), ("capacity_factor_eval", "2", "2"), ("norm", "\"layernorm\"", "layernorm"),
            ("regime", "\"all\"", "all"), ("parent", "null", "null"), ("groups", "[]", "[]"), ("moe_every", "2", "2"),
            ("aux_loss_coef", "1e-2", "0.01"), ("schedule", "\"cosine\"", "cosine"), ("vocab", "260", "260"),
        ]
        func json(_ pairs: [(String, String)]) -> String { "{" + pairs.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}" }

        let plainJSON = try write(json(fields.map { ($0.0, $0.1) }), to: dir.appendingPathComponent("plain.json"))
        let reversedYAML = try write(fields.reversed().map { "\($0.0): \($0.2)" }.joined(separator: "\n") + "\n",
                                     to: dir.appendingPathComponent("reversed.yaml"))
        let spelledOut = try write(json((fields.map { ($0.0, $0.1) } + defaults.map { ($0.0, $0.1) }).sorted { $0.0 > $1.0 }),
                                   to: dir.appendingPathComponent("defaults.json"))
        let yamlDefaults = try write((defaults.map { "\($0.0): \($0.2)" } + fields.map { "\($0.0): \($0.2)" }).joined(separator: "\n") + "\n",
                                     to: dir.appendingPathComponent("defaults.yaml"))
        let shuffled = fields.enumerated().sorted { ($0.offset * 7) % fields.count < ($1.offset * 7) % fields.count }.map(\.element)
        let sets = shuffled.flatMap { ["--set", "\($0.0)=\($0.3)"] }
        let otherSteps = try write(json(fields.map { ($0.0, $0.0 == "steps" ? "99" : $0.1) }), to: dir.appendingPathComponent("steps99.json"))

        let spellings: [(String, [String])] = [
            ("JSON file", ["run", plainJSON.path]),
            ("YAML file, keys reversed", ["run", reversedYAML.path]),
            ("--set only, keys shuffled", ["run"] + sets),
            ("JSON with defaults spelled out, keys reversed", ["run", spelledOut.path]),
            ("YAML with defaults spelled out", ["run", yamlDefaults.path]),
            ("another value overridden back by --set", ["run", otherSteps.path, "--set", "steps=4"]),
            ("--set repeating the file's value", ["run", plainJSON.path, "--set", "lr=2e-3", "--set", "seed=0"]),
        ]
        var hashes: [String: String] = [:]
        for (i, (what, args)) in spellings.enumerated() {
            let result = try store.moerec(args)
            XCTAssertEqual(result.status, 0, "\(what): \(result.stderr)")
            hashes[what] = Output.runHash(result.stdout)
            // Only the first spelling trains; every other one finds it.
            XCTAssertTrue(result.stdout.contains(i == 0 ? "completed" : "cache hit"), "\(what): \(result.stdout)")
        }
        XCTAssertEqual(Set(hashes.values).count, 1, "hashes differ: \(hashes)")
        XCTAssertEqual(hashes.count, spellings.count)
        XCTAssertEqual(try store.runs().count, 1)

        // And a value that does change is a different run.
        let changed = try store.moerec(["run", plainJSON.path, "--set", "seed=1"])
        XCTAssertEqual(changed.status, 0, changed.stderr)
        XCTAssertNotEqual(Output.runHash(changed.stdout), hashes["JSON file"])
        XCTAssertTrue(changed.stdout.contains("completed"), changed.stdout)
        XCTAssertEqual(try store.runs().count, 2)
    }

    private func objectFiles(_ store: StoreUnderTest) throws -> [String] {
        (FileManager.default.enumerator(atPath: store.objects.path)?.allObjects as? [String] ?? []).sorted()
    }
}
