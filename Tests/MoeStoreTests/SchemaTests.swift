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
        // Whether a hash is lowercase hex and a config one JSON object is left to the
        // writers since migration 005 (testWritersRefuseWhatTheSchemaLeavesToThem).
        rejected([.string(other), .string(String(repeating: "d", count: 64)), "finetune", "queued", "{}", "fp"], "parent not in runs (FK)")
        rejected([.string(other), nil, "finetune", "queued", "{}", "fp"], "finetune without parent")
        rejected([.string(other), .string(other), "finetune", "queued", "{}", "fp"], "its own parent")
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

    /// Every row of `table` (all columns, by id), with the column names first.
    private func rows(_ store: Store, _ table: String) throws -> [[JSONValue]] {
        var out: [[JSONValue]] = []
        try store.query("SELECT * FROM \(table) ORDER BY 1") { row in
            if out.isEmpty { out.append((0..<row.columnCount).map { .string(row.columnName($0)) }) }
            out.append((0..<row.columnCount).map(row.value))
        }
        return out
    }

    /// The schema around `runs`: its indexes, triggers and views (with their SQL), the
    /// foreign keys of every table, and the columns of `runs`.
    private func schemaAround(_ store: Store) throws -> [[JSONValue]] {
        var out: [[JSONValue]] = []
        try store.query("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE type IN ('index', 'trigger', 'view') ORDER BY name") {
            row in out.append((0..<4).map(row.value))
        }
        try store.query("""
            SELECT m.name, f."table", f."from", f."to", f.on_delete FROM sqlite_master m, pragma_foreign_key_list(m.name) f
            WHERE m.type = 'table' ORDER BY m.name, f.id, f.seq
            """) { row in out.append((0..<5).map(row.value)) }
        try store.query("SELECT cid, name, type, \"notnull\", dflt_value, pk FROM pragma_table_info('runs')") { row in
            out.append((0..<6).map(row.value))
        }
        return out
    }

    /// A store written at schema 4 (every kind of run, imported and environment columns,
    /// metrics, a checkpoint with its blob, a sweep and tags) migrates to migration 005's
    /// `runs` with every row, id, index, view and foreign key as it was (it has no
    /// triggers, before or after), and the migration recorded.
    func testSchemaFourStoreMigratesToRunsCheckedByWritersWithEverythingKept() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("moerec.sqlite")
        try Store.createDatabase(path: path, schemaVersion: 4)
        let parent = String(repeating: "a", count: 64), child = String(repeating: "b", count: 64)
        let baseline = String(repeating: "c", count: 64), imported = String(repeating: "d", count: 64)
        try Store.withRawDatabase(path: path) { exec in
            try exec("""
                INSERT INTO runs (hash, kind, status, config_json, dataset_fingerprint, numerics_version, host, os, cpu_model,
                                  blas_core, threads, moerec_version, git_commit, pid, started_at, finished_at, wall_seconds,
                                  steps_done, slurm_job, vector_level)
                VALUES ('\(parent)', 'pretrain', 'completed', '{"a":1}', 'fp', 3, 'h', 'linux', 'cpu', 'openblas', 2, '1.0',
                        'abc', 42, '2025-01-31T12:00:00.000Z', '2025-01-31T12:01:00.000Z', 60.5, 20, '77_3', 'avx2')
                """)
            try exec("INSERT INTO runs (hash, parent_hash, kind, status, config_json, dataset_fingerprint, numerics_version, failure_reason, failure_step) VALUES ('\(child)', '\(parent)', 'finetune', 'interrupted', '{\"b\":[2,{\"c\":null}]}', 'fp', 3, 'stopped', 5)")
            try exec("INSERT INTO runs (hash, kind, status, config_json, dataset_fingerprint, numerics_version) VALUES ('\(baseline)', 'baseline', 'queued', '{\"kind\":\"baseline\"}', 'fp2', 1)")
            try exec("INSERT INTO runs (hash, kind, status, config_json, dataset_fingerprint, numerics_version, finished_at, import_source, import_fingerprint) VALUES ('\(imported)', 'pretrain', 'completed', '{\"model\":\"m\"}', 'external', 0, '2025-02-01T00:00:00.000Z', 'run-log /x.jsonl', '\(String(repeating: "e", count: 64))')")
            try exec("INSERT INTO metric_names (id, name) VALUES (1, 'loss')")
            try exec("INSERT INTO metrics (run_id, name_id, split, step, value) SELECT id, 1, 1, 10, 0.5 FROM runs WHERE hash IN ('\(parent)', '\(child)')")
            try exec("INSERT INTO blobs (sha256, raw_size, stored_size, location) VALUES ('\(String(repeating: "f", count: 64))', 8, 6, 'objects/ff/f')")
            try exec("INSERT INTO checkpoints (run_id, step, manifest_json) SELECT id, 20, '{}' FROM runs WHERE hash = '\(parent)'")
            try exec("INSERT INTO checkpoint_blobs (checkpoint_id, sha256) SELECT id, '\(String(repeating: "f", count: 64))' FROM checkpoints")
            try exec("INSERT INTO sweeps (id, name, spec_json) VALUES (1, 's', '{}')")
            try exec("INSERT INTO sweep_members (sweep_id, run_hash) VALUES (1, '\(child)'), (1, '\(parent)')")
            try exec("INSERT INTO tags (run_id, tag) SELECT id, 'keep' FROM runs")
        }
        let tables = ["runs", "metrics", "checkpoints", "blobs", "checkpoint_blobs", "sweeps", "sweep_members", "tags"]
        let old = try Store(path: path, mode: .readOnly)
        let rowsBefore = try tables.map { try rows(old, $0) }, schemaBefore = try schemaAround(old)
        old.close()
        // Migrated to 005 and no further, then compared with schema 4.

        try Store.createDatabase(path: path, schemaVersion: 5)
        let migrated = try Store(path: path, mode: .readOnly)
        XCTAssertEqual(try migrated.migrationRecords().map(\.version), [1, 2, 3, 4, 5])
        XCTAssertEqual(try migrated.migrationRecords().last?.name, "runs_checked_by_writers")
        for (table, before) in zip(tables, rowsBefore) { XCTAssertEqual(try rows(migrated, table), before, table) }
        XCTAssertEqual(try schemaAround(migrated), schemaBefore, "indexes, triggers, views, foreign keys and columns")
        migrated.close()
        let store = try Store(path: path)
        XCTAssertEqual(try count(store, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"), 0)
        XCTAssertEqual(try count(store, "SELECT count(*) FROM sqlite_master WHERE name IN ('runs_parent_hash', 'runs_status', 'metric_points')"), 3)
        var foreignKeys: Int64 = 0
        try store.query("SELECT foreign_keys FROM pragma_foreign_keys") { foreignKeys = $0.int(0) ?? 0 }
        XCTAssertEqual(foreignKeys, 1, "foreign keys are on again after the rebuild")
        XCTAssertEqual(try count(store, "SELECT count(*) FROM pragma_foreign_key_check"), 0)
        XCTAssertEqual(try count(store, "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check <> 'ok'"), 0)
        XCTAssertEqual(try count(store, "SELECT count(*) FROM metric_points WHERE name = 'loss'"), 2, "the view reads the rebuilt table")

        // Typed reads see the runs as before, and the references hold.
        XCTAssertEqual(try store.run(hash: child)?.parentHash, parent)
        XCTAssertEqual(try store.run(hash: parent)?.environment.slurmJob, "77_3")
        XCTAssertEqual(try store.run(hash: imported)?.importSource, "run-log /x.jsonl")
        XCTAssertThrowsError(try store.executeRaw("DELETE FROM runs WHERE hash = ?", [.string(parent)]), "children reference their parent")
        // The CHECKs that read every character are gone; every other one is there.
        var runsSQL = ""
        try store.query("SELECT sql FROM sqlite_master WHERE name = 'runs'") { runsSQL = $0.string(0) ?? "" }
        XCTAssertFalse(runsSQL.contains("json_valid") || runsSQL.contains("json_type") || runsSQL.contains("hash NOT GLOB"), runsSQL)
        for kept in ["length(hash) = 64", "kind IN ('pretrain', 'finetune', 'baseline')", "length(dataset_fingerprint) > 0",
                     "numerics_version >= 0", "threads IS NULL OR threads >= 1", "wall_seconds IS NULL OR wall_seconds >= 0",
                     "steps_done >= 0", "(kind = 'finetune') = (parent_hash IS NOT NULL)", "parent_hash <> hash",
                     "status <> 'failed' OR failure_reason IS NOT NULL", "OR finished_at IS NULL", "import_fingerprint NOT GLOB"] {
            XCTAssertTrue(runsSQL.contains(kept), "\(kept) is not in \(runsSQL)")
        }
        // And the migrated store takes new runs.
        let run = try store.insertRun(kind: .pretrain, config: sampleConfig(), parentHash: nil, datasetFingerprint: fingerprint,
                                      numericsVersion: 1)
        XCTAssertEqual(try store.run(hash: run.hash)?.configJSON, try sampleConfig().canonicalString)
    }

    /// What migration 005 took out of the schema, the writers refuse: a config that is not
    /// one JSON object (as text or as a value) and a malformed parent hash before any
    /// transaction, and a merge of a store holding a row the schema no longer stops (written
    /// with raw SQL) before anything is copied. Each is bad input, with a message that says
    /// what is wrong.
    func testWritersRefuseWhatTheSchemaLeavesToThem() throws {
        func refused(_ what: String, _ body: () throws -> NewRun) -> StoreError? {
            let error = storeError(body)
            XCTAssertEqual(error?.exitMeaning, .badInput, what)
            return error
        }
        let notObjects = ["[1]", "\"{}\"", "", "not json", "{\"a\": 1", "{\"a\": 1} {}", "{\"a\": [1,]}", "{\"a\": \"\u{1}\"}"]
        for text in notObjects {
            let error = refused(text) {
                try NewRun(kind: .pretrain, configJSON: text, parentHash: nil, datasetFingerprint: fingerprint, numericsVersion: 1)
            }
            guard case let .invalidConfig(reason)? = error else { XCTFail("\(text): \(String(describing: error))"); continue }
            XCTAssertTrue(error!.description.hasPrefix("a run config must be one JSON object: "), error!.description)
            XCTAssertTrue(reason.contains("line 1, column"), "\(text): the reason names no position: \(reason)")
        }
        XCTAssertEqual(refused("array value") {
            try NewRun(kind: .pretrain, config: [1, 2], parentHash: nil, datasetFingerprint: fingerprint, numericsVersion: 1)
        }, .invalidConfig(reason: "[1,2] is not one"))
        let badParent = String(repeating: "A", count: 64)
        XCTAssertEqual(refused("uppercase parent") {
            try NewRun(kind: .finetune, configJSON: "{}", parentHash: badParent, datasetFingerprint: fingerprint, numericsVersion: 1)
        }, .invalidHash(badParent))
        let dir = TemporaryDirectory()
        let store = try Store(path: dir.file("moerec.sqlite"))
        XCTAssertThrowsError(try store.insertRun(kind: .pretrain, config: "text", parentHash: nil, datasetFingerprint: fingerprint,
                                                 numericsVersion: 1))
        XCTAssertEqual(try count(store, "SELECT count(*) FROM runs"), 0)

        // The schema alone now takes such rows: one written behind the store's back.
        let good = try store.insertRun(kind: .pretrain, config: sampleConfig(), parentHash: nil, datasetFingerprint: fingerprint,
                                       numericsVersion: 1)
        let insert = "INSERT INTO runs (hash, kind, status, config_json, dataset_fingerprint, numerics_version) VALUES (?, 'pretrain', 'queued', ?, 'fp', 1)"
        let notAnObject = String(repeating: "e", count: 64), upper = String(repeating: "E", count: 64)
        try store.executeRaw(insert, [.string(notAnObject), "[1]"])
        try store.executeRaw(insert, [.string(upper), "{}"])
        XCTAssertEqual(Store.malformation(hash: good.hash, configJSON: good.configJSON), nil)
        XCTAssertEqual(Store.malformation(hash: notAnObject, configJSON: "[1]"),
                       "its config_json is not one JSON object: expected a JSON object but found character '[' at line 1, column 1")
        XCTAssertEqual(Store.malformation(hash: upper, configJSON: "{}"), "its hash \"\(upper)\" is not 64 lowercase hex digits")
        store.close()

        // A merge of that store refuses the first such run and copies nothing.
        let destination = try Store(path: dir.file("destination.sqlite"))
        var copied: [String]?
        let error = storeError { try destination.merge(from: dir.file("moerec.sqlite")) { copied = $0 } }
        guard case let .invalidSourceRun(path, hash, reason)? = error else { return XCTFail(String(describing: error)) }
        XCTAssertEqual(path, dir.file("moerec.sqlite"))
        XCTAssertEqual(hash, notAnObject)
        XCTAssertTrue(reason.contains("not one JSON object"), reason)
        XCTAssertEqual(error?.exitMeaning, .badInput)
        XCTAssertTrue(error!.description.contains("nothing was merged from that store") && error!.description.contains("moerec verify --store"),
                      error!.description)
        XCTAssertNil(copied, "objects were copied before the refusal")
        XCTAssertEqual(try count(destination, "SELECT count(*) FROM runs"), 0)
        // With only the uppercase hash left, that one is refused.
        let source = try Store(path: dir.file("moerec.sqlite"))
        try source.executeRaw("DELETE FROM runs WHERE hash = ?", [.string(notAnObject)])
        source.close()
        let second = storeError { try destination.merge(from: dir.file("moerec.sqlite")) { _ in } }
        XCTAssertEqual(second, .invalidSourceRun(path: dir.file("moerec.sqlite"), hash: upper,
                                                 reason: "its hash \"\(upper)\" is not 64 lowercase hex digits"))
        XCTAssertEqual(try count(destination, "SELECT count(*) FROM runs"), 0)
    }
}
