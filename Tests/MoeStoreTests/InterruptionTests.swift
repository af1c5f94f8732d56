import Foundation
import MoeStore
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class InterruptionTests: XCTestCase {
    func testHeldLeaseKeepsRunRunningAndReleasedLeaseMeansInterrupted() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("moerec.sqlite")
        let trainer = try Store(path: path)
        let run = try trainer.insertRun(kind: .pretrain, config: sampleConfig(), parentHash: nil,
                                        datasetFingerprint: fingerprint, numericsVersion: 1)
        let lease = try trainer.markRunning(hash: run.hash, environment: RunEnvironment())
        XCTAssertTrue(FileManager.default.fileExists(atPath: lease.lockPath))

        // Another opener while the lease is held (flock conflicts between two open file
        // descriptions even within one process): the run is alive.
        let observer = try Store(path: path)
        XCTAssertEqual(observer.interruptedOnOpen, [])
        XCTAssertEqual(try observer.run(hash: run.hash)?.status, .running)
        // ...and cannot start the same run twice.
        guard case .runInProgress? = storeError({ try observer.markRunning(hash: run.hash, environment: RunEnvironment()) }) else {
            return XCTFail("a second trainer was allowed to take a held run")
        }

        lease.release()
        let next = try Store(path: path)
        XCTAssertEqual(next.interruptedOnOpen, [run.hash])
        let record = try XCTUnwrap(next.run(hash: run.hash))
        XCTAssertEqual(record.status, .interrupted)
        XCTAssertNotNil(record.failureReason)

        // A later open finds nothing more to do; a resume takes the run again.
        XCTAssertEqual(try Store(path: path).interruptedOnOpen, [])
        let resumed = try next.markRunning(hash: run.hash, environment: RunEnvironment())
        XCTAssertEqual(try next.run(hash: run.hash)?.status, .running)
        XCTAssertEqual(try Store(path: path).interruptedOnOpen, [], "the resumed run is alive")
        try next.markCompleted(hash: run.hash, wallSeconds: 3, steps: 10)
        XCTAssertFalse(resumed.isHeld)
        XCTAssertEqual(try Store(path: path).run(hash: run.hash)?.status, .completed)
    }

    func testSIGKILLedTrainerProcessIsSeenAsInterrupted() throws {
        let dir = TemporaryDirectory("kill")
        let path = dir.file("moerec.sqlite")
        let store = try Store(path: path)
        let run = try store.insertRun(kind: .pretrain, config: sampleConfig(), parentHash: nil,
                                      datasetFingerprint: fingerprint, numericsVersion: 1)
        let (child, log) = try ChildProcess.spawn("lease", environment: [
            "MOESTORE_WORKER": "lease", "MOESTORE_STORE": path, "MOESTORE_HASH": run.hash,
        ], logDirectory: dir.path)
        defer { if child.isRunning { kill(child.processIdentifier, SIGKILL); child.waitUntilExit() } }

        let deadline = Date().addingTimeInterval(120)
        while try store.run(hash: run.hash)?.status != .running {
            guard child.isRunning, Date() < deadline else {
                let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                return XCTFail("the child never marked the run running:\n\(output.suffix(2000))")
            }
            usleep(20_000)
        }
        XCTAssertEqual(try store.run(hash: run.hash)?.pid, Int(child.processIdentifier))

        let whileAlive = try Store(path: path)
        XCTAssertEqual(whileAlive.interruptedOnOpen, [], "a live trainer's run is not interrupted")
        XCTAssertEqual(try whileAlive.run(hash: run.hash)?.status, .running)

        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()

        let afterKill = try Store(path: path)
        XCTAssertEqual(afterKill.interruptedOnOpen, [run.hash])
        let record = try XCTUnwrap(afterKill.run(hash: run.hash))
        XCTAssertEqual(record.status, .interrupted)
        XCTAssertTrue(record.failureReason?.contains("pid \(child.processIdentifier)") ?? false, record.failureReason ?? "nil")
    }
}
