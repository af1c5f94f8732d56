import Foundation
import MoeTestSupport
import XCTest

/// Category 4: a store that cannot be written (read-only filesystem), a full disk, and a
/// store path that is not a moerec store. Each must give a clear error (non-zero exit, the
/// message naming the path) and leave what was there intact. The filesystem cases mount a
/// small tmpfs (root only; skipped otherwise) and unmount it in tearDown.
final class StoreFaultTests: FaultTestCase {
    override class var category: FaultCategory { .storeFaults }

    private var mounts: [TmpfsMount] = []

    override func tearDown() {
        for m in mounts {
            m.removeFiller()
            m.remountReadWrite()
            m.unmount()
        }
        mounts.removeAll()
        super.tearDown()
    }

    func mount(size: String, label: String) throws -> TmpfsMount {
        let m = try TmpfsMount(size: size, label: label)
        mounts.append(m)
        return m
    }

    /// Copies the base store onto `dir` and returns (db path, completed run hashes).
    func placeBaseStore(at dir: URL) throws -> (db: String, runs: [String]) {
        let base = try FaultFixtures.baseStore()
        try Files.copyStore(base.dir, to: dir)
        return (dir.appendingPathComponent("moerec.sqlite").path, [base.pretrain, base.finetune])
    }

    func expectCleanError(_ check: CaseCheck, _ out: Outcome, path: String, words: [String], _ what: String) {
        check.expect(out.status != 0 && !out.crashed, "\(what): \(out.exitDescription), expected a clean non-zero exit: \(out.stderr.prefix(300))")
        check.expect(out.stderr.contains(path), "\(what): the message does not name \(path): \(out.stderr.prefix(300))")
        check.expect(out.stderr.lowercased().containsAny(words), "\(what): the message does not say \(words.joined(separator: " / ")): \(out.stderr.prefix(300))")
    }

    // MARK: Filesystem faults (root)

    func testReadOnlyStore() throws {
        runCase(.storeFaults, "read-only filesystem (tmpfs remounted ro)") { check in
            _ = try SQL.requireBinary()
            let m = try mount(size: "16m", label: "ro")
            let storeDir = m.point.appendingPathComponent("store")
            let (db, completed) = try placeBaseStore(at: storeDir)
            let config = try FaultFixtures.pretrainConfig(in: FaultFixtures.directory("ro-config"), steps: 20)
            let before = Files.fingerprint(storeDir)
            try m.remountReadOnly()

            let train = try Moerec.run(["run", config.path, "--set", "seed=5", "--store", db])
            expectCleanError(check, train, path: db, words: ["read-only", "read only"], "run on a read-only store")
            // Commands that only read work on a read-only store.
            let list = try Moerec.run(["runs", "--store", db])
            check.expect(list.status == 0 && completed.allSatisfy { list.stdout.contains($0.prefix(12)) },
                         "runs on a read-only store: \(list)")
            let verify = try Moerec.run(["verify", "--store", db])
            check.expect(verify.status == 0 && verify.stdout.contains("2 runs checked, 0 problems"),
                         "verify on a read-only store: \(verify)")
            check.expect(Files.fingerprint(storeDir) == before, "the store's files changed on a read-only filesystem")
            m.remountReadWrite()
            let after = try Moerec.run(["verify", "--store", db])
            check.expect(after.status == 0, "verify after remounting read-write: \(after.stdout.suffix(200))")
        }
    }

