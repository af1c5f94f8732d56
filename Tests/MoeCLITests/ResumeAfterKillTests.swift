import Foundation
import MoeTestSupport
import XCTest

/// A run killed with SIGKILL after its first checkpoint is listed as interrupted, resumes when
/// the same command is run again, and ends with the same checkpoints (parameters, optimizer
/// state) and the same metric series as an uninterrupted run of the same config.
final class ResumeAfterKillTests: XCTestCase {
    func testPretrainingRunKilledAndResumedMatchesAnUninterruptedRun() throws {
        let killed = StoreUnderTest.fresh("cli-kill-pretrain")
        let reference = StoreUnderTest.fresh("cli-kill-pretrain-reference")
        defer { killed.remove(); reference.remove() }
        let dir = killed.dir.deletingLastPathComponent()
        let data = try Fixtures.writeData(in: dir)
        let config = try write(Fixtures.pretrainConfig(corpus: data.corpus, steps: 60), to: dir.appendingPathComponent("pretrain.json"))
        let command = ["run", config.path, "--set", "checkpoint_interval=20", "--set", "eval_interval=20"]
        try assertKillAndResumeMatches(command, killed: killed, reference: reference, steps: 60, checkpointInterval: 20)
    }

    func testFineTuningRunKilledAndResumedMatchesAnUninterruptedRun() throws {
        let (killed, reference, data, parentHash) = try storesWithParent("cli-kill-finetune")
        defer { killed.remove(); reference.remove() }
        let dir = killed.dir.deletingLastPathComponent()

        let config = try write(Fixtures.finetuneConfig(task: data.task, parent: String(parentHash.prefix(12)), regime: "non-moe", steps: 120),
                               to: dir.appendingPathComponent("finetune.json"))
        let command = ["run", config.path, "--set", "checkpoint_interval=30", "--set", "eval_interval=30"]
        try assertKillAndResumeMatches(command, killed: killed, reference: reference, steps: 120, checkpointInterval: 30)
    }

    /// Early stopping and test-at-best survive a kill: the resumed run replays the stored
    /// validation accuracies, stops at the same step, and writes the same series.
    func testEarlyStoppedRunKilledAndResumedMatchesAnUninterruptedRun() throws {
        try assertEarlyStoppedRunSurvivesAKill("cli-kill-early", extra: ["test_eval": "\"best\""], killAfter: 2) { reference, hash, stopped in
            // Test accuracy is stored at every new best validation step, and at the last.
            let tests = try reference.sql("SELECT step FROM metric_points WHERE run_hash = '\(hash)' AND name = 'acc' AND split = 'test' ORDER BY step")
            XCTAssertGreaterThan(tests.split(separator: "\n").count, 1, "test evaluated only once: \(tests)")
            XCTAssertEqual(tests.split(separator: "\n").last.map(String.init), String(stopped))
        }
    }

    /// `test_eval: selected` survives a kill: checkpoints keep the parameters of the best
    /// validation step so far, so the resumed run measures the same parameters after
    /// training and writes the same series and checkpoints as an uninterrupted one.
    func testSelectedEvaluationRunKilledAndResumedMatchesAnUninterruptedRun() throws {
        try assertEarlyStoppedRunSurvivesAKill("cli-kill-selected", extra: ["test_eval": "\"selected\"", "periodic_eval_examples": "8"],
                                               killAfter: 3) { reference, hash, stopped in
            let selected = "SELECT DISTINCT step FROM metric_points WHERE run_hash = '\(hash)' AND name = 'selected_acc'"
            XCTAssertEqual(try reference.sql(selected), String(stopped - 15), "patience 3 at interval 5: the best step is 15 before the stop")
        }
    }

