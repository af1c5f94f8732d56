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
}
