import Foundation
import MoeJSON
import MoeStore
import XCTest

final class RunTests: XCTestCase {
    private var dir: TemporaryDirectory!
    private var store: Store!

    override func setUpWithError() throws {
        dir = TemporaryDirectory()
        store = try Store(path: dir.file("runs/moerec.sqlite"))
    }

    override func tearDown() {
        store = nil
        dir = nil
    }

    private func pretrain(seed: Int = 0) throws -> RunRecord {
        try store.insertRun(kind: .pretrain, config: sampleConfig(seed: seed), parentHash: nil,
                            datasetFingerprint: fingerprint, numericsVersion: 1)
    }

    func testDefaultPath() {
        XCTAssertEqual(Store.defaultPath(environment: [:]), "runs/moerec.sqlite")
        XCTAssertEqual(Store.defaultPath(environment: ["MOEREC_STORE": ""]), "runs/moerec.sqlite")
        XCTAssertEqual(Store.defaultPath(environment: ["MOEREC_STORE": "/data/s.sqlite"]), "/data/s.sqlite")
    }

    func testInsertStoresCanonicalConfigAndItsHash() throws {
        let config = try JSONValue(parsing: #"{"seed": 3, "regime": "moe", "experts": 4}"#)
        let run = try store.insertRun(kind: .pretrain, config: config, parentHash: nil,
                                      datasetFingerprint: fingerprint, numericsVersion: 2)
        XCTAssertEqual(run.hash, try RunIdentity.hash(config: config, parent: nil, datasetFingerprint: fingerprint, numerics: 2))
        XCTAssertEqual(run.configJSON, #"{"experts":4,"regime":"moe","seed":3}"#)
        XCTAssertEqual(try run.config, config)
        XCTAssertEqual(run.status, .queued)
        XCTAssertEqual(run.stepsDone, 0)
        XCTAssertEqual(try store.run(hash: run.hash), run)
        XCTAssertNil(try store.run(hash: String(repeating: "f", count: 64)))
        assertThrows(.invalidHash("abc")) { try store.run(hash: "abc") }

        assertThrows(.runExists(run.hash)) {
            try store.insertRun(kind: .pretrain, config: config, parentHash: nil, datasetFingerprint: fingerprint, numericsVersion: 2)
        }
        let (again, inserted) = try store.insertRunIfAbsent(kind: .pretrain, config: config, parentHash: nil,
                                                            datasetFingerprint: fingerprint, numericsVersion: 2)
        XCTAssertFalse(inserted)
        XCTAssertEqual(again, run)
        // Only a run inserted running has a start time.
        XCTAssertNil(run.startedAt)
        let running = try store.insertRun(kind: .pretrain, config: ["seed": 4], parentHash: nil, datasetFingerprint: fingerprint,
                                          numericsVersion: 2, status: .running)
        XCTAssertEqual(running.status, .running)
        XCTAssertNotNil(running.startedAt)
    }

    func testParentsAndChildren() throws {
        let parent = try pretrain()
        let missing = String(repeating: "e", count: 64)
        assertThrows(.unknownParent(missing)) {
            try store.insertRun(kind: .finetune, config: sampleConfig(regime: "ffn"), parentHash: missing,
                                datasetFingerprint: fingerprint, numericsVersion: 1)
        }
        let a = try store.insertRun(kind: .finetune, config: sampleConfig(regime: "ffn"), parentHash: parent.hash,
                                    datasetFingerprint: fingerprint, numericsVersion: 1)
        let b = try store.insertRun(kind: .finetune, config: sampleConfig(regime: "moe"), parentHash: parent.hash,
                                    datasetFingerprint: fingerprint, numericsVersion: 1)
        XCTAssertEqual(a.parentHash, parent.hash)
        XCTAssertEqual(try store.children(of: parent.hash).map(\.hash), [a.hash, b.hash])
        XCTAssertEqual(try store.children(of: a.hash), [])
        XCTAssertNotEqual(a.hash, try RunIdentity.hash(config: sampleConfig(regime: "ffn"), parent: nil,
                                                       datasetFingerprint: fingerprint, numerics: 1), "the parent is part of the hash")
    }

    func testPrefixResolution() throws {
        // Enough runs that some share their first hex digit.
        var hashes: [String] = []
        for seed in 0..<40 { hashes.append(try pretrain(seed: seed).hash) }
        let target = hashes[0]
        XCTAssertEqual(try store.resolve(prefix: target), target)
        XCTAssertEqual(try store.resolve(prefix: String(target.prefix(12))), target)
        XCTAssertEqual(try store.resolve(prefix: String(target.prefix(12)).uppercased()), target, "hex is case-insensitive")

        let byFirst = Dictionary(grouping: hashes, by: { $0.first! })
        let shared = try XCTUnwrap(byFirst.first { $0.value.count >= 2 })
        let error = storeError { try store.resolve(prefix: String(shared.key)) }
        guard case let .ambiguousHashPrefix(prefix, candidates)? = error else { return XCTFail("got \(String(describing: error))" ) }
        XCTAssertEqual(prefix, String(shared.key))
        XCTAssertTrue(candidates.count >= 2 && candidates.allSatisfy { $0.first == shared.key })

        let absent = try XCTUnwrap("0123456789abcdef".map(String.init).first { c in !hashes.contains { $0.hasPrefix(c + c + c) } })
        assertThrows(.unknownRun(absent + absent + absent)) { try store.resolve(prefix: absent + absent + absent) }

        for bad in ["", "xyz", "12 34", "abc'", "'; DROP TABLE runs; --", "%", "a*", String(repeating: "a", count: 65)] {
            assertThrows(.invalidHashPrefix(bad)) { try store.resolve(prefix: bad) }
        }
        XCTAssertEqual(try count(store, "SELECT count(*) FROM runs"), 40, "runs table intact")
    }

    func testLifecycleTransitions() throws {
        let run = try pretrain()
        let env = RunEnvironment.current(blasCore: "Haswell", vectorLevel: "avx2", threads: 2, moerecVersion: "0.1.0", gitCommit: "abc123")
        XCTAssertNotNil(env.host)
        XCTAssertNotNil(env.os)

        assertThrows(.invalidStatusTransition(hash: run.hash, from: "queued", to: "completed")) {
            try store.markCompleted(hash: run.hash, wallSeconds: 1, steps: 1)
        }
        let lease = try store.markRunning(hash: run.hash, environment: env, pid: 4242)
        XCTAssertTrue(lease.isHeld)
        var record = try XCTUnwrap(store.run(hash: run.hash))
        XCTAssertEqual(record.status, .running)
        XCTAssertEqual(record.environment, env)
        XCTAssertEqual(record.pid, 4242)
        XCTAssertNotNil(record.startedAt)

        try store.recordProgress(hash: run.hash, steps: 50)
        XCTAssertEqual(try store.run(hash: run.hash)?.stepsDone, 50)

        try store.markCompleted(hash: run.hash, wallSeconds: 12.5, steps: 100)
        XCTAssertFalse(lease.isHeld, "completing releases the lease")
        record = try XCTUnwrap(store.run(hash: run.hash))
        XCTAssertEqual(record.status, .completed)
        XCTAssertEqual(record.wallSeconds, 12.5)
        XCTAssertEqual(record.stepsDone, 100)
        XCTAssertNotNil(record.finishedAt)

        assertThrows(.invalidStatusTransition(hash: run.hash, from: "completed", to: "running")) {
            try store.markRunning(hash: run.hash, environment: env)
        }
        assertThrows(.invalidStatusTransition(hash: run.hash, from: "completed", to: "failed")) {
            try store.markFailed(hash: run.hash, reason: "x", step: 1)
        }

        let other = try pretrain(seed: 1)
        try store.markRunning(hash: other.hash, environment: env)
        try store.markFailed(hash: other.hash, reason: "loss is NaN", step: 37)
        record = try XCTUnwrap(store.run(hash: other.hash))
        XCTAssertEqual(record.status, .failed)
        XCTAssertEqual(record.failureReason, "loss is NaN")
        XCTAssertEqual(record.failureStep, 37)
        // A failed run may be retried; the retry clears the failure.
        try store.markRunning(hash: other.hash, environment: env)
        record = try XCTUnwrap(store.run(hash: other.hash))
        XCTAssertEqual(record.status, .running)
        XCTAssertNil(record.failureReason)

        let unknown = String(repeating: "9", count: 64)
        assertThrows(.unknownRun(unknown)) { try store.markRunning(hash: unknown, environment: env) }
    }

    func testListRunsWithKeyFieldsAndBestMetrics() throws {
        let parent = try pretrain()
        let ft = try store.insertRun(kind: .finetune, config: sampleConfig(regime: "non-moe", experts: 4, seed: 2),
                                     parentHash: parent.hash, datasetFingerprint: fingerprint, numericsVersion: 1)
        let writer = try store.metricWriter(runHash: ft.hash)
        for (step, acc, loss) in [(0, 0.5, 2.0), (10, 0.75, 1.2), (20, 0.7, 1.5)] {
            try writer.add(step: step, split: "val", name: "acc", value: acc)
            try writer.add(step: step, split: "val", name: "loss", value: loss)
            try writer.add(step: step, split: "train", name: "acc", value: 0.99)
            try writer.add(step: step, split: "train", name: "loss", value: 0.01)
        }
        try writer.flush()

        let summaries = try store.listRuns()
        XCTAssertEqual(summaries.map(\.hash), [parent.hash, ft.hash])
        let s = summaries[1]
        XCTAssertEqual(s.kind, .finetune)
        XCTAssertEqual(s.status, .queued)
        XCTAssertEqual(s.parentHash, parent.hash)
        XCTAssertEqual(s.regime, "non-moe")
        XCTAssertEqual(s.experts, 4)
        XCTAssertEqual(s.seed, 2)
        XCTAssertEqual(s.task, "wn-supersense")
        XCTAssertEqual(s.trainSize, .int(250))
        XCTAssertEqual(s.bestValAccuracy, 0.75, "max of val acc, not train acc")
        XCTAssertEqual(s.bestValLoss, 1.2, "min of val loss, not train loss")
        XCTAssertNil(summaries[0].bestValAccuracy)

        let custom = try store.listRuns(keyFields: ["lr", "missing_key"])
        XCTAssertEqual(custom[1].keyFields, ["lr": .double(1e-3)])
        assertThrows(.invalidConfigKey("lr') --")) { try store.listRuns(keyFields: ["lr') --"]) }
    }

    func testTagsAndSweeps() throws {
        let a = try pretrain(seed: 0)
        let b = try pretrain(seed: 1)
        try store.addTag(runHash: a.hash, tag: "paper")
        try store.addTag(runHash: a.hash, tag: "paper")
        try store.addTag(runHash: a.hash, tag: "baseline")
        XCTAssertEqual(try store.tags(runHash: a.hash), ["baseline", "paper"])
        try store.removeTag(runHash: a.hash, tag: "baseline")
        XCTAssertEqual(try store.tags(runHash: a.hash), ["paper"])
        XCTAssertEqual(try store.tags(runHash: b.hash), [])
        XCTAssertThrowsError(try store.addTag(runHash: a.hash, tag: ""))

        let sweep = try store.createSweep(name: "regimes", specJSON: #"{"grid":{"regime":["all","moe"]}}"#)
        try store.addSweepMember(sweepId: sweep, runHash: b.hash)
        try store.addSweepMember(sweepId: sweep, runHash: a.hash)
        try store.addSweepMember(sweepId: sweep, runHash: b.hash)
        XCTAssertEqual(try store.sweepMembers(sweepId: sweep), [b.hash, a.hash], "insertion order, no duplicates")
        XCTAssertEqual(try store.sweeps().map(\.name), ["regimes"])
        XCTAssertEqual(try store.sweep(id: sweep)?.specJSON, #"{"grid":{"regime":["all","moe"]}}"#)
        XCTAssertThrowsError(try store.addSweepMember(sweepId: sweep + 100, runHash: a.hash))
        assertThrows(.unknownRun(String(repeating: "7", count: 64))) {
            try store.addSweepMember(sweepId: sweep, runHash: String(repeating: "7", count: 64))
        }
        XCTAssertThrowsError(try store.createSweep(name: "bad", specJSON: "{not json"))
    }

    func testCheckpointsAndBlobs() throws {
        let parent = try pretrain()
        let child = try store.insertRun(kind: .finetune, config: sampleConfig(regime: "ffn"), parentHash: parent.hash,
                                        datasetFingerprint: fingerprint, numericsVersion: 1)
        let shared = BlobRecord(sha256: String(repeating: "a", count: 64), rawSize: 1000, storedSize: 400, location: "objects/aa/aaaa")
        let own = BlobRecord(sha256: String(repeating: "b", count: 64), rawSize: 2000, storedSize: 900, location: "objects/bb/bbbb")
        let updated = BlobRecord(sha256: String(repeating: "c", count: 64), rawSize: 2000, storedSize: 950, location: "objects/cc/cccc")

        XCTAssertNil(try store.latestCheckpoint(runHash: parent.hash))
        let c0 = try store.recordCheckpoint(runHash: parent.hash, step: 100, manifestJSON: #"{"step":100}"#, blobs: [shared, own])
        XCTAssertEqual(c0.step, 100)
        XCTAssertEqual(c0.runHash, parent.hash)
        try store.recordCheckpoint(runHash: child.hash, step: 10, manifestJSON: #"{"step":10}"#, blobs: [shared, updated])
        try store.recordCheckpoint(runHash: child.hash, step: 20, manifestJSON: #"{"step":20}"#, blobs: [shared, updated])

        XCTAssertEqual(try store.allBlobs().map(\.sha256), [shared.sha256, own.sha256, updated.sha256], "the shared blob is one row")
        XCTAssertEqual(try store.blobs(forRun: child.hash).map(\.sha256), [shared.sha256, updated.sha256])
        XCTAssertEqual(try store.blob(sha256: shared.sha256)?.storedSize, 400)
        XCTAssertNotNil(try store.blob(sha256: shared.sha256)?.createdAt)
        XCTAssertEqual(try store.latestCheckpoint(runHash: child.hash)?.step, 20)
        XCTAssertEqual(try store.checkpoints(runHash: child.hash).map(\.step), [10, 20])
        XCTAssertEqual(try store.blobs(forCheckpoint: c0.id).map(\.sha256), [shared.sha256, own.sha256])

        // The same step again (a resume passing it twice) replaces, never duplicates.
        let again = try store.recordCheckpoint(runHash: child.hash, step: 20, manifestJSON: #"{"step":20,"again":true}"#, blobs: [shared])
        XCTAssertEqual(try store.checkpoints(runHash: child.hash).map(\.step), [10, 20])
        XCTAssertEqual(try store.latestCheckpoint(runHash: child.hash)?.manifestJSON, #"{"step":20,"again":true}"#)
        XCTAssertEqual(try store.blobs(forCheckpoint: again.id).map(\.sha256), [shared.sha256])

        let conflicting = BlobRecord(sha256: shared.sha256, rawSize: 999, storedSize: 1, location: "x")
        assertThrows(.blobConflict(sha256: shared.sha256, recordedRawSize: 1000, newRawSize: 999)) {
            try store.recordCheckpoint(runHash: child.hash, step: 30, manifestJSON: "{}", blobs: [conflicting])
        }
        XCTAssertEqual(try store.checkpoints(runHash: child.hash).map(\.step), [10, 20], "the failed record left nothing behind")
        XCTAssertThrowsError(try store.recordCheckpoint(runHash: child.hash, step: 40, manifestJSON: "{bad", blobs: []))
    }
}
