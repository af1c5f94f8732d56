import Foundation
import MoeMetricNames
import MoeStore
import XCTest

/// The typed queries reports, diffs and `show` read the store through.
final class TypedQueryTests: XCTestCase {
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

    private func insert(_ kind: RunKind, regime: String = "all", seed: Int = 0, parent: String? = nil) throws -> RunRecord {
        try store.insertRun(kind: kind, config: sampleConfig(regime: regime, seed: seed), parentHash: parent,
                            datasetFingerprint: fingerprint, numericsVersion: 1)
    }

    /// Writes `points` as (step, split, name, value) and completes the run.
    private func complete(_ run: RunRecord, _ points: [(Int, String, String, Double)]) throws {
        try store.markRunning(hash: run.hash, environment: RunEnvironment(host: "h", threads: 2))
        let writer = try store.metricWriter(runHash: run.hash)
        for (step, split, name, value) in points { try writer.add(step: step, split: split, name: name, value: value) }
        try writer.flush()
        try store.markCompleted(hash: run.hash, wallSeconds: 1, steps: points.map(\.0).max() ?? 0)
    }

    func testRunRecordDecodesItsEnvironmentFromTheSameRow() throws {
        let run = try insert(.pretrain)
        try complete(run, [])
        let stored = try XCTUnwrap(store.run(hash: run.hash))
        XCTAssertEqual(stored.environment.host, "h")
        XCTAssertEqual(stored.environment.threads, 2)
        XCTAssertNil(stored.environment.gitCommit)
        XCTAssertEqual(stored.status, .completed)
        XCTAssertEqual(stored.wallSeconds, 1)
        XCTAssertEqual(try store.migrationRecords().map(\.version).first, 1)
    }

    func testSelectionsByKindStatusAndFilter() throws {
        let parent = try insert(.pretrain)
        let a = try insert(.finetune, regime: "moe", seed: 0, parent: parent.hash)
        let b = try insert(.finetune, regime: "all", seed: 1, parent: parent.hash)
        let c = try insert(.finetune, regime: "moe", seed: 2, parent: parent.hash)
        try complete(a, [])

        XCTAssertEqual(try store.runs(RunSelection()).map(\.hash), [parent.hash, a.hash, b.hash, c.hash], "stored order")
        XCTAssertEqual(try store.runs(RunSelection(kind: .finetune)).map(\.hash), [a.hash, b.hash, c.hash])
        XCTAssertEqual(try store.runs(RunSelection(kind: .finetune, filter: WhereFilter("regime=moe"))).map(\.hash),
                       [a.hash, c.hash])
        XCTAssertEqual(try store.runs(RunSelection(status: .completed)).map(\.hash), [a.hash])
        XCTAssertEqual(try store.runCount(RunSelection(kind: .finetune, filter: WhereFilter("regime=moe"))), 2)
        XCTAssertEqual(try store.runCount(RunSelection(kind: .pretrain, status: .completed)), 0)
    }

    func testSeriesValuesTakeTheFirstStepOrTheMeanAndSkipMissing() throws {
        let a = try insert(.pretrain, seed: 0), b = try insert(.pretrain, seed: 1), c = try insert(.pretrain, seed: 2)
        try complete(a, [(3, Split.timing, MetricName.stepTime, 0.5), (1, Split.timing, MetricName.stepTime, 0.25),
                         (2, Split.timing, MetricName.stepTime, .nan),
                         (0, Split.info, MetricName.parameters, 100), (5, Split.info, MetricName.parameters, 999)])
        try complete(b, [(0, Split.info, MetricName.parameters, .nan), (1, Split.timing, MetricName.stepTime, 2)])
        _ = c

        let means = try store.seriesValues(.mean, name: MetricName.stepTime, split: Split.timing, of: RunSelection())
        XCTAssertEqual(means, [a.hash: 0.375, b.hash: 2], "NaN points are left out; runs without the series absent")
        let firsts = try store.seriesValues(.first, name: MetricName.parameters, split: Split.info, of: RunSelection())
        XCTAssertEqual(firsts, [a.hash: 100], "the first step's value; a NaN first value is absent")
        XCTAssertEqual(try store.seriesValues(.mean, name: "never", split: Split.timing, of: RunSelection()), [:])
        XCTAssertEqual(try store.seriesValues(.first, name: MetricName.parameters, split: Split.info,
                                              of: RunSelection(filter: WhereFilter("seed=1"))), [:])
    }