    func testDiskFullDuringTraining() throws {
        runCase(.storeFaults, "disk full while a run writes checkpoints and metrics") { check in
            _ = try SQL.requireBinary()
            let m = try mount(size: "8m", label: "full")
            let storeDir = m.point.appendingPathComponent("store")
            let (db, completed) = try placeBaseStore(at: storeDir)
            let config = try FaultFixtures.pretrainConfig(in: FaultFixtures.directory("full-config"), steps: 30)
            let runsBefore = try StoreState.runs(db, hashes: completed)
            let objectsBefore = Files.fingerprint(storeDir.appendingPathComponent("objects"))
            try m.fill(leavingKiB: 200)
            check.note("free space before the run: \(m.freeKiB) KiB")

            let args = ["run", config.path, "--set", "seed=7", "--store", db]
            let train = try Moerec.run(args)
            expectCleanError(check, train, path: storeDir.path, words: ["no space left", "disk full", "full"], "run on a full disk")
            check.note("message: \(train.stderr.split(separator: "\n").last ?? "")")

            m.removeFiller()
            check.expect(try StoreState.runs(db, hashes: completed) == runsBefore, "completed runs changed by the disk-full failure")
            let objectsAfter = Set(Files.fingerprint(storeDir.appendingPathComponent("objects")).split(separator: "\n"))
            let missing = objectsBefore.split(separator: "\n").filter { !objectsAfter.contains($0) }
            check.expect(missing.isEmpty, "objects that existed before changed or vanished: \(missing.prefix(3))")
            check.expect(try StoreState.integrity(db) == "ok", "integrity_check after the disk-full failure")
            let verify = try Moerec.run(["verify", "--store", db])
            check.expect(verify.status == 0, "verify after freeing space: \(verify.stdout.suffix(300))")
            if let hash = try StoreState.hashes(db).first(where: { !completed.contains($0) }) {
                let show = try Moerec.run(["show", String(hash.prefix(12)), "--store", db])
                check.note("the run that hit the full disk: \(show.stdout.split(separator: "\n").dropFirst().first ?? "")")
                check.expect(!show.stdout.contains("status running"), "the run still reads running after its process ended")
            }
            // Nothing lost: with space again, the same command finishes the run.
            let again = try Moerec.run(args)
            check.expect(again.status == 0 && again.stdout.contains("completed"), "re-running after freeing space: \(again)")
            let verify2 = try Moerec.run(["verify", "--store", db])
            check.expect(verify2.status == 0, "verify after the re-run: \(verify2.stdout.suffix(300))")
        }
    }

    func testDiskFullAtOpen() throws {
        runCase(.storeFaults, "disk completely full before the store is opened") { check in
            _ = try SQL.requireBinary()
            let m = try mount(size: "8m", label: "full0")
            let storeDir = m.point.appendingPathComponent("store")
            let (db, completed) = try placeBaseStore(at: storeDir)
            let config = try FaultFixtures.pretrainConfig(in: FaultFixtures.directory("full0-config"), steps: 20)
            let runsBefore = try StoreState.runs(db, hashes: completed)
            let bytesBefore = Files.fingerprint(storeDir)
            try m.fill(leavingKiB: 0)
            let train = try Moerec.run(["run", config.path, "--set", "seed=8", "--store", db])
            expectCleanError(check, train, path: storeDir.path, words: ["disk full", "no space left"], "run on a 100% full disk")
            let fresh = m.point.appendingPathComponent("new/moerec.sqlite").path
            let create = try Moerec.run(["run", config.path, "--store", fresh])
            expectCleanError(check, create, path: m.point.path, words: ["disk full", "no space left"], "a new store on a full disk")
            check.note("messages: \(train.stderr.split(separator: "\n").last ?? "") | \(create.stderr.split(separator: "\n").last ?? "")")
            m.removeFiller()
            let bytesAfter = Files.fingerprint(storeDir)
            if bytesAfter != bytesBefore { check.note("store files changed byte-wise (WAL); comparing rows") }
            check.expect(try StoreState.runs(db, hashes: completed) == runsBefore, "completed runs changed")
            check.expect(try Moerec.run(["verify", "--store", db]).status == 0, "verify after freeing space")
        }
    }

    // MARK: Wrong files (no root needed)