    /// Runs a fine-tuning config with early stopping (patience 3, lr 0.01, evaluation and a
    /// checkpoint every 5 steps, and `extra`) uninterrupted in one store; in a copy, kills
    /// it after `killAfter` checkpoints and runs it again. The two must stop at the same
    /// step with the same series and checkpoints; `check` then looks at the uninterrupted
    /// run (store, hash, the step it stopped at).
    private func assertEarlyStoppedRunSurvivesAKill(_ label: String, extra: [String: String], killAfter: Int,
                                                    check: (StoreUnderTest, String, Int) throws -> Void) throws {
        let (killed, reference, data, parentHash) = try storesWithParent(label)
        defer { killed.remove(); reference.remove() }
        let dir = killed.dir.deletingLastPathComponent()
        let config = try write(Fixtures.finetuneConfig(task: data.task, parent: String(parentHash.prefix(12)), steps: 400,
                                                       extra: extra.merging(["patience": "3", "lr": "0.01"]) { a, _ in a }),
                               to: dir.appendingPathComponent("finetune.json"))
        let command = ["run", config.path, "--set", "checkpoint_interval=5", "--set", "eval_interval=5"]
        let uninterrupted = try reference.moerec(command)
        XCTAssertEqual(uninterrupted.status, 0, uninterrupted.stderr)
        let hash = try XCTUnwrap(Output.runHash(uninterrupted.stdout), uninterrupted.stdout)
        let stopped = try XCTUnwrap(Int(try reference.sql("SELECT steps_done FROM runs WHERE hash = '\(hash)'")))
        XCTAssertLessThan(stopped, 400, "patience 3 never stopped the run early")

        let checkpoints = "SELECT count(*) FROM checkpoints c JOIN runs r ON r.id = c.run_id WHERE r.hash = '\(hash)'"
        let victim = try killed.start(command)
        _ = Poll.until(timeout: 120, interval: 0.02) { (killed.count(checkpoints) ?? 0) >= killAfter }
        victim.signal(SIGKILL)
        _ = try victim.wait(timeout: 60)
        let stepsAtKill = try XCTUnwrap(Int(try killed.sql("SELECT steps_done FROM runs WHERE hash = '\(hash)'")))
        XCTAssertLessThan(stepsAtKill, stopped, "the run finished before the kill")
        let resumed = try killed.moerec(command)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("completed (resumed from step"), resumed.stdout)
        XCTAssertEqual(try killed.sql("SELECT steps_done FROM runs WHERE hash = '\(hash)'"), String(stopped))
        XCTAssertEqual(try killed.metricSeries(hash), try reference.metricSeries(hash))
        XCTAssertEqual(try killed.checkpointManifests(hash), try reference.checkpointManifests(hash))
        try check(reference, hash, stopped)
    }

    /// Two stores holding the same completed pretraining parent (the second a copy of the
    /// first), the generated data, and the parent's hash.
    private func storesWithParent(_ label: String) throws
        -> (killed: StoreUnderTest, reference: StoreUnderTest, data: (corpus: URL, task: URL), parent: String) {
        let killed = StoreUnderTest.fresh(label)
        let dir = killed.dir.deletingLastPathComponent()
        let data = try Fixtures.writeData(in: dir)
        let parentConfig = try write(Fixtures.pretrainConfig(corpus: data.corpus, steps: 20), to: dir.appendingPathComponent("pretrain.json"))
        let parent = try killed.moerec(["run", parentConfig.path, "--set", "checkpoint_interval=1000"])
        XCTAssertEqual(parent.status, 0, parent.stderr)
        let parentHash = try XCTUnwrap(Output.runHash(parent.stdout), parent.stdout)
        return (killed, try killed.copy(label + "-reference"), data, parentHash)
    }

    private func assertKillAndResumeMatches(_ command: [String], killed: StoreUnderTest, reference: StoreUnderTest,
                                            steps: Int, checkpointInterval: Int,
                                            file: StaticString = #filePath, line: UInt = #line) throws {
        // The uninterrupted run first: it gives the hash to watch for.
        let uninterrupted = try reference.moerec(command)
        XCTAssertEqual(uninterrupted.status, 0, uninterrupted.stderr, file: file, line: line)
        let hash = try XCTUnwrap(Output.runHash(uninterrupted.stdout), uninterrupted.stdout, file: file, line: line)

        // Kill as soon as the first checkpoint is recorded.
        let checkpoints = "SELECT count(*) FROM checkpoints c JOIN runs r ON r.id = c.run_id WHERE r.hash = '\(hash)'"
        let victim = try killed.start(command)
        let checkpointed = Poll.until(timeout: 120, interval: 0.02) { (killed.count(checkpoints) ?? 0) >= 1 }
        victim.signal(SIGKILL)
        let killedResult = try victim.wait(timeout: 60)
        XCTAssertTrue(checkpointed, "no checkpoint appeared: \(killedResult.stderr)", file: file, line: line)
        XCTAssertEqual(killedResult.status, SIGKILL, "the run was not killed by the signal", file: file, line: line)
        let stepsAtKill = try XCTUnwrap(Int(try killed.sql("SELECT steps_done FROM runs WHERE hash = '\(hash)'")), file: file, line: line)
        XCTAssertLessThan(stepsAtKill, steps, "the run finished before the kill", file: file, line: line)

        // The next command that opens the store sees it as interrupted, not running.
        let listed = try killed.runs(where: "hash=\(hash.prefix(16))", file: file, line: line)
        XCTAssertEqual(listed.count, 1, file: file, line: line)
        XCTAssertEqual(listed.first?["status"] as? String, "interrupted", "\(listed)", file: file, line: line)

        let resumed = try killed.moerec(command)
        XCTAssertEqual(resumed.status, 0, resumed.stderr, file: file, line: line)
        XCTAssertEqual(Output.runHash(resumed.stdout), hash, file: file, line: line)
        XCTAssertTrue(resumed.stderr.contains("resuming \(hash.prefix(12)) from its checkpoint at step"), resumed.stderr,
                      file: file, line: line)
        XCTAssertTrue(resumed.stdout.contains("completed (resumed from step"), resumed.stdout, file: file, line: line)
        XCTAssertEqual(try killed.statuses(file: file, line: line)[hash], "completed", file: file, line: line)

        // Same checkpoints — every tensor and optimizer-moment object hash, loader state — and
        // the same parameter digests as `show` prints them.
        let expectedSteps = Array(stride(from: checkpointInterval, through: steps, by: checkpointInterval))
        let stepsStored = try killed.sql("SELECT c.step FROM checkpoints c JOIN runs r ON r.id = c.run_id WHERE r.hash = '\(hash)' ORDER BY c.step")
        XCTAssertEqual(stepsStored, expectedSteps.map(String.init).joined(separator: "\n"), file: file, line: line)
        let manifests = try killed.checkpointManifests(hash).split(separator: "\n")
        let expectedManifests = try reference.checkpointManifests(hash).split(separator: "\n")
        XCTAssertEqual(manifests.count, expectedManifests.count, file: file, line: line)
        for (a, b) in zip(manifests, expectedManifests) where a != b {
            XCTFail("checkpoint at step \(a.prefix { $0 != "|" }) differs from the uninterrupted run's", file: file, line: line)
        }
        let shown = try killed.shownCheckpoints(hash, file: file, line: line)
        XCTAssertEqual(shown.count, expectedSteps.count, file: file, line: line)
        XCTAssertEqual(shown, try reference.shownCheckpoints(hash, file: file, line: line), file: file, line: line)

        // Same metric series, point for point (wall-clock timings aside).
        let series = try killed.metricSeries(hash), expected = try reference.metricSeries(hash)
        XCTAssertGreaterThan(expected.split(separator: "\n").count, steps, "too few metric points to compare", file: file, line: line)
        if series != expected {
            let a = series.split(separator: "\n"), b = expected.split(separator: "\n")
            let first = zip(a, b).first { $0 != $1 }.map { "resumed \($0.0) vs uninterrupted \($0.1)" } ?? "counts \(a.count) vs \(b.count)"
            XCTFail("metric series differ from the uninterrupted run; first difference: \(first)", file: file, line: line)
        }
        XCTAssertEqual(try killed.sql("SELECT steps_done FROM runs WHERE hash = '\(hash)'"), String(steps), file: file, line: line)
    }
}
