import Foundation
import MoeTestSupport
import XCTest

/// `moerec import`: runs trained elsewhere become runs of the store that every table, `runs`,
/// `show`, `verify` and `merge` handle; a second import adds nothing; bad input changes
/// nothing; `reproduce` refuses them.
final class ImportTests: XCTestCase {
    /// A run log as README "Imported runs" documents it, with values known by construction:
    /// validation accuracy `base + 0.01·seed + step/2000`, test 0.01 below it.
    static func writeRunLogs(in dir: URL, regimes: [(String, Double)] = [("all", 0.50), ("attention", 0.45)],
                             seeds: [Int] = [1, 2, 3]) throws -> [URL] {
        var files: [URL] = []
        for (regime, base) in regimes {
            for seed in seeds {
                var lines = [#"{"moerec_run_log": 1, "parent": "tiny-switch", "config": {"task": "wn-supersense", "regime": "\#(regime)", "experts": 8, "seed": \#(seed), "train_size": 4096, "lr": 0.001, "steps": 200}}"#]
                for step in [0, 100, 200] {
                    let v = base + 0.01 * Double(seed) + Double(step) / 2000
                    lines.append(#"{"step": \#(step), "split": "val", "name": "acc", "value": \#(v)}"#)
                    lines.append(#"{"step": \#(step), "split": "test", "name": "acc", "value": \#(v - 0.01)}"#)
                    lines.append(#"{"step": \#(step), "split": "val", "name": "loss", "value": \#(2 - v)}"#)
                }
                let file = dir.appendingPathComponent("\(regime)-seed\(seed).jsonl")
                try (lines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
                files.append(file)
            }
        }
        return files
    }

    /// The regimes table as JSON: regime → (mean reported accuracy, completed seeds).
    static func regimes(_ store: StoreUnderTest) throws -> [String: (acc: Double, seeds: Int)] {
        let report = try store.moerec(["report", "--table", "regimes", "--format", "json"])
        guard report.status == 0 else { throw TestFailure("report: \(report.stderr)") }
        let json = try JSONSerialization.jsonObject(with: Data(report.stdout.utf8)) as? [String: Any]
        let rows = ((json?["tables"] as? [String: Any])?["regimes"] as? [String: Any])?["rows"] as? [[String: Any]] ?? []
        var table: [String: (Double, Int)] = [:]
        for row in rows {
            guard let regime = row["regime"] as? String, let acc = (row["acc"] as? [String: Any])?["mean"] as? Double else { continue }
            table[regime] = (acc, row["seeds_completed"] as? Int ?? 0)
        }
        return table
    }

    func testRunLogsImportOnceAndReportAsConstructed() throws {
        let store = StoreUnderTest.fresh("import-log")
        defer { store.remove() }
        let files = try Self.writeRunLogs(in: store.dir.deletingLastPathComponent())
        let first = try store.moerec(["import", "run-log"] + files.map(\.path))
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(first.stdout.contains("6 runs added, 0 already stored, 54 metric points"), first.stdout)
        // Best validation step is the last (200); reported accuracy is test there:
        // base + 0.01·seed + 0.1 − 0.01, mean over seeds 1–3 → base + 0.11.
        let table = try Self.regimes(store)
        XCTAssertEqual(table["all"]?.acc ?? .nan, 0.61, accuracy: 1e-12)
        XCTAssertEqual(table["attention"]?.acc ?? .nan, 0.56, accuracy: 1e-12)
        XCTAssertEqual(table["all"]?.seeds, 3)

        // Again: a cache hit for every run, nothing added.
        let again = try store.moerec(["import", "run-log"] + files.map(\.path))
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("0 runs added, 6 already stored, 0 metric points"), again.stdout)
        XCTAssertEqual(store.count("SELECT count(*) FROM runs"), 7, "6 runs and the named parent model")

        // Listed as imported; shown with their source; verify passes; reproduce refuses.
        let runs = try store.moerec(["runs"])
        XCTAssertTrue(runs.stdout.contains("imported_from") && runs.stdout.contains("run-log"), runs.stdout)
        let hash = try store.sql("SELECT hash FROM runs WHERE kind = 'finetune' ORDER BY hash LIMIT 1")
        let show = try store.moerec(["show", String(hash.prefix(10))])
        XCTAssertTrue(show.stdout.contains("imported    run-log ") && show.stdout.contains(".jsonl"), show.stdout)
        let verify = try store.moerec(["verify"])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        let reproduce = try store.moerec(["reproduce", hash])
        XCTAssertEqual(reproduce.status, 2, reproduce.stderr)
        XCTAssertTrue(reproduce.stderr.contains("imported"), reproduce.stderr)
        // The claims table says what its verdicts rest on.
        let claims = try store.moerec(["report", "--table", "claims"])
        XCTAssertTrue(claims.stdout.contains("6 runs (run-log 6)"), claims.stdout)

        // Merged into another store, they stay imported and verifiable there.
        let other = StoreUnderTest.fresh("import-merge")
        defer { other.remove() }
        XCTAssertEqual(try other.moerec(["merge", store.database.path]).status, 0)
        XCTAssertEqual(try other.sql("SELECT count(*) FROM runs WHERE import_fingerprint IS NOT NULL"), "7")
        XCTAssertEqual(try other.moerec(["verify"]).status, 0)

        // An edited value no longer hashes to the imported fingerprint.
        try store.sqlWrite("UPDATE metrics SET value = 0.99 WHERE run_id = (SELECT id FROM runs WHERE hash = '\(hash)') AND step = 200")
        let tampered = try store.moerec(["verify"])
        XCTAssertEqual(tampered.status, 1, tampered.stdout)
        XCTAssertTrue(tampered.stdout.contains("edited after the import"), tampered.stdout)
    }

    /// Bad input is exit 2 naming the file and line (or key), and nothing is written: a new
    /// store is not created, an existing one keeps its runs.
    func testBadRunLogsChangeNothing() throws {
        let store = StoreUnderTest.fresh("import-bad")
        defer { store.remove() }
        let dir = store.dir.deletingLastPathComponent()
        let good = try Self.writeRunLogs(in: dir, regimes: [("all", 0.5)], seeds: [1])[0]
        let header = #"{"moerec_run_log": 1, "config": {"task": "t", "regime": "all", "experts": 8, "seed": 1, "train_size": 64}}"#
        let cases: [(name: String, text: String, expected: [String])] = [
            ("malformed", header + "\n{\"step\": 1, \"split\": \"val\", \"name\": \"acc\", \"value\": 0.5\n", ["malformed.jsonl:2", "not a JSON object"]),
            ("no-step", header + "\n{\"split\": \"val\", \"name\": \"acc\", \"value\": 0.5}\n", ["no-step.jsonl:2", "step"]),
            ("missing-key", #"{"moerec_run_log": 1, "config": {"task": "t", "regime": "all", "experts": 8, "train_size": 64}}"# + "\n",
             ["missing-key.jsonl", "'seed' is missing"]),
            ("nan", header + "\n{\"step\": 3, \"split\": \"val\", \"name\": \"loss\", \"value\": null}\n", ["nan.jsonl:2", "val/loss is nan at step 3", "--allow-nan"]),
            ("python-nan", header + "\n{\"step\": 3, \"split\": \"val\", \"name\": \"loss\", \"value\": NaN}\n", ["python-nan.jsonl:2"]),
            ("bad-type", #"{"moerec_run_log": 1, "config": {"task": "t", "regime": "all", "experts": "eight", "seed": 1, "train_size": 64}}"# + "\n",
             ["bad-type.jsonl", "experts is \"eight\", not a positive integer"]),
            ("twice", header + "\n{\"step\": 1, \"split\": \"val\", \"name\": \"acc\", \"value\": 0.5}\n{\"step\": 1, \"split\": \"val\", \"name\": \"acc\", \"value\": 0.6}\n",
             ["twice.jsonl:3", "already on line 2"]),
            ("no-header", "{\"step\": 1, \"split\": \"val\", \"name\": \"acc\", \"value\": 0.5}\n", ["no-header.jsonl:1", "header"]),
        ]
        for c in cases {
            let file = dir.appendingPathComponent("\(c.name).jsonl")
            try c.text.write(to: file, atomically: true, encoding: .utf8)
            // With a good file first: the bad one still stops everything.
            let result = try store.moerec(["import", "run-log", good.path, file.path])
            XCTAssertEqual(result.status, 2, "\(c.name): \(result.stdout) \(result.stderr)")
            for text in c.expected { XCTAssertTrue(result.stderr.contains(text), "\(c.name): \(result.stderr)") }
            XCTAssertFalse(FileManager.default.fileExists(atPath: store.database.path), "\(c.name) created the store")
        }
        XCTAssertEqual(try store.moerec(["import", "run-log", good.path]).status, 0)
        let nan = dir.appendingPathComponent("nan.jsonl")
        XCTAssertEqual(try store.moerec(["import", "run-log", nan.path]).status, 2)
        XCTAssertEqual(store.count("SELECT count(*) FROM runs WHERE kind = 'finetune'"), 1, "a refused import wrote a run")
        // --allow-nan stores it as a missing value, as moerec stores a diverged run's.
        let allowed = try store.moerec(["import", "run-log", nan.path, "--allow-nan"])
        XCTAssertEqual(allowed.status, 0, allowed.stderr)
        XCTAssertEqual(store.count("SELECT count(*) FROM metrics WHERE value IS NULL"), 1)
        // A parent given as a hash must be a run of this store.
        let orphan = try store.moerec(["import", "run-log", good.path, "--parent", String(repeating: "ab", count: 32)])
        XCTAssertEqual(orphan.status, 2, orphan.stderr)
        XCTAssertTrue(orphan.stderr.contains("is not a run of"), orphan.stderr)
    }

    // MARK: Fixtures written by the real clients (Tests/Fixtures/import/README.md)

    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/import", isDirectory: true)

    /// expected.json's per-regime means of what the regimes table reports per run: test
    /// accuracy at the best validation step when logged there, else validation accuracy.
    static func expectedMeans(_ store: String) throws -> [String: (acc: Double, seeds: Int)] {
        let data = try Data(contentsOf: fixtures.appendingPathComponent("expected.json"))
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let regimes = try XCTUnwrap((json[store] as? [String: Any])?["regimes"] as? [String: [String: Any]])
        var means: [String: (Double, Int)] = [:]
        for (regime, entry) in regimes {
            let seeds = try XCTUnwrap(entry["seeds"] as? [String: [String: Any]])
            let values = try seeds.values.map { seed -> Double in
                if let test = seed["test_accuracy"] as? Double { return test }
                return try XCTUnwrap(seed["val_accuracy"] as? Double)
            }
            means[regime] = (values.reduce(0, +) / Double(values.count), values.count)
        }
        return means
    }

    func assertTable(_ store: StoreUnderTest, matches expected: [String: (acc: Double, seeds: Int)],
                     file: StaticString = #filePath, line: UInt = #line) throws {
        let table = try Self.regimes(store)
        XCTAssertEqual(Set(table.keys), Set(expected.keys), file: file, line: line)
        for (regime, want) in expected {
            XCTAssertEqual(table[regime]?.acc ?? .nan, want.acc, accuracy: 1e-12, regime, file: file, line: line)
            XCTAssertEqual(table[regime]?.seeds, want.seeds, regime, file: file, line: line)
        }
    }

    func testTrainerStatesImportAsTheirLogHistorySays() throws {
        let store = StoreUnderTest.fresh("import-trainer")
        defer { store.remove() }
        func importAll() throws -> [CLI.Result] {
            try ["all", "attention"].flatMap { regime in
                try (1...3).map { seed in
                    try store.moerec(["import", "trainer", Self.fixtures.appendingPathComponent("hf-trainer/\(regime)-seed\(seed)").path,
                                      "--parent", "tiny-bert", "--set", "task=keyword-4", "--set", "regime=\(regime)",
                                      "--set", "experts=1", "--set", "seed=\(seed)", "--set", "train_size=512"])
                }
            }
        }
        for result in try importAll() {
            XCTAssertEqual(result.status, 0, result.stderr)
            XCTAssertTrue(result.stdout.contains("1 runs added"), result.stdout)
        }
        try assertTable(store, matches: try Self.expectedMeans("hf-trainer"))
        // eval_accuracy is the val split, test_accuracy the test split, loss a step value,
        // the closing entry's train_loss an info value; max_steps is the config's steps.
        let hash = try store.sql("SELECT hash FROM runs WHERE kind = 'finetune' AND json_extract(config_json, '$.seed') = 2 AND json_extract(config_json, '$.regime') = 'attention'")
        XCTAssertEqual(try store.sql("SELECT count(*) FROM metric_points WHERE run_hash = '\(hash)' AND split = 'val' AND name = 'acc'"), "10")
        XCTAssertEqual(try store.sql("SELECT step FROM metric_points WHERE run_hash = '\(hash)' AND split = 'test' AND name = 'acc'"), "160")
        XCTAssertEqual(try store.sql("SELECT count(*) FROM metric_points WHERE run_hash = '\(hash)' AND split = 'step' AND name = 'loss'"), "20")
        XCTAssertEqual(try store.sql("SELECT count(*) FROM metric_points WHERE run_hash = '\(hash)' AND split = 'info' AND name = 'train_loss'"), "1")
        XCTAssertEqual(try store.sql("SELECT json_extract(config_json, '$.steps') FROM runs WHERE hash = '\(hash)'"), "160")
        for result in try importAll() { XCTAssertTrue(result.stdout.contains("0 runs added, 1 already stored"), result.stdout) }
        XCTAssertEqual(store.count("SELECT count(*) FROM runs"), 7)
        // Without the study keys the Trainer does not record: exit 2 naming the key.
        let bare = try store.moerec(["import", "trainer", Self.fixtures.appendingPathComponent("hf-trainer/all-seed1").path])
        XCTAssertEqual(bare.status, 2, bare.stderr)
        XCTAssertTrue(bare.stderr.contains("'task' is missing") && bare.stderr.contains("--set task="), bare.stderr)
    }

    static let mlflowKeys = ["--map", "finetune_regime=regime", "--map", "num_experts=experts", "--map", "dataset=task",
                             "--map", "n_train=train_size", "--parent", "tiny-switch"]

    func testMLflowFileStoreImportsItsFinishedRunsOnce() throws {
        let store = StoreUnderTest.fresh("import-mlflow-file")
        defer { store.remove() }
        let mlruns = Self.fixtures.appendingPathComponent("mlflow-file/mlruns").path
        let first = try store.moerec(["import", "mlflow", mlruns] + Self.mlflowKeys)
        XCTAssertEqual(first.status, 0, first.stderr)
        // 9 finished runs and the failed one; the deleted one is passed over.
        XCTAssertTrue(first.stdout.contains("10 runs added, 0 already stored"), first.stdout)
        XCTAssertTrue(first.stderr.contains("passed over") && first.stderr.contains("deleted"), first.stderr)
        try assertTable(store, matches: try Self.expectedMeans("mlflow-file"))
        XCTAssertEqual(try store.sql("SELECT status || ' ' || failure_reason FROM runs WHERE json_extract(config_json, '$.seed') = 4"),
                       "failed FAILED in MLflow")
        let claims = try store.moerec(["report", "--table", "claims"])
        XCTAssertTrue(claims.stdout.contains("(mlflow-file "), claims.stdout)
        let again = try store.moerec(["import", "mlflow", mlruns] + Self.mlflowKeys)
        XCTAssertTrue(again.stdout.contains("0 runs added, 10 already stored"), again.stdout)
        // Without the renames the study keys are missing: nothing is written.
        let other = StoreUnderTest.fresh("import-mlflow-file-bare")
        defer { other.remove() }
        let bare = try other.moerec(["import", "mlflow", mlruns])
        XCTAssertEqual(bare.status, 2, bare.stderr)
        XCTAssertTrue(bare.stderr.contains("is missing"), bare.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: other.database.path))
    }

    func testMLflowSQLiteStoreRefusesNaNUnlessAllowed() throws {
        let store = StoreUnderTest.fresh("import-mlflow-sqlite")
        defer { store.remove() }
        let database = Self.fixtures.appendingPathComponent("mlflow-sqlite/mlflow.db").path
        let refused = try store.moerec(["import", "mlflow", database] + Self.mlflowKeys)
        XCTAssertEqual(refused.status, 2, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("metric val_loss step 100") && refused.stderr.contains("--allow-nan"), refused.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: store.database.path), "a refused import created the store")
        let allowed = try store.moerec(["import", "mlflow", database, "--allow-nan", "--experiment", "st-moe-regimes"] + Self.mlflowKeys)
        XCTAssertEqual(allowed.status, 0, allowed.stderr)
        XCTAssertTrue(allowed.stdout.contains("7 runs added"), allowed.stdout)
        XCTAssertEqual(store.count("SELECT count(*) FROM metrics WHERE value IS NULL"), 1)
        try assertTable(store, matches: try Self.expectedMeans("mlflow-sqlite"))
        let none = try store.moerec(["import", "mlflow", database, "--allow-nan", "--experiment", "no-such"] + Self.mlflowKeys)
        XCTAssertEqual(none.status, 2, none.stderr)
        XCTAssertEqual(try store.moerec(["verify"]).status, 0)
    }
}
