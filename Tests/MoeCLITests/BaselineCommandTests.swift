import Foundation
import MoeTestSupport
import XCTest

/// Baseline runs: `moerec baseline` fits and stores both reference classifiers, a study
/// fits them for the data it fine-tunes on, and reports show them as reference rows.
final class BaselineCommandTests: XCTestCase {
    func testBaselinesAreStoredCachedAndReproducible() throws {
        let store = StoreUnderTest.fresh("cli-baseline")
        defer { store.remove() }
        let root = store.dir.deletingLastPathComponent()
        let data = try Fixtures.writeData(in: root)
        let config = try write(Fixtures.finetuneConfig(task: data.task, parent: "0"), to: root.appendingPathComponent("ft.json"))

        // Bad input first: nothing is created.
        let pretrain = try store.moerec(["baseline", "--set", "steps=3"])
        XCTAssertEqual(pretrain.status, 2, pretrain.stderr)
        XCTAssertTrue(pretrain.stderr.contains("kind=finetune"), pretrain.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: store.database.path), "bad input created the store")

        func measure() throws -> [String: Any] {
            let r = try store.moerec(["baseline", config.path, "--format", "json"])
            XCTAssertEqual(r.status, 0, r.stderr)
            return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        }
        var first = try measure()
        XCTAssertEqual(first["train_size"] as? Int, 128)
        XCTAssertEqual(first["majority_cached"] as? Bool, false)
        XCTAssertEqual(first["linear_cached"] as? Bool, false)
        for key in ["majority_val_acc", "majority_test_acc", "linear_val_acc", "linear_test_acc"] {
            let v = try XCTUnwrap(first[key] as? Double, key)
            XCTAssertTrue(v >= 0 && v <= 1, "\(key)=\(v)")
        }
        // The generated task's label is a function of its words: the linear classifier learns it.
        XCTAssertGreaterThan(try XCTUnwrap(first["linear_val_acc"] as? Double), 0.9)
        var second = try measure()
        XCTAssertEqual(second["majority_cached"] as? Bool, true)
        XCTAssertEqual(second["linear_cached"] as? Bool, true)
        for key in ["majority_cached", "linear_cached"] { first[key] = nil; second[key] = nil }
        XCTAssertEqual(NSDictionary(dictionary: second), NSDictionary(dictionary: first), "the cached runs read back differently")

        let listed = try store.runs(where: "kind=baseline")
        XCTAssertEqual(Set(listed.compactMap { $0["hash"] as? String }),
                       Set([first["majority_hash"], first["linear_hash"]].compactMap { $0 as? String }))
        XCTAssertTrue(listed.allSatisfy { $0["status"] as? String == "completed" && $0["parent"] is NSNull })
        let table = try store.moerec(["runs", "--where", "kind=baseline"])
        XCTAssertTrue(table.stdout.contains("linear") && table.stdout.contains("majority"), table.stdout)

        let linear = try XCTUnwrap(first["linear_hash"] as? String)
        let reproduced = try store.moerec(["reproduce", linear, "--format", "json"])
        XCTAssertEqual(reproduced.status, 0, reproduced.stdout + reproduced.stderr)
        XCTAssertTrue(reproduced.stdout.contains("\"identical\":true"), reproduced.stdout)
        let verified = try store.moerec(["verify"])
        XCTAssertEqual(verified.status, 0, verified.stdout + verified.stderr)

        // An edited score is caught by reproduce.
        try store.sqlWrite("UPDATE metrics SET value = value + 0.5 WHERE run_id = (SELECT id FROM runs WHERE hash = '\(linear)') AND split = 1")
        let tampered = try store.moerec(["reproduce", linear, "--format", "json"])
        XCTAssertEqual(tampered.status, 1, tampered.stdout + tampered.stderr)
    }

    /// A study with two parts and a `parent.seed` axis: one sweep per part, two pretraining
    /// parents, the baselines of its data stored and shown as reference rows (and lines in
    /// the HTML charts), and the time breakdown of its runs.
    func testStudyStoresBaselinesAndReportsShowThem() throws {
        let store = StoreUnderTest.fresh("cli-study-baselines")
        defer { store.remove() }
        let root = store.dir.deletingLastPathComponent()
        let data = try Fixtures.writeData(in: root)
        let pretrain = try write(Fixtures.pretrainConfig(corpus: data.corpus, steps: 20), to: root.appendingPathComponent("pt.json"))
        let ft = try write(Fixtures.finetuneConfig(task: data.task, parent: pretrain.path, steps: 20),
                           to: root.appendingPathComponent("ft.json"))
        let r = try store.moerec(["sweep", ft.path, "--grid", "regime=all,attention", "--grid", "parent.seed=0,1",
                                  "--jobs", "2", "--table", "regimes"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("2 of 2 pretraining parents to train"), r.stderr)
        XCTAssertEqual(store.count("SELECT count(*) FROM runs WHERE kind = 'pretrain' AND status = 'completed'"), 2)
        XCTAssertEqual(store.count("SELECT count(DISTINCT json_extract(config_json, '$.seed')) FROM runs WHERE kind = 'pretrain'"), 2)
        XCTAssertEqual(store.count("SELECT count(*) FROM runs WHERE kind = 'finetune' AND status = 'completed'"), 4)
        // One seed: one majority and one linear run, members of the sweep.
        XCTAssertEqual(store.count("SELECT count(*) FROM runs WHERE kind = 'baseline' AND status = 'completed'"), 2)
        XCTAssertEqual(store.count("SELECT count(*) FROM sweep_members m JOIN runs r ON r.hash = m.run_hash WHERE r.kind = 'baseline'"), 2)
        XCTAssertTrue(r.stdout.contains("majority") && r.stdout.contains("linear"), r.stdout)
        XCTAssertTrue(r.stdout.contains("reference"), r.stdout)

        let json = try store.moerec(["report", "--table", "regimes", "--format", "json"])
        XCTAssertEqual(json.status, 0, json.stderr)
        XCTAssertTrue(json.stdout.contains("\"reference_rows\""), json.stdout)
        XCTAssertTrue(json.stdout.contains("\"linear\""), json.stdout)
        let html = try store.moerec(["report", "--table", "regimes", "--format", "html"])
        XCTAssertEqual(html.status, 0, html.stderr)
        XCTAssertTrue(html.stdout.contains("linear baseline (validation)"), "no baseline line in the HTML charts")

        let time = try store.moerec(["bench", "study", "--where", "sweep=1", "--format", "json"])
        XCTAssertEqual(time.status, 0, time.stderr)
        let fields = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(time.stdout.utf8)) as? [String: Any], time.stdout)
        let runs = try XCTUnwrap(fields["runs"] as? Int)
        XCTAssertEqual(runs, 2 + 4 + 2, "parents, cells and baselines of the sweep")
        var total = 0.0
        for key in ["training", "evaluation", "checkpoints", "other_in_runs", "other_runs", "outside_runs"] {
            let seconds = try XCTUnwrap(fields["\(key)_s"] as? Double, key)
            XCTAssertGreaterThanOrEqual(seconds, 0, key)
            total += seconds
        }
        XCTAssertGreaterThan(try XCTUnwrap(fields["training_s"] as? Double), 0)
        XCTAssertGreaterThan(try XCTUnwrap(fields["evaluation_s"] as? Double), 0)
        XCTAssertEqual(total, try XCTUnwrap(fields["core_s"] as? Double), accuracy: 0.01 * total + 0.01,
                       "the parts add up to the core time")
    }
}
