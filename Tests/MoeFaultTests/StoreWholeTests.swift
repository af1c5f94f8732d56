import Foundation
import MoeTestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The store is whole when a command ends (the `.sqlite` file alone holds every commit),
/// `moerec backup` copies a live store, and commands that only read create nothing.
final class StoreWholeTests: FaultTestCase {
    override class var category: FaultCategory { .storeFaults }

    /// Copies only `moerec.sqlite` (no -wal, no -shm) into a new directory and returns the
    /// copy's path.
    func copyDatabaseOnly(_ db: String) throws -> String {
        let dir = FaultFixtures.directory("sqlite-only")
        let copy = dir.appendingPathComponent("moerec.sqlite").path
        try FileManager.default.copyItem(atPath: db, toPath: copy)
        return copy
    }

    /// `runs --format csv` of `db`: hash → status.
    func statuses(_ db: String) throws -> [String: String] {
        let out = try Moerec.run(["runs", "--format", "csv", "--store", db])
        guard out.status == 0 else { throw FaultError("runs --store \(db): \(out)") }
        var result: [String: String] = [:]
        for line in out.stdout.split(separator: "\n").dropFirst() {
            let cells = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            if cells.count > 7 { result[cells[0]] = cells[7] }
        }
        return result
    }

    func testDatabaseFileAloneIsWhole() throws {
        _ = try SQL.requireBinary()
        runCase(.storeFaults, "after `run` exits 0 the .sqlite file alone lists the run completed") { check in
            let dir = FaultFixtures.directory("whole-ok")
            let db = dir.appendingPathComponent("moerec.sqlite").path
            let config = try FaultFixtures.pretrainConfig(in: dir, steps: 10)
            let out = try Moerec.run(["run", config.path, "--store", db])
            guard out.status == 0, let hash = FaultFixtures.firstHash(out.stdout) else { return check.fail("run: \(out)") }
            let wal = (try? FileManager.default.attributesOfItem(atPath: db + "-wal")[.size] as? Int) ?? 0
            check.expect(wal == 0, "moerec.sqlite-wal still holds \(wal) bytes after the command ended")
            let copy = try copyDatabaseOnly(db)
            check.expect(try statuses(copy)[hash] == "completed", "the copied .sqlite does not list \(hash.prefix(12)) completed")
            let verify = try Moerec.run(["verify", "--store", copy])
            check.expect(verify.stdout.contains("1 run checked"), "verify of the copy checked no run: \(verify.stdout.suffix(200))")
        }

        runCase(.storeFaults, "after `run` exits 1 (a diverging run) the .sqlite file alone lists it failed") { check in
            let dir = FaultFixtures.directory("whole-fail")
            let db = dir.appendingPathComponent("moerec.sqlite").path
            let config = try FaultFixtures.pretrainConfig(in: dir, steps: 30)
            let out = try Moerec.run(["run", config.path, "--store", db] + DivergenceFaultTests.divergent)
            check.expect(out.status == 1, "the diverging run: \(out.exitDescription), expected exit 1")
            guard let hash = FaultFixtures.firstHash(out.stdout) else { return check.fail("no hash in \(out.stdout.prefix(200))") }
            check.expect(try statuses(try copyDatabaseOnly(db))[hash] == "failed", "the copied .sqlite does not list \(hash.prefix(12)) failed")
        }

        for (signal, name) in [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM")] {
            runCase(.storeFaults, "after \(name) stops a running `run` the .sqlite file alone lists it interrupted") { check in
                let dir = FaultFixtures.directory("whole-\(name)")
                let db = dir.appendingPathComponent("moerec.sqlite").path
                let config = try FaultFixtures.pretrainConfig(in: dir, steps: 100_000)
                let running = try CLI.start(["run", config.path, "--store", db, "--set", "checkpoint_interval=5"])
                let deadline = Date().addingTimeInterval(120)
                var hash: String?
                while hash == nil, running.process.isRunning, Date() < deadline {
                    usleep(100_000)
                    guard FileManager.default.fileExists(atPath: db) else { continue }
                    hash = (try? SQL.lines(db, "SELECT hash FROM runs WHERE status = 'running' AND steps_done >= 5"))?.first
                }
                guard let hash else {
                    running.signal(SIGKILL)
                    return check.fail("the run never reached step 5: \(running.stderrSoFar.suffix(300))")
                }
                running.signal(signal)
                let result = try running.wait(timeout: 60)
                check.expect(result.status != 0, "\(name): exit \(result.status), expected non-zero")
                check.expect(try statuses(try copyDatabaseOnly(db))[hash] == "interrupted",
                             "the copied .sqlite does not list \(hash.prefix(12)) interrupted")
            }
        }
    }

