import Foundation
import MoeStore
import XCTest

final class MetricTests: XCTestCase {
    private var dir: TemporaryDirectory!
    private var store: Store!
    private var run: RunRecord!

    override func setUpWithError() throws {
        dir = TemporaryDirectory()
        store = try Store(path: dir.file("moerec.sqlite"))
        run = try store.insertRun(kind: .pretrain, config: sampleConfig(), parentHash: nil,
                                  datasetFingerprint: fingerprint, numericsVersion: 1)
    }

    override func tearDown() {
        store = nil
        dir = nil
    }

    func testBatchRoundTripInStepSplitNameOrder() throws {
        let writer = try store.metricWriter(runHash: run.hash, batchSize: 7)
        var expected: [MetricPoint] = []
        for step in stride(from: 0, to: 50, by: 5) {
            for (split, name) in [("train", "loss"), ("train", "acc"), ("val", "loss"), ("val", "acc"), ("train", "router_entropy")] {
                let value = Double(step) * 0.5 + Double(name.count) + (split == "val" ? 0.25 : 0)
                try writer.add(step: step, split: split, name: name, value: value)
                expected.append(MetricPoint(runHash: run.hash, step: step, split: split, name: name, value: value))
            }
        }
        XCTAssertEqual(writer.pointsWritten, 49, "batches of 7 flushed automatically")
        XCTAssertEqual(writer.pendingCount, 1)
        try writer.flush()
        XCTAssertEqual(writer.pointsWritten, 50)
        XCTAssertEqual(writer.pendingCount, 0)

        expected.sort { ($0.step, $0.split, $0.name) < ($1.step, $1.split, $1.name) }
        XCTAssertEqual(try store.allMetrics(runHash: run.hash), expected)

        let valLoss = try store.metrics(runHash: run.hash, name: "loss", split: "val")
        XCTAssertEqual(valLoss.map(\.step), Array(stride(from: 0, to: 50, by: 5)))
        XCTAssertEqual(valLoss.first?.value, 4.25)
        XCTAssertTrue(try store.metrics(runHash: run.hash, name: "nope", split: "val").isEmpty)

        let summary = try store.metricSummary(runHash: run.hash)
        let trainLoss = try XCTUnwrap(summary.first { $0.name == "loss" && $0.split == "train" })
        XCTAssertEqual(trainLoss.count, 10)
        XCTAssertEqual(trainLoss.firstStep, 0)
        XCTAssertEqual(trainLoss.lastStep, 45)
        XCTAssertEqual(trainLoss.lastValue, 45 * 0.5 + 4)
        XCTAssertEqual(trainLoss.minValue, 4)
    }

    func testRewritingAStepReplacesInsteadOfDuplicating() throws {
        let first = try store.metricWriter(runHash: run.hash, batchSize: 1000)
        for step in 0..<100 { try first.add(step: step, split: "train", name: "loss", value: Double(step)) }
        try first.flush()
        // A resumed run re-writes steps 50..<150, with one step twice in the same batch.
        let resumed = try store.metricWriter(runHash: run.hash, batchSize: 1000)
        for step in 50..<150 { try resumed.add(step: step, split: "train", name: "loss", value: Double(step) + 0.5) }
        try resumed.add(step: 60, split: "train", name: "loss", value: -1)
        try resumed.flush()

        let series = try store.metrics(runHash: run.hash, name: "loss", split: "train")
        XCTAssertEqual(series.count, 150, "one row per step")
        XCTAssertEqual(series.map(\.step), Array(0..<150))
        XCTAssertEqual(series[49].value, 49)
        XCTAssertEqual(series[50].value, 50.5)
        XCTAssertEqual(series[60].value, -1, "the later write of a step in one batch wins")
        XCTAssertEqual(try count(store, "SELECT count(*) FROM metrics"), 150)
    }

