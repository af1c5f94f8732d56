import Foundation
import MoeStore
import XCTest

final class FaultTests: XCTestCase {
    func testNonSQLiteFileIsRefusedAndLeftByteIdentical() throws {
        let dir = TemporaryDirectory()
        let samples: [(String, Data)] = [
            ("notes.txt", Data(String(repeating: "not a database, just text\n", count: 200).utf8)),
            ("tiny.bin", Data([0x01, 0x02, 0x03])),
            ("fake.sqlite", Data("SQLite format 3\0".utf8) + Data(repeating: 0xAB, count: 5000)),
        ]
        for (name, bytes) in samples {
            let path = dir.file(name)
            try bytes.write(to: URL(fileURLWithPath: path))
            let error = storeError { try Store(path: path) }
            switch error {
            case .notADatabase(let p)?, .corrupt(let p, _)?:
                XCTAssertEqual(p, path)
                XCTAssertTrue(error!.description.contains(path), error!.description)
            default:
                XCTFail("\(name): expected notADatabase, got \(String(describing: error))")
            }
            XCTAssertEqual(FileManager.default.contents(atPath: path), bytes, "\(name) was modified")
            XCTAssertFalse(FileManager.default.fileExists(atPath: path + "-wal"), "\(name): a WAL file was created")
        }
    }

    func testAnotherApplicationsDatabaseIsRefusedAndUnchanged() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("other.sqlite")
        do {
            // Make "someone else's" database: a store whose ledger is gone.
            let store = try Store(path: path)
            try store.executeRaw("DROP TABLE schema_migrations")
        }
        let before = fileDigest(path)
        assertThrows(.notAStore(path: path)) { try Store(path: path) }
        XCTAssertEqual(fileDigest(path), before)
    }

    func testDirectoryAndEmptyPathsAreClearErrors() throws {
        let dir = TemporaryDirectory()
        guard case .cannotOpen(let p, _)? = storeError({ try Store(path: dir.path) }) else { return XCTFail() }
        XCTAssertEqual(p, dir.path)
        let file = dir.file("plainfile")
        XCTAssertTrue(FileManager.default.createFile(atPath: file, contents: Data("x".utf8)))
        XCTAssertNotNil(storeError { try Store(path: file + "/sub/moerec.sqlite") }, "a file in place of the directory")
        XCTAssertNotNil(storeError { try Store(path: "") })
    }

    // MARK: Real read-only and full filesystems (small tmpfs mounts; need root)

    private func mountTmpfs(size: String) throws -> TemporaryDirectory {
        let mountPoint = TemporaryDirectory("mount")
        guard runCommand("/bin/mount", ["-t", "tmpfs", "-o", "size=\(size)", "tmpfs", mountPoint.path]) else {
            throw XCTSkip("cannot mount a tmpfs here (needs root)")
        }
        addTeardownBlock {
            // XCTest may keep this block (and so the directory object) alive until the end of
            // the run, so remove the mount point here rather than in its deinit.
            _ = runCommand("/bin/umount", [mountPoint.path])
            try? FileManager.default.removeItem(atPath: mountPoint.path)
        }
        return mountPoint
    }

    func testReadOnlyFilesystemIsAClearErrorAndDataSurvives() throws {
        let mount = try mountTmpfs(size: "4m")
        let path = mount.file("moerec.sqlite")
        let hash: String
        do {
            let store = try Store(path: path)
            hash = try store.insertRun(kind: .pretrain, config: sampleConfig(), parentHash: nil,
                                       datasetFingerprint: fingerprint, numericsVersion: 1).hash
        }
        let before = fileDigest(path)
        XCTAssertTrue(runCommand("/bin/mount", ["-o", "remount,ro", mount.path]))
        assertThrows(.readOnly(path: path)) { try Store(path: path) }
        assertThrows(.readOnly(path: mount.file("new/moerec.sqlite"))) { try Store(path: mount.file("new/moerec.sqlite")) }
        XCTAssertTrue(runCommand("/bin/mount", ["-o", "remount,rw", mount.path]))
        XCTAssertEqual(fileDigest(path), before)
        XCTAssertEqual(try Store(path: path).run(hash: hash)?.status, .queued)
    }

    func testFullDiskIsAClearErrorAndCommittedDataSurvives() throws {
        let mount = try mountTmpfs(size: "1m")
        let path = mount.file("moerec.sqlite")
        var committed = 0
        let hash: String
        do {
            let store = try Store(path: path)
            hash = try store.insertRun(kind: .pretrain, config: sampleConfig(), parentHash: nil,
                                       datasetFingerprint: fingerprint, numericsVersion: 1).hash
            let writer = try store.metricWriter(runHash: hash, batchSize: 2_000)
            var failure: StoreError?
            var step = 0
            while failure == nil, step < 1_000_000 {
                do {
                    try writer.add(step: step, split: "train", name: "loss", value: Double(step))
                } catch let error as StoreError {
                    failure = error
                }
                step += 1
            }
            XCTAssertEqual(failure, .diskFull(path: path))
            XCTAssertTrue(failure?.description.contains(path) ?? false)
            committed = writer.pointsWritten
            XCTAssertGreaterThan(committed, 0)
        }
        let reopened = try Store(path: path)
        let series = try reopened.metrics(runHash: hash, name: "loss", split: "train")
        XCTAssertEqual(series.count, committed, "exactly the committed batches are there")
        XCTAssertEqual(series.last?.step, committed - 1)

        // A new store on the full disk cannot even be created: still a clear error.
        let fresh = mount.file("second/moerec.sqlite")
        let error = storeError { try Store(path: fresh) }
        XCTAssertEqual(error, .diskFull(path: fresh))
        XCTAssertEqual(try reopened.metrics(runHash: hash, name: "loss", split: "train").count, committed)
    }
}
