import Foundation
import MoeTestSupport
import XCTest

/// A sweep interrupted part-way (SIGINT, then SIGKILL) and run again with the same command
/// finishes its cells without redoing the completed ones.
final class SweepResumeTests: XCTestCase {
    func testInterruptedSweepResumesWithoutRedoingCompletedCells() throws {
        let store = StoreUnderTest.fresh("cli-sweep")
        defer { store.remove() }
        let dir = store.dir.deletingLastPathComponent()
        let data = try Fixtures.writeData(in: dir)
        let config = try write(Fixtures.pretrainConfig(corpus: data.corpus, steps: 60), to: dir.appendingPathComponent("pretrain.json"))
        // Three cells of ~2 s each; a checkpoint every 20 steps gives an interrupted cell a resume
        // point, and two thirds of a cell (~1 s) are left after its first one to interrupt it in.
        let sweep = ["sweep", config.path, "--grid", "seed=0,1,2", "--set", "checkpoint_interval=20", "--set", "eval_interval=20"]
        let completed = "SELECT count(*) FROM runs WHERE status = 'completed'"
        let doneAndNextCheckpointed = """
            SELECT (SELECT count(*) FROM runs WHERE status = 'completed') >= 1
               AND (SELECT count(*) FROM checkpoints c JOIN runs r ON r.id = c.run_id WHERE r.status <> 'completed') >= 1
            """

        // 1. SIGINT once a cell is done and the next one has a checkpoint: it stops after the current step.
        let first = try store.start(sweep)
        let reached = Poll.until(timeout: 120, interval: 0.02) { store.count(doneAndNextCheckpointed) == 1 }
        first.signal(SIGINT)
        let firstResult = try first.wait(timeout: 120)
        XCTAssertTrue(reached, "the sweep never completed a cell: \(firstResult.stderr)")
        XCTAssertEqual(firstResult.status, 130, "a sweep stopped by SIGINT exits 130: \(firstResult.stderr)")
        var statuses = try store.statuses()
        XCTAssertEqual(statuses.count, 3, "all three cells are registered: \(statuses)")
        let doneAfterFirst = statuses.filter { $0.value == "completed" }.map(\.key)
        XCTAssertGreaterThanOrEqual(doneAfterFirst.count, 1)
        XCTAssertLessThan(doneAfterFirst.count, 3, "the sweep finished before the interrupt: \(statuses)")
        XCTAssertEqual(Set(statuses.values).subtracting(["completed", "interrupted", "queued"]), [], "\(statuses)")
        let resumable = try store.sql("""
            SELECT DISTINCT r.hash FROM runs r JOIN checkpoints c ON c.run_id = r.id WHERE r.status = 'interrupted'
            """).split(separator: "\n").map(String.init)
        XCTAssertFalse(resumable.isEmpty, "SIGINT left no interrupted cell with a checkpoint: \(statuses)")
        var rows = try Dictionary(uniqueKeysWithValues: doneAfterFirst.map { ($0, try store.lifecycleRow($0)) })
        var series = try Dictionary(uniqueKeysWithValues: doneAfterFirst.map { ($0, try store.metricSeries($0)) })

        // 2. The same command again: the interrupted cell resumes from its checkpoint, the
        // completed ones are not trained. SIGKILL it once one more cell has completed.
        let second = try store.start(sweep)
        let progressed = Poll.until(timeout: 120, interval: 0.02) { (store.count(completed) ?? 0) > doneAfterFirst.count }
        second.signal(SIGKILL)
        let secondResult = try second.wait(timeout: 60)
        XCTAssertTrue(progressed, "the resumed sweep completed no further cell: \(secondResult.stderr)")
        for hash in doneAfterFirst {
            XCTAssertEqual(Output.trainedSteps(of: hash, in: secondResult.stderr), [], "completed cell \(hash.prefix(12)) was retrained")
        }
        for hash in resumable {
            XCTAssertTrue(secondResult.stderr.contains("resuming \(hash.prefix(12)) from its checkpoint"),
                          "interrupted cell \(hash.prefix(12)) did not resume: \(secondResult.stderr)")
        }
        statuses = try store.statuses()
        let doneAfterSecond = statuses.filter { $0.value == "completed" }.map(\.key)
        XCTAssertLessThan(doneAfterSecond.count, 3, "the sweep finished before the kill: \(statuses)")
        XCTAssertFalse(statuses.values.contains("running"), "a killed cell still shows running: \(statuses)")
        try assertUnchanged(store, rows: rows, series: series)
        for hash in doneAfterSecond where rows[hash] == nil {
            rows[hash] = try store.lifecycleRow(hash)
            series[hash] = try store.metricSeries(hash)
        }

        // 3. And once more, to the end: every cell completed, the earlier ones untouched.
        let third = try store.moerec(sweep)
        XCTAssertEqual(third.status, 0, third.stderr)
        XCTAssertTrue(third.stderr.contains("3 cells run or cached"), third.stderr)
        for hash in doneAfterSecond {
            XCTAssertEqual(Output.trainedSteps(of: hash, in: third.stderr), [], "completed cell \(hash.prefix(12)) was retrained")
        }
        let trainedNow = statuses.keys.filter { !Output.trainedSteps(of: $0, in: third.stderr).isEmpty }
        XCTAssertEqual(trainedNow.count, 3 - doneAfterSecond.count, "cells trained by the last run: \(trainedNow)")
        try assertUnchanged(store, rows: rows, series: series)
        let final = try store.runs()
        XCTAssertEqual(final.count, 3)
        for row in final {
            XCTAssertEqual(row["status"] as? String, "completed", "\(row)")
            XCTAssertEqual(row["steps"] as? Int, 60, "\(row)")
        }
    }

    private func assertUnchanged(_ store: StoreUnderTest, rows: [String: String], series: [String: String],
                                 file: StaticString = #filePath, line: UInt = #line) throws {
        for (hash, row) in rows {
            XCTAssertEqual(try store.lifecycleRow(hash), row, "completed cell \(hash.prefix(12)) was rewritten", file: file, line: line)
            XCTAssertEqual(try store.metricSeries(hash), series[hash], "metrics of \(hash.prefix(12)) changed", file: file, line: line)
        }
    }
}