    func testReadingCommandsCreateNothing() throws {
        runCase(.storeFaults, "commands that only read, on a missing store: exit 2 naming it, nothing created") { check in
            let dir = FaultFixtures.directory("missing")
            let path = dir.appendingPathComponent("not-here/moerec.sqlite").path
            let commands: [[String]] = [["runs"], ["verify"], ["show", "abc"], ["diff", "abc", "def"], ["reproduce", "abc"],
                                        ["report", "--table", "regimes"], ["backup", dir.appendingPathComponent("copy").path]]
            for args in commands {
                let out = try Moerec.run(args + ["--store", path])
                check.expect(out.status == 2 && !out.crashed, "\(args[0]): \(out.exitDescription), expected exit 2: \(out.stderr.prefix(200))")
                check.expect(out.stderr.contains(path), "\(args[0]): the message does not name \(path): \(out.stderr.prefix(200))")
                let left = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
                check.expect(left.isEmpty, "\(args[0]) created \(left)")
            }
        }

        runCase(.storeFaults, "a .sqlite file with no tables is not a store to read") { check in
            _ = try SQL.requireBinary()
            let dir = FaultFixtures.directory("empty-db")
            let path = dir.appendingPathComponent("moerec.sqlite").path
            try SQL.exec(path, "PRAGMA journal_mode = WAL; PRAGMA user_version = 0;", readOnly: false)
            let verify = try Moerec.run(["verify", "--store", path])
            check.expect(verify.status == 2 && verify.stderr.contains(path) && verify.stderr.contains("not a moerec store"),
                         "verify of a store without tables: \(verify)")
        }
    }

    func testBackupOfALiveStore() throws {
        _ = try SQL.requireBinary()
        runCase(.storeFaults, "backup while another process writes; the copy verifies and matches") { check in
            let base = try FaultFixtures.baseStore()
            let dir = FaultFixtures.directory("backup-src")
            try Files.copyStore(base.dir, to: dir)
            let db = dir.appendingPathComponent("moerec.sqlite").path
            let config = try FaultFixtures.pretrainConfig(in: dir, steps: 400)
            let writer = try CLI.start(["run", config.path, "--store", db, "--set", "seed=9", "--set", "checkpoint_interval=5",
                                        "--set", "eval_interval=5"])
            let deadline = Date().addingTimeInterval(120)
            while writer.process.isRunning, Date() < deadline,
                  (try? SQL.int(db, "SELECT count(*) FROM checkpoints c JOIN runs r ON r.id = c.run_id WHERE r.status = 'running'")) ?? 0 < 2 {
                usleep(100_000)
            }
            check.expect(writer.process.isRunning, "the writer ended before the backup started")
            let dst = FaultFixtures.directory("backup-dst").appendingPathComponent("copy")
            let backup = try Moerec.run(["backup", dst.path, "--store", db])
            let copy = dst.appendingPathComponent("moerec.sqlite").path
            check.expect(backup.status == 0, "backup: \(backup)")
            _ = try writer.wait(timeout: 300)
            let verify = try Moerec.run(["verify", "--store", copy])
            check.expect(verify.status == 0, "verify of the backup: \(verify.stdout.suffix(400))")
            let copied = try StoreState.hashes(copy)
            check.expect(Set(copied).isSuperset(of: [base.pretrain, base.finetune]) && copied.count == 3,
                         "the backup holds \(copied.count) runs, expected the 2 completed and the one being written")
            check.expect(try StoreState.runs(copy, hashes: [base.pretrain, base.finetune])
                         == StoreState.runs(db, hashes: [base.pretrain, base.finetune]), "completed runs differ in the backup")
            let again = try Moerec.run(["backup", dst.path, "--store", db])
            check.expect(again.status == 2 && again.stderr.contains(dst.path), "backup into the non-empty copy: \(again)")
        }
    }
}

