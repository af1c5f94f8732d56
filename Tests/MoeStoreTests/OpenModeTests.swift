import Foundation
import MoeJSON
import MoeStore
import XCTest

/// Read-only opens, closing with the log checkpointed, and the online backup.
final class OpenModeTests: XCTestCase {
    func testReadOnlyOpenOfAMissingStoreCreatesNothing() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("sub/moerec.sqlite")
        assertThrows(.notFound(path: path)) { try Store(path: path, mode: .readOnly) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.file("sub")))
    }

    func testClosedStoreIsWholeInItsDatabaseFile() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("moerec.sqlite")
        let store = try Store(path: path)
        let run = try store.insertRun(kind: .pretrain, config: sampleConfig(), parentHash: nil,
                                      datasetFingerprint: fingerprint, numericsVersion: 1)
        // A second connection (another process, say) keeps the log from being removed on close.
        let reader = try Store(path: path, mode: .readOnly)
        store.close()
        let wal = (try? FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int) ?? 0
        XCTAssertEqual(wal, 0, "the log still holds data after close")
        XCTAssertThrowsError(try store.allRuns(), "a closed store refuses further use")
        reader.close()

        let copy = dir.file("copy/moerec.sqlite")
        try FileManager.default.createDirectory(atPath: dir.file("copy"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: path, toPath: copy)
        XCTAssertEqual(try Store(path: copy, mode: .readOnly).allRuns().map(\.hash), [run.hash])
    }

    func testReaderShowsADeadTrainersRunInterruptedWithoutWriting() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("moerec.sqlite")
        let writer = try Store(path: path)
        let run = try writer.insertRun(kind: .pretrain, config: sampleConfig(), parentHash: nil,
                                       datasetFingerprint: fingerprint, numericsVersion: 1)
        try writer.executeRaw("UPDATE runs SET status = 'running', pid = 4242 WHERE hash = ?", [.string(run.hash)])
        let reader = try Store(path: path, mode: .readOnly)
        XCTAssertEqual(try reader.run(hash: run.hash)?.status, .interrupted)
        XCTAssertEqual(try reader.listRuns(filter: try WhereFilter("status=interrupted")).map(\.hash), [run.hash])
        XCTAssertEqual(try writer.run(hash: run.hash)?.status, .running, "the reader wrote the status")
        reader.close()
        writer.close()
    }

    func testBackupCopiesEveryRunAndRefusesAnExistingFile() throws {
        let dir = TemporaryDirectory()
        let store = try Store(path: dir.file("moerec.sqlite"))
        for seed in 0..<3 {
            try store.insertRun(kind: .pretrain, config: sampleConfig(seed: seed), parentHash: nil,
                                datasetFingerprint: fingerprint, numericsVersion: 1)
        }
        let copy = dir.file("backup.sqlite")
        try store.backup(to: copy)
        XCTAssertEqual(try Store(path: copy, mode: .readOnly).allRuns().map(\.hash), try store.allRuns().map(\.hash))
        XCTAssertThrowsError(try store.backup(to: copy))
        store.close()
    }
}