    func testNaNIsKeptAsNaNAndNewSplitsAreInterned() throws {
        let writer = try store.metricWriter(runHash: run.hash)
        try writer.add(step: 3, split: "train", name: "loss", value: .nan)
        try writer.add(step: 3, split: "train_eval", name: "acc", value: .infinity)
        try writer.flush()
        let loss = try store.metrics(runHash: run.hash, name: "loss", split: "train")
        XCTAssertTrue(loss[0].value.isNaN)
        XCTAssertEqual(try store.metrics(runHash: run.hash, name: "acc", split: "train_eval")[0].value, .infinity)
        XCTAssertEqual(try store.splits().map(\.name), ["train", "val", "test", "train_eval"])
        XCTAssertEqual(Set(try store.metricNames().map(\.name)), ["loss", "acc"])
        XCTAssertTrue(try store.metricSummary(runHash: run.hash).first { $0.name == "loss" }?.lastValue?.isNaN ?? false)
    }

    func testStreamingVisitsRowsInOrderWithFilters() throws {
        let other = try store.insertRun(kind: .pretrain, config: sampleConfig(seed: 9), parentHash: nil,
                                        datasetFingerprint: fingerprint, numericsVersion: 1)
        for hash in [run.hash, other.hash] {
            let writer = try store.metricWriter(runHash: hash, batchSize: 100)
            for step in 0..<500 {
                try writer.add(step: step, split: "train", name: "loss", value: Double(step))
                try writer.add(step: step, split: "val", name: "loss", value: Double(step) / 2)
            }
            try writer.flush()
        }
        var seen = 0
        var last: (String, Int)? = nil
        try store.forEachMetric { point in
            if let last { XCTAssertTrue((last.0, last.1) <= (point.runHash, point.step)) }
            last = (point.runHash, point.step)
            seen += 1
        }
        XCTAssertEqual(seen, 2000)

        var valPoints = 0
        try store.forEachMetric(runHash: other.hash, name: "loss", split: "val") { point in
            XCTAssertEqual(point.runHash, other.hash)
            XCTAssertEqual(point.value, Double(point.step) / 2)
            valPoints += 1
        }
        XCTAssertEqual(valPoints, 500)

        // The callback may call back into the store (a report looking up each run).
        var lookups = 0
        try store.forEachMetric(runHash: run.hash, name: "loss", split: "train") { point in
            if point.step % 100 == 0 {
                XCTAssertEqual(try store.run(hash: point.runHash)?.hash, run.hash)
                XCTAssertEqual(try store.metrics(runHash: point.runHash, name: "loss", split: "train").count, 500)
                lookups += 1
            }
        }
        XCTAssertEqual(lookups, 5)
    }

    func testCompletedRunsAcceptNoMoreMetricsAndBadInputIsRejected() throws {
        let writer = try store.metricWriter(runHash: run.hash)
        try writer.add(step: 0, split: "train", name: "loss", value: 1)
        try writer.flush()
        try store.markRunning(hash: run.hash, environment: RunEnvironment())
        try store.markCompleted(hash: run.hash, wallSeconds: 1, steps: 1)
        try writer.add(step: 1, split: "train", name: "loss", value: 2)
        assertThrows(.runCompleted(run.hash)) { try writer.flush() }
        XCTAssertEqual(writer.pendingCount, 1, "a failed flush keeps its points")
        XCTAssertEqual(try store.metrics(runHash: run.hash, name: "loss", split: "train").count, 1)

        XCTAssertThrowsError(try writer.add(step: -1, split: "train", name: "loss", value: 0))
        XCTAssertThrowsError(try writer.key(name: "", split: "train"))
        XCTAssertThrowsError(try store.metricWriter(runHash: run.hash, batchSize: 0))
        assertThrows(.unknownRun(String(repeating: "3", count: 64))) {
            try store.metricWriter(runHash: String(repeating: "3", count: 64))
        }
    }

    /// `moerec bench store` reports this figure; the test checks the rows and prints the
    /// rate (it asserts no speed: the machine is shared).
    func testIngestBenchmarkWritesEveryPoint() throws {
        let path = dir.file("bench.sqlite")
        let points = 1_000_000
        let result = try StoreBenchmark.ingest(path: path, points: points, batchSize: 50_000)
        print("store ingest: \(points) points in \(String(format: "%.3f", result.seconds)) s = \(Int(result.pointsPerSecond)) points/s")
        let bench = try Store(path: path)
        XCTAssertEqual(try count(bench, "SELECT count(*) FROM metrics"), points)
        XCTAssertGreaterThan(result.pointsPerSecond, 0)
    }
}