/// `verify` checks the store's records against each other, not only object hashes; and
/// `reproduce` notices an edited step count or dataset fingerprint.
final class RecordConsistencyTests: FaultTestCase {
    override class var category: FaultCategory { .corruption }

    func caseStore() throws -> (dir: URL, db: String, pretrain: String, finetune: String) {
        let base = try FaultFixtures.baseStore()
        let dir = FaultFixtures.directory("records")
        try Files.copyStore(base.dir, to: dir)
        return (dir, dir.appendingPathComponent("moerec.sqlite").path, base.pretrain, base.finetune)
    }

    /// verify exits 1 and its output names every one of `words`.
    func expectVerifyFinds(_ check: CaseCheck, _ db: String, _ words: [String], _ what: String) throws {
        let verify = try Moerec.run(["verify", "--store", db])
        check.expect(verify.status == 1 && !verify.crashed, "\(what): verify \(verify.exitDescription), expected exit 1: \(verify.stdout.suffix(300))")
        for word in words {
            check.expect(verify.stdout.contains(word), "\(what): verify does not name \(word): \(verify.stdout.suffix(400))")
        }
    }

    func testSwappedTensors() throws {
        _ = try SQL.requireBinary()
        let s = try caseStore()
        // Same-size pairs in the parent's final manifest: the first, and the last two found.
        let rows = try SQL.lines(s.db, """
            SELECT a.key || ' ' || b.key || ' ' || json_extract(a.value, '$.name') || ' ' || json_extract(b.value, '$.name')
              FROM checkpoints c JOIN runs r ON r.id = c.run_id, json_each(c.manifest_json, '$.tensors') a,
                   json_each(c.manifest_json, '$.tensors') b
             WHERE r.hash = \(SQL.quote(s.pretrain)) AND c.step = 20 AND a.key < b.key
               AND json_extract(a.value, '$.raw_size') = json_extract(b.value, '$.raw_size')
               AND json_extract(a.value, '$.sha256') <> json_extract(b.value, '$.sha256')
             ORDER BY a.key, b.key
            """)
        XCTAssertFalse(rows.isEmpty, "no same-size tensor pair in the parent's checkpoint")
        for row in Set([rows.first!, rows[max(0, rows.count - 2)], rows.last!]).sorted() {
            let f = row.split(separator: " ").map(String.init)
            runCase(.corruption, "two same-size tensors' objects swapped in a manifest (\(f[2]) ↔ \(f[3]))") { check in
                let c = try caseStore()
                // Swap only the objects; names, shapes and sizes stay, so every object still verifies.
                try SQL.exec(c.db, """
                    UPDATE checkpoints SET manifest_json = json_set(manifest_json,
                        '$.tensors[\(f[0])].sha256', json_extract(manifest_json, '$.tensors[\(f[1])].sha256'),
                        '$.tensors[\(f[1])].sha256', json_extract(manifest_json, '$.tensors[\(f[0])].sha256'))
                     WHERE run_id = (SELECT id FROM runs WHERE hash = \(SQL.quote(c.pretrain))) AND step = 20
                    """, readOnly: false)
                try expectVerifyFinds(check, c.db, ["run \(c.pretrain.prefix(12)) step 20 tensor \(f[2])", "tensor \(f[3])"], "swap")
                let child = try Moerec.run(["reproduce", String(c.finetune.prefix(12)), "--store", c.db])
                check.expect(child.status == 1 && !child.crashed && (child.stdout + child.stderr).contains(f[2]),
                             "reproduce of the child (which loads the swapped checkpoint): \(child)")
            }
        }
        runCase(.corruption, "whole manifest entries of two tensors swapped (names kept in place)") { check in
            let c = try caseStore()
            guard let row = rows.first else { return check.fail("no pair") }
            let f = row.split(separator: " ").map(String.init)
            try SQL.exec(c.db, """
                UPDATE checkpoints SET manifest_json = json_set(manifest_json,
                    '$.tensors[\(f[0])]', json_set(json_extract(manifest_json, '$.tensors[\(f[1])]'), '$.name', \(SQL.quote(f[2]))),
                    '$.tensors[\(f[1])]', json_set(json_extract(manifest_json, '$.tensors[\(f[0])]'), '$.name', \(SQL.quote(f[3]))))
                 WHERE run_id = (SELECT id FROM runs WHERE hash = \(SQL.quote(c.pretrain))) AND step = 20
                """, readOnly: false)
            try expectVerifyFinds(check, c.db, ["run \(c.pretrain.prefix(12)) step 20 tensor \(f[2])"], "entry swap")
        }
    }

