import Foundation
import MoeJSON
import MoeStore
import XCTest

final class SchemaTests: XCTestCase {
    /// schema/ beside Sources and Tests, found from this file's path.
    private var schemaDirectory: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("schema").path
    }

    func testEmbeddedMigrationsAreByteIdenticalToSchemaFiles() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: schemaDirectory).filter { $0.hasSuffix(".sql") }.sorted()
        XCTAssertEqual(files, Migrations.all.map(\.fileName), "every schema/*.sql is embedded, in order")
        for migration in Migrations.all {
            let data = try XCTUnwrap(FileManager.default.contents(atPath: schemaDirectory + "/" + migration.fileName))
            XCTAssertEqual(data, Data(migration.sql.utf8), "\(migration.fileName) differs from the embedded SQL")
        }
        XCTAssertEqual(Migrations.all.map(\.version), Array(1...Migrations.all.count), "versions are 1...n without gaps")
    }

    func testFreshStoreAppliesEveryMigrationOnce() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("nested/dir/moerec.sqlite")
        let store = try Store(path: path)
        XCTAssertEqual(store.appliedMigrations, Migrations.all.map(\.version))
        let ledger = try store.migrationRecords()
        XCTAssertEqual(ledger.map(\.version), Migrations.all.map(\.version))
        XCTAssertEqual(ledger.map(\.name), Migrations.all.map(\.name))
        var mode = ""
        try store.query("SELECT journal_mode FROM pragma_journal_mode") { mode = $0.string(0) ?? "" }
        XCTAssertEqual(mode, "wal")
        var foreignKeys: Int64 = 0
        try store.query("SELECT foreign_keys FROM pragma_foreign_keys") { foreignKeys = $0.int(0) ?? 0 }
        XCTAssertEqual(foreignKeys, 1)
        for table in ["runs", "metrics", "metric_names", "splits", "checkpoints", "blobs", "checkpoint_blobs",
                      "sweeps", "sweep_members", "tags", "schema_migrations"] {
            XCTAssertEqual(try count(store, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", [.string(table)]), 1, table)
        }
    }

    func testAlreadyMigratedStoreIsLeftUntouched() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("moerec.sqlite")
        let first = try Store(path: path)
        let run = try first.insertRun(kind: .pretrain, config: sampleConfig(), parentHash: nil,
                                      datasetFingerprint: fingerprint, numericsVersion: 1)
        let ledgerBefore = try first.migrationRecords()

        let second = try Store(path: path)
        XCTAssertEqual(second.appliedMigrations, [], "nothing applied on the second open")
        XCTAssertEqual(try second.migrationRecords(), ledgerBefore, "ledger (including applied_at) unchanged")
        XCTAssertEqual(try second.run(hash: run.hash), run)
    }

    func testStoreFromNewerMoerecIsRefusedAndUnchanged() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("moerec.sqlite")
        do {
            let store = try Store(path: path)
            try store.executeRaw("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'future', 'x')",
                                 [.int(Int64(Migrations.latestVersion + 1))])
        }
        let before = fileDigest(path)
        assertThrows(.schemaTooNew(path: path, storeVersion: Migrations.latestVersion + 1, supportedVersion: Migrations.latestVersion)) {
            try Store(path: path)
        }
        XCTAssertEqual(fileDigest(path), before)
    }

    func testConstraintsLiveInTheSchema() throws {
        let dir = TemporaryDirectory()
        let store = try Store(path: dir.file("moerec.sqlite"))
        let run = try store.insertRun(kind: .pretrain, config: sampleConfig(), parentHash: nil,
                                      datasetFingerprint: fingerprint, numericsVersion: 1)
        let insert = """
            INSERT INTO runs (hash, parent_hash, kind, status, config_json, dataset_fingerprint, numerics_version)
            VALUES (?, ?, ?, ?, ?, ?, 1)
            """
        let other = String(repeating: "c", count: 64)
        func rejected(_ params: [JSONValue], _ label: String) {
            XCTAssertThrowsError(try store.executeRaw(insert, params), label) { error in
                guard case .constraintViolation? = error as? StoreError else { return XCTFail("\(label): \(error)") }
            }
        }
        rejected([.string(other), nil, "pretrain", "done", "{}", "fp"], "status outside the CHECK list")
        rejected([.string(other), nil, "distill", "queued", "{}", "fp"], "kind outside the CHECK list")
        rejected([.string("abc"), nil, "pretrain", "queued", "{}", "fp"], "hash too short")
        rejected([.string(String(repeating: "G", count: 64)), nil, "pretrain", "queued", "{}", "fp"], "hash not lowercase hex")
        rejected([.string(other), .string(String(repeating: "d", count: 64)), "finetune", "queued", "{}", "fp"], "parent not in runs (FK)")
        rejected([.string(other), nil, "finetune", "queued", "{}", "fp"], "finetune without parent")
        rejected([.string(other), nil, "pretrain", "queued", "not json", "fp"], "config not JSON")
        rejected([.string(other), nil, "pretrain", "queued", "[1]", "fp"], "config not an object")
        rejected([.string(other), nil, "pretrain", "failed", "{}", "fp"], "failed without a reason")
        rejected([.string(other), nil, "pretrain", "queued", "{}", nil], "NULL fingerprint")

        XCTAssertThrowsError(try store.executeRaw("UPDATE runs SET status = 'bogus' WHERE hash = ?", [.string(run.hash)]))
        XCTAssertThrowsError(try store.executeRaw("INSERT INTO metrics (run_id, name_id, split, step, value) VALUES (999, 1, 0, 0, 1.0)"),
                             "metric for a missing run (FK)")
        XCTAssertThrowsError(try store.executeRaw("INSERT INTO blobs (sha256, raw_size, stored_size, location) VALUES ('xyz', 1, 1, 'a')"))
        XCTAssertEqual(try store.run(hash: run.hash)?.status, .queued, "the rejected update left the row alone")
        XCTAssertEqual(try count(store, "SELECT count(*) FROM runs"), 1)
    }

    func testQueryRefusesWritesAndSeveralStatements() throws {
        let dir = TemporaryDirectory()
        let store = try Store(path: dir.file("moerec.sqlite"))
        XCTAssertThrowsError(try store.query("DELETE FROM runs", []) { _ in }) { error in
            XCTAssertEqual(error as? StoreError, .notReadOnlyQuery("DELETE FROM runs"))
        }
        XCTAssertThrowsError(try store.query("SELECT 1; DROP TABLE runs", []) { _ in })
        XCTAssertEqual(try count(store, "SELECT count(*) FROM sqlite_master WHERE name = 'runs'"), 1)
    }

    /// A store written by a moerec of schema 1 (runs, a fine-tuning child, metrics, a
    /// checkpoint, sweep members and tags that reference `runs`) migrates to the current
    /// schema with every row and reference intact, and then accepts baseline runs.
    /// A store an older moerec wrote (schema 2, no `slurm_job`) is read as it is by a
    /// read-only open, and merged from, without migrating it.
    func testSchemaTwoStoreIsReadAndMergedWithoutMigrating() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("old.sqlite")
        try Store.createDatabase(path: path, schemaVersion: 2)
        let hash = String(repeating: "c", count: 64)
        try Store.withRawDatabase(path: path) { exec in
            try exec("INSERT INTO runs (hash, kind, status, config_json, dataset_fingerprint, numerics_version, host) VALUES ('\(hash)', 'pretrain', 'completed', '{\"a\":1}', 'fp', 1, 'old-host')")
        }
        let old = try Store(path: path, mode: .readOnly)
        XCTAssertEqual(try old.migrationRecords().map(\.version), [1, 2])
        let record = try XCTUnwrap(try old.run(hash: hash))
        XCTAssertEqual(record.environment.host, "old-host")
        XCTAssertNil(record.environment.slurmJob)
        XCTAssertEqual(try old.listRuns().map(\.hash), [hash])
        old.close()
        let merged = try Store(path: dir.file("new.sqlite"))
        let summary = try merged.merge(from: path) { _ in }
        XCTAssertEqual(summary.runsAdded, 1)
        XCTAssertEqual(try merged.run(hash: hash)?.environment.host, "old-host")
        // The read-only open and the merge left the old store at schema 2.
        XCTAssertEqual(try Store(path: path, mode: .readOnly).migrationRecords().map(\.version), [1, 2])
    }

    func testSchemaOneStoreMigratesWithItsRowsAndReferences() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("moerec.sqlite")
        try Store.createDatabase(path: path, schemaVersion: 1)
        let parentHash = String(repeating: "a", count: 64), childHash = String(repeating: "b", count: 64)
        do {
            // Opening it read-only reads the schema-1 store as it is.
            let old = try Store(path: path, mode: .readOnly)
            XCTAssertEqual(try old.migrationRecords().map(\.version), [1])
        }
        // Rows written as the schema-1 code wrote them.
        try Store.withRawDatabase(path: path) { exec in
            try exec("INSERT INTO runs (hash, kind, status, config_json, dataset_fingerprint, numerics_version) VALUES ('\(parentHash)', 'pretrain', 'completed', '{\"a\":1}', 'fp', 1)")
            try exec("INSERT INTO runs (hash, parent_hash, kind, status, config_json, dataset_fingerprint, numerics_version) VALUES ('\(childHash)', '\(parentHash)', 'finetune', 'queued', '{\"b\":2}', 'fp', 1)")
            try exec("INSERT INTO metric_names (id, name) VALUES (1, 'loss')")
            try exec("INSERT INTO metrics (run_id, name_id, split, step, value) SELECT id, 1, 1, 10, 0.5 FROM runs WHERE hash = '\(childHash)'")
            try exec("INSERT INTO checkpoints (run_id, step, manifest_json) SELECT id, 10, '{}' FROM runs WHERE hash = '\(parentHash)'")
            try exec("INSERT INTO sweeps (id, name, spec_json) VALUES (1, 's', '{}')")
            try exec("INSERT INTO sweep_members (sweep_id, run_hash) VALUES (1, '\(childHash)')")
            try exec("INSERT INTO tags (run_id, tag) SELECT id, 'keep' FROM runs WHERE hash = '\(childHash)'")
        }
        let store = try Store(path: path)
        XCTAssertEqual(store.appliedMigrations, Array(2...Migrations.latestVersion))
        XCTAssertEqual(try store.run(hash: childHash)?.parentHash, parentHash)
        XCTAssertEqual(try count(store, "SELECT count(*) FROM metric_points WHERE run_hash = ? AND name = 'loss' AND value = 0.5",
                                 [.string(childHash)]), 1, "the view is back and reads the rebuilt table")
        XCTAssertEqual(try count(store, "SELECT count(*) FROM checkpoints c JOIN runs r ON r.id = c.run_id WHERE r.hash = ?",
                                 [.string(parentHash)]), 1)
        XCTAssertEqual(try count(store, "SELECT count(*) FROM tags t JOIN runs r ON r.id = t.run_id WHERE t.tag = 'keep' AND r.hash = ?",
                                 [.string(childHash)]), 1)
        XCTAssertEqual(try count(store, "SELECT count(*) FROM sweep_members WHERE run_hash = ?", [.string(childHash)]), 1)
        var foreignKeys: Int64 = 0
        try store.query("SELECT foreign_keys FROM pragma_foreign_keys") { foreignKeys = $0.int(0) ?? 0 }
        XCTAssertEqual(foreignKeys, 1, "foreign keys are on again after the rebuild")
        var violations = 0
        try store.query("SELECT * FROM pragma_foreign_key_check") { _ in violations += 1 }
        XCTAssertEqual(violations, 0)
        // The rebuilt table keeps its constraints and admits baselines, without a parent only.
        let baseline = try store.insertRun(kind: .baseline, config: ["kind": "baseline", "baseline": "linear"], parentHash: nil,
                                           datasetFingerprint: fingerprint, numericsVersion: 1)
        XCTAssertEqual(try store.run(hash: baseline.hash)?.kind, .baseline)
        XCTAssertThrowsError(try store.executeRaw(
            "INSERT INTO runs (hash, parent_hash, kind, status, config_json, dataset_fingerprint, numerics_version) VALUES (?, ?, 'baseline', 'queued', '{}', 'fp', 1)",
            [.string(String(repeating: "e", count: 64)), .string(parentHash)]), "a baseline has no parent")
        XCTAssertThrowsError(try store.executeRaw("DELETE FROM runs WHERE hash = ?", [.string(parentHash)]),
                             "the child's reference to its parent is enforced")
    }
}