    func testMetricPointsReadOnlyTheNamedSeriesOfTheSelectedRuns() throws {
        let a = try insert(.pretrain, seed: 0), b = try insert(.pretrain, seed: 1)
        try complete(a, [(10, Split.val, MetricName.accuracy, 0.5), (10, Split.train, MetricName.loss, 1.5),
                         (10, Split.test, MetricName.accuracy, 0.4), (10, Split.val, MetricName.entropy, 0.9),
                         (5, Split.val, MetricName.accuracy, .nan)])
        try complete(b, [(10, Split.val, MetricName.accuracy, 0.7)])

        let points = try store.metricPoints(names: [MetricName.accuracy, MetricName.loss], splits: [Split.train, Split.val],
                                            of: RunSelection(filter: WhereFilter("seed=0")))
        XCTAssertEqual(points, [
            MetricPoint(runHash: a.hash, step: 5, split: Split.val, name: MetricName.accuracy, value: .nan),
            MetricPoint(runHash: a.hash, step: 10, split: Split.train, name: MetricName.loss, value: 1.5),
            MetricPoint(runHash: a.hash, step: 10, split: Split.val, name: MetricName.accuracy, value: 0.5),
        ])
        XCTAssertEqual(try store.metricPoints(names: [MetricName.accuracy], splits: [Split.val], of: RunSelection()).count, 3)
        XCTAssertEqual(try store.metricPoints(names: [], splits: [Split.val], of: RunSelection()), [])
    }

    func testSweepMembershipsOfSelectedRuns() throws {
        let a = try insert(.pretrain, regime: "moe", seed: 0), b = try insert(.pretrain, regime: "all", seed: 1)
        let first = try store.createSweep(name: "one", specJSON: #"{"grid": {"seed": [0, 1]}}"#)
        let second = try store.createSweep(name: "two", specJSON: "{}")
        try store.addSweepMember(sweepId: first, runHash: b.hash)
        try store.addSweepMember(sweepId: first, runHash: a.hash)
        try store.addSweepMember(sweepId: second, runHash: a.hash)

        func pairs(_ selection: RunSelection) throws -> [String] {
            try store.sweepMemberships(of: selection).map { "\($0.sweepId) \($0.runHash)" }
        }
        XCTAssertEqual(try pairs(RunSelection()), ["\(first) \(b.hash)", "\(first) \(a.hash)", "\(second) \(a.hash)"])
        XCTAssertEqual(try pairs(RunSelection(filter: WhereFilter("regime=all"))), ["\(first) \(b.hash)"])
        XCTAssertEqual(try store.sweepMembers(sweepId: first), [b.hash, a.hash])
        XCTAssertEqual(try store.sweeps().map(\.name), ["one", "two"])
    }

    func testLineageWalksFromTheRunToItsRoot() throws {
        let root = try insert(.pretrain)
        let child = try insert(.finetune, seed: 1, parent: root.hash)
        let grandchild = try insert(.finetune, seed: 2, parent: child.hash)
        XCTAssertEqual(try store.lineage(of: grandchild.hash).map(\.hash), [grandchild.hash, child.hash, root.hash])
        XCTAssertEqual(try store.lineage(of: root.hash), [root])
        assertThrows(.unknownRun(String(repeating: "e", count: 64))) {
            try store.lineage(of: String(repeating: "e", count: 64))
        }
        assertThrows(.invalidHash("xyz")) { try store.lineage(of: "xyz") }
    }

    func testTagsDecodeThroughTheirRecord() throws {
        let run = try insert(.pretrain)
        try store.addTag(runHash: run.hash, tag: "paper")
        try store.addTag(runHash: run.hash, tag: "draft")
        XCTAssertEqual(try store.tags(runHash: run.hash), ["draft", "paper"])
    }
}