    func testEditedRunColumns() throws {
        _ = try SQL.requireBinary()
        let edits: [(String, String, Bool)] = [
            // (what, SET clause, reproduce must also say NOT identical)
            ("steps_done", "steps_done = steps_done - 1", true),
            ("dataset_fingerprint", "dataset_fingerprint = dataset_fingerprint || '0'", true),
            ("config_json (seed)", "config_json = json_set(config_json, '$.seed', 99)", false),
            ("numerics_version", "numerics_version = numerics_version + 1", false),
        ]
        for (what, set, reproduce) in edits {
            runCase(.corruption, "edited column of a completed run: \(what)") { check in
                let c = try caseStore()
                try SQL.exec(c.db, "PRAGMA foreign_keys = OFF; UPDATE runs SET \(set) WHERE hash = \(SQL.quote(c.pretrain))", readOnly: false)
                try expectVerifyFinds(check, c.db, ["run \(c.pretrain.prefix(12))"], what)
                if reproduce {
                    let rep = try Moerec.run(["reproduce", String(c.pretrain.prefix(12)), "--store", c.db])
                    check.expect(rep.status == 1 && rep.stdout.contains("NOT identical") && rep.stdout.contains(what),
                                 "reproduce after editing \(what): \(rep.stdout.suffix(400))")
                }
            }
        }

        // What the schema leaves to moerec's writers (migration 005), written behind its back;
        // (what, SET clause, what verify says, whether the run's hash is shown uppercased).
        let malformed: [(String, String, String, Bool)] = [
            ("config_json not a JSON object", "config_json = '[1]'", "its config_json is not one JSON object", false),
            ("hash not lowercase hex", "hash = upper(hash)", "is not 64 lowercase hex digits", true),
        ]
        for (what, set, says, upper) in malformed {
            runCase(.corruption, "edited column of a completed run: \(what)") { check in
                let c = try caseStore()
                try SQL.exec(c.db, "PRAGMA foreign_keys = OFF; UPDATE runs SET \(set) WHERE hash = \(SQL.quote(c.pretrain))", readOnly: false)
                let shown = upper ? c.pretrain.uppercased() : c.pretrain
                try expectVerifyFinds(check, c.db, ["run \(shown.prefix(12))", says, "the row was written outside moerec"], what)
            }
        }

        runCase(.corruption, "edited columns of a completed fine-tuning run: kind and parent_hash") { check in
            let c = try caseStore()
            try SQL.exec(c.db, "UPDATE runs SET kind = 'pretrain', parent_hash = NULL WHERE hash = \(SQL.quote(c.finetune))", readOnly: false)
            try expectVerifyFinds(check, c.db, ["run \(c.finetune.prefix(12))", "kind is pretrain"], "kind and parent")
        }

        runCase(.corruption, "completed run whose checkpoints are deleted") { check in
            let c = try caseStore()
            try SQL.exec(c.db, """
                DELETE FROM checkpoint_blobs WHERE checkpoint_id IN
                    (SELECT id FROM checkpoints WHERE run_id = (SELECT id FROM runs WHERE hash = \(SQL.quote(c.finetune))));
                DELETE FROM checkpoints WHERE run_id = (SELECT id FROM runs WHERE hash = \(SQL.quote(c.finetune)));
                """, readOnly: false)
            try expectVerifyFinds(check, c.db, ["run \(c.finetune.prefix(12))", "no checkpoint"], "no checkpoint")
        }

        runCase(.corruption, "an intact store verifies clean") { check in
            let c = try caseStore()
            let verify = try Moerec.run(["verify", "--store", c.db])
            check.expect(verify.status == 0 && verify.stdout.contains("2 runs checked, 0 problems"), "verify: \(verify.stdout.suffix(300))")
        }
    }
}