    func testStorePathIsNotAStore() throws {
        runCase(.storeFaults, "store path is a text file") { check in
            let dir = FaultFixtures.directory("notdb")
            let path = dir.appendingPathComponent("moerec.sqlite").path
            let bytes = Data(String(repeating: "these are my notes, not a database\n", count: 100).utf8)
            try bytes.write(to: URL(fileURLWithPath: path))
            let config = try FaultFixtures.pretrainConfig(in: dir, name: "cfg.json", steps: 10)
            for args in [["runs"], ["run", config.path], ["show", "abc"], ["verify"], ["report", "--table", "regimes"]] {
                let out = try Moerec.run(args + ["--store", path])
                check.expect(out.status == 2 && !out.crashed, "\(args[0]): \(out.exitDescription), expected exit 2: \(out.stderr.prefix(200))")
                check.expect(out.stderr.contains(path) && out.stderr.contains("not an SQLite database"),
                             "\(args[0]): message \(out.stderr.prefix(200))")
            }
            let env = try Moerec.run(["runs"], environment: ["MOEREC_STORE": path])
            check.expect(env.status == 2 && env.stderr.contains(path), "MOEREC_STORE pointing at the file: \(env)")
            check.expect(FileManager.default.contents(atPath: path) == bytes, "the file was modified")
            let extra = (try FileManager.default.contentsOfDirectory(atPath: dir.path)).filter { $0.hasPrefix("moerec.sqlite-") }
            check.expect(extra.isEmpty, "SQLite side files appeared next to it: \(extra)")
        }

        runCase(.storeFaults, "store path is another application's SQLite database") { check in
            _ = try SQL.requireBinary()
            let dir = FaultFixtures.directory("otherdb")
            let path = dir.appendingPathComponent("app.db").path
            try SQL.exec(path, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('keep me');", readOnly: false)
            let before = Files.fnv(path)
            let out = try Moerec.run(["runs", "--store", path])
            check.expect(out.status == 2 && !out.crashed, "runs: \(out.exitDescription): \(out.stderr.prefix(200))")
            check.expect(out.stderr.contains(path) && out.stderr.contains("not a moerec store"), "message: \(out.stderr.prefix(200))")
            check.expect(Files.fnv(path) == before, "the database was modified")
            check.expect(try SQL.exec(path, "SELECT body FROM notes").contains("keep me"), "the application's row is gone")
        }

        runCase(.storeFaults, "store path is a directory") { check in
            let dir = FaultFixtures.directory("dirstore")
            let path = dir.appendingPathComponent("moerec.sqlite").path
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            let out = try Moerec.run(["runs", "--store", path])
            check.expect(out.status != 0 && !out.crashed, "runs: \(out.exitDescription)")
            check.expect(out.stderr.contains(path) && out.stderr.contains("directory"), "message: \(out.stderr.prefix(200))")
            if out.status == 1 {
                FaultLedger.shared.observe("`--store` naming a directory exits 1 (\"cannot open store …: it is a directory\") while `--store` naming a text file exits 2: both are a wrong path typed by the user (StoreError.cannotOpen is not in isInputError)")
            }
        }

        runCase(.storeFaults, "store file truncated to half its size") { check in
            _ = try SQL.requireBinary()
            let dir = FaultFixtures.directory("truncated")
            let (db, _) = try placeBaseStore(at: dir)
            try SQL.exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", readOnly: false)
            let size = (try FileManager.default.attributesOfItem(atPath: db)[.size] as? Int) ?? 0
            check.expect(truncate(db, off_t(size / 2)) == 0, "could not truncate")
            let before = Files.fnv(db)
            let list = try Moerec.run(["runs", "--store", db])
            check.expect(list.status != 0 && !list.crashed, "runs on a truncated store: \(list.exitDescription)")
            check.expect(list.stderr.contains(db) && list.stderr.containsAny(["corrupt", "malformed"]), "message: \(list.stderr.prefix(200))")
            let config = try FaultFixtures.pretrainConfig(in: dir, name: "cfg.json", steps: 10)
            let train = try Moerec.run(["run", config.path, "--store", db])
            check.expect(train.status != 0 && !train.crashed && train.stderr.contains(db), "run on a truncated store: \(train)")
            check.expect(Files.fnv(db) == before, "the truncated store was modified")
        }
    }
}
