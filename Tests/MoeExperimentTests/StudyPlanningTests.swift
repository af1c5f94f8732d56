import XCTest
import MoeExperiment
import MoeJSON
import MoeMetricNames
import MoeStore
import MoeTestSupport
import MoeTrain

final class StudyPlanningTests: XCTestCase {
    func testParallelMapKeepsOrderAndRethrowsTheLowestFailingIndex() throws {
        struct Failure: Error, Equatable { let index: Int }
        let squares = try parallelMap(10_000, workers: 4, stop: StopFlag()) { $0 * $0 }
        XCTAssertEqual(squares, (0..<10_000).map { $0 * $0 })
        XCTAssertThrowsError(try parallelMap(10_000, workers: 4, stop: StopFlag()) { i -> Int in
            if i == 7_001 || i == 9_999 || i == 4_321 { throw Failure(index: i) }
            return i
        }) { XCTAssertEqual($0 as? Failure, Failure(index: 4_321)) }
        let stop = StopFlag()
        stop.raise(signal: SIGTERM)
        XCTAssertThrowsError(try parallelMap(100, workers: 2, stop: stop) { $0 }) {
            XCTAssertEqual(($0 as? Interrupted)?.signal, SIGTERM)
        }
    }

    /// Cells planned in parallel come out in grid order with the hashes one-at-a-time
    /// planning gives, and are registered as one sweep whose members are exactly they.
    func testParallelPlanningMatchesSerialPlanningCellByCell() throws {
        let dir = TestSupport.temporaryDirectory("study-plan")
        let corpus = dir.appendingPathComponent("corpus.jsonl")
        try (0..<50).map { "{\"text\": \"line \($0) of a small corpus\"}\n" }.joined().write(to: corpus, atomically: true, encoding: .utf8)
        let base: [String: JSONValue] = ["kind": "pretrain", "corpus": .string(corpus.path), "context": 16, "d_model": 16,
                                         "layers": 1, "heads": 2, "d_ff": 32, "experts": 2, "top_k": 1, "steps": 2]
        // One invalid value (heads must divide d_model) among valid ones: skipped, not fatal.
        let study = Study(name: "plan", base: base, parent: nil,
                          grid: [("seed", (0..<300).map { .int(Int64($0)) }), ("heads", [2, 3, 4])], tables: [])
        let store = try Store(path: dir.appendingPathComponent("moerec.sqlite").path)
        let executor = try Executor(store: store, threads: 1)
        executor.log = { _ in }
        let checked = try StudyExecutor.check(study, stop: StopFlag())
        XCTAssertEqual(checked.cells.count, 900)
        XCTAssertEqual(checked.invalid.count, 300)
        let studyExecutor = StudyExecutor(study: study, executor: executor)
        studyExecutor.log = { _ in }
        let prepared = try studyExecutor.prepare(checked, launcher: nil)
        XCTAssertEqual(prepared.skipped, 300)
        let serial = try checked.valid.map { try executor.plan($0.config, explicit: $0.explicit) }
        XCTAssertEqual(prepared.pending.map(\.plan.hash), serial.map(\.hash))
        XCTAssertEqual(prepared.pending.map(\.label), checked.valid.map(\.label))
        XCTAssertEqual(Set(try store.runs(RunSelection(filter: try WhereFilter(runs: "sweep=\(prepared.sweepIds[0])"))).map(\.hash)),
                       Set(serial.map(\.hash)))
        XCTAssertEqual(studyExecutor.phases.map(\.name), ["parents", "plan", "register", "completed"])
    }

    /// Cells resolved and planned from the base's canonical text, with only their grid
    /// keys' members spliced in (the fast path), are the cells the long way gives through
    /// Codable: the same configs, reasons, canonical JSON and hashes, in the same order,
    /// over pretraining grids, fine-tuning grids under a parent config and under a stored
    /// parent, with awkward floats and late keys at and away from their defaults.
    /// `test_examples` widens the test split a run and its baselines see, and nothing
    /// else: validation keeps `eval_examples`, the baselines carry the key (and a new hash)
    /// only when it is set, and a stored baseline config decodes back to the same data.
    func testTestExamplesWidenTheTestSplitOfRunsAndBaselines() throws {
        let dir = TestSupport.temporaryDirectory("test-examples")
        let (_, task) = try Fixtures.writeData(in: dir)
        let data = DataProvider()
        let base: [String: JSONValue] = ["kind": "finetune", "task": .string(task.path), "parent": "ab",
                                         "train_size": 64, "eval_examples": 16]
        let plain = try ConfigResolver.resolve(preset: base).config
        var wide = base
        wide["test_examples"] = 1000
        let widened = try ConfigResolver.resolve(preset: wide).config
        func splits(_ c: RunConfig) throws -> (val: Int, test: Int, fingerprint: String) {
            let p = try data.prepare(c)
            guard case let .classification(_, _, validation, test) = p.data else { throw InputError("not a task") }
            return (validation.count, test.count, p.fingerprint)
        }
        let (val, test, fingerprint) = try splits(plain)
        let (wideVal, wideTest, wideFingerprint) = try splits(widened)
        XCTAssertEqual(val, 16); XCTAssertEqual(test, 16); XCTAssertEqual(wideVal, 16)
        // The fixture's 600 examples leave about 60 for test: the whole split.
        XCTAssertGreaterThan(wideTest, 16); XCTAssertLessThan(wideTest, 1000)
        XCTAssertNotEqual(fingerprint, wideFingerprint)

        for method in BaselineMethod.allCases {
            // A baseline's stored config holds exactly the keys that select its data (with
            // `test_examples` set), which reports match against the fine-tuning runs'.
            guard case let .object(object) = Baselines.config(method, of: widened) else { return XCTFail("not an object") }
            XCTAssertEqual(Set(DataKeys.fineTuning).subtracting(object.keys), [])
            XCTAssertEqual(Set(object.keys).subtracting(DataKeys.fineTuning),
                           method == .linear ? ["kind", "baseline", "seed", "epochs", "lr", "l2", "features"] : ["kind", "baseline"])
            XCTAssertNil(Baselines.config(method, of: plain)["test_examples"])
            XCTAssertEqual(Baselines.config(method, of: widened)["test_examples"], 1000)
            let (decodedMethod, decoded) = try Baselines.decode(Baselines.config(method, of: widened))
            XCTAssertEqual(decodedMethod, method)
            XCTAssertEqual(decoded.testExamples, 1000)
            XCTAssertNotEqual(try Baselines.plan(method, of: plain, data: data).hash,
                              try Baselines.plan(method, of: widened, data: data).hash)
            let scores = try Baselines.scores(try Baselines.plan(method, of: widened, data: data), data: data)
            XCTAssertNotNil(scores.first { $0.split == "test" })
        }
    }

    func testTemplatePlanningMatchesCodablePlanning() throws {
        let dir = TestSupport.temporaryDirectory("study-templates")
        let (corpus, task) = try Fixtures.writeData(in: dir)
        let store = try Store(path: dir.appendingPathComponent("moerec.sqlite").path)
        let executor = try Executor(store: store, threads: 1)
        executor.log = { _ in }
        let model: [String: JSONValue] = ["context": 16, "d_model": 16, "layers": 2, "heads": 2, "d_ff": 32, "experts": 4,
                                          "top_k": 2, "steps": 3]
        let pretraining = model.merging(["kind": "pretrain", "corpus": .string(corpus.path)]) { $1 }
        // A completed pretraining run to name by hash.
        let stored = try Executor.plan(try ConfigResolver.resolve(preset: pretraining).config, explicit: [], known: [:],
                                       data: executor.data)
        _ = try store.insertRun(kind: .pretrain, config: try stored.value, parentHash: nil,
                                datasetFingerprint: stored.prepared.fingerprint, numericsVersion: Executor.numericsVersion,
                                status: .running)
        try store.markCompleted(hash: stored.hash, wallSeconds: 1, steps: 3)
        let finetuning: [String: JSONValue] = ["kind": "finetune", "task": .string(task.path), "train_size": 64,
                                               "eval_examples": 16, "steps": 2, "lr": 3e-3]
        let lrs: [JSONValue] = [1e-4, 3e-3, 0.1, 2, 0.30000000000000004, 1e-7, 0.001]
        let studies = [
            Study(name: "pretraining", base: pretraining, parent: nil, parts: [
                Study.Part(name: "a", grid: [("seed", (0..<40).map { .int(Int64($0)) }), ("lr", lrs),
                                             ("schedule", ["cosine", "constant"])]),
                Study.Part(name: "b", grid: [("experts", [1, 2, 4]), ("heads", [2, 3]), ("dropout", [0.0, 0.1, 0.05, 0.3]),
                                             ("norm", ["layernorm", "rmsnorm"]), ("patience", [0]), ("forgetting_eval", ["parent"]),
                                             ("min_lr_ratio", [0.1, 0, 1e-3]),
                                             ("corpus", [.string(corpus.path)])]),
            ]),
            Study(name: "parent-config", base: finetuning, parent: pretraining, parts: [
                Study.Part(name: "a", grid: [("regime", ["all", "moe", "ffn", "esft-gate", "custom"]), ("seed", [0, 1, 2]),
                                             ("patience", [0, 2]), ("test_eval", ["last", "best"]), ("lr", lrs)]),
                Study.Part(name: "b", grid: [("parent.seed", [0, 1]), ("experts", [1, 4]), ("esft_top_p", [0.2, 0.35]),
                                             ("regime", ["all", "esft-gate", "random-experts"]),
                                             ("forgetting_eval", ["none", "parent"]), ("groups", ["attn,ffn", ""])]),
            ]),
            Study(name: "parent-hash", base: finetuning.merging(["parent": .string(String(stored.hash.prefix(12)))]) { $1 },
                  parent: nil, parts: [
                Study.Part(name: "a", grid: [("regime", ["all", "non-moe", "experts-only"]), ("lr", lrs),
                                             ("esft_sample_tokens", [8192, 512]), ("d_model", [16, 32]),
                                             ("forgetting_eval", ["none", "parent"]), ("seed", [0, 7])]),
            ]),
        ]
        for study in studies {
            let fast = try StudyExecutor.check(study, stop: StopFlag(), templates: true)
            let slow = try StudyExecutor.check(study, stop: StopFlag(), templates: false)
            XCTAssertNotNil(fast.cells.first?.baseChanges, study.name)
            XCTAssertNil(slow.cells.first?.baseChanges, study.name)
            XCTAssertEqual(fast.cells.map(\.config), slow.cells.map(\.config), study.name)
            XCTAssertEqual(fast.cells.map(\.explicit), slow.cells.map(\.explicit), study.name)
            XCTAssertEqual(fast.reasons, slow.reasons, study.name)
            XCTAssertGreaterThan(fast.valid.count, fast.cells.count / 4, "\(study.name): most cells are valid")
            let studyExecutor = StudyExecutor(study: study, executor: executor)
            studyExecutor.log = { _ in }
            let parents = try studyExecutor.planParents(fast)
            let (a, b) = (try studyExecutor.planCells(fast, parents: parents), try studyExecutor.planCells(slow, parents: parents))
            XCTAssertEqual(a.skipped, b.skipped, study.name)
            XCTAssertEqual(a.templated, fast.cells.count - a.skipped, "\(study.name): every cell that plans is planned from templates")
            XCTAssertEqual(b.templated, 0, study.name)
            XCTAssertEqual(a.pending.map(\.label), b.pending.map(\.label), study.name)
            for (x, y) in zip(a.pending.map(\.plan), b.pending.map(\.plan)) {
                XCTAssertEqual(x.configJSON, y.configJSON, study.name)
                XCTAssertEqual(x.hash, y.hash, study.name)
                XCTAssertEqual(x.config, y.config, study.name)
                XCTAssertEqual(x.prepared.fingerprint, y.prepared.fingerprint, study.name)
            }
            XCTAssertEqual(a.members.map { $0.map(\.run.hash) }, b.members.map { $0.map(\.run.hash) }, study.name)
            // And the long way agrees with planning each cell alone from its config.
            if study.parent == nil {
                var seen = Set<String>()
                let serial = fast.valid.compactMap { try? executor.plan($0.config, explicit: $0.explicit).hash }
                XCTAssertEqual(a.pending.map(\.plan.hash), serial.filter { seen.insert($0).inserted }, study.name)
            }
        }
        // Bad values are reported as the long way reports them.
        let bad: [(base: [String: JSONValue], grid: [Study.Axis])] = [
            (pretraining, [("steps", [2, 2.5])]), (pretraining, [("lr", [1e-3, "fast"])]),
            (pretraining.merging(["steps": "many"]) { $1 }, [("seed", [0, 1])]), (pretraining, [("regime", ["moe"])]),
            (pretraining, [("norm", ["batchnorm"])]), (pretraining, [("seed", [0, -1])]),
        ]
        for (base, grid) in bad {
            let study = Study(name: "bad", base: base, parent: nil, grid: grid)
            func outcome(_ templates: Bool) -> String {
                do { return "\(try StudyExecutor.check(study, stop: StopFlag(), templates: templates).reasons)" } catch { return "\(error)" }
            }
            XCTAssertEqual(outcome(true), outcome(false), "\(grid)")
        }
    }
}

/// The study ETA: work done is the finished runs' planned steps plus half those of the runs
/// still running in other processes.
final class StudyProgressTests: XCTestCase {
    func testRemainingCountsRunningRunsHalfDone() throws {
        // One process: 1 of 4 runs of 100 steps in 100 s leaves 300 s.
        XCTAssertEqual(try XCTUnwrap(StudyProgress.remaining(elapsed: 100, totalSteps: [.finetune: 400], doneSteps: [.finetune: 100], runningSteps: [:])),
                       300, accuracy: 1e-9)
        // Two processes: the first run finishes while the second is (on average) half done,
        // so 150 steps took 100 s and 250 remain: 166.7 s, where the finished runs alone
        // (100 steps in 100 s) would say 300 s.
        XCTAssertEqual(try XCTUnwrap(StudyProgress.remaining(elapsed: 100, totalSteps: [.finetune: 400], doneSteps: [.finetune: 100], runningSteps: [.finetune: 100])),
                       100 * 250 / 150, accuracy: 1e-9)
        // Never negative; nothing done yet has no rate.
        XCTAssertEqual(StudyProgress.remaining(elapsed: 10, totalSteps: [.finetune: 100], doneSteps: [.finetune: 100], runningSteps: [.finetune: 100]), 0)
        XCTAssertNil(StudyProgress.remaining(elapsed: 10, totalSteps: [.finetune: 100], doneSteps: [:], runningSteps: [:]))
    }

    /// Steps are weighed by their kind's pace: two parents of 1,000 steps finished in 100 s
    /// (0.1 s a step) leave 8 fine-tuning runs of 100 steps; paced at 0.3 s a step from one
    /// finished run, they are 240 s of the remaining work, where counted like pretraining
    /// steps they would be 80 s.
    func testStepsAreWeighedByTheirKindsPace() throws {
        let total: [StudyProgress.Kind: Int] = [.pretrain: 2000, .finetune: 900]
        let done: [StudyProgress.Kind: Int] = [.pretrain: 2000, .finetune: 100]
        let pace: [StudyProgress.Kind: Double] = [.pretrain: 0.1, .finetune: 0.3]
        // One process, 230 s so far for 200 + 30 s of paced work: 240 s left.
        XCTAssertEqual(try XCTUnwrap(StudyProgress.remaining(elapsed: 230, totalSteps: total, doneSteps: done, runningSteps: [:],
                                                             pace: pace)), 240, accuracy: 1e-9)
        XCTAssertEqual(try XCTUnwrap(StudyProgress.remaining(elapsed: 230, totalSteps: total, doneSteps: done, runningSteps: [:])),
                       230.0 * 800 / 2100, accuracy: 1e-9, "without a pace every step counts alike")

        // The pace comes from the finished runs' own seconds; a kind with none yet is paced
        // like all runs finished so far, and a run not run leaves the work to do.
        var lines: [String] = []
        var progress = StudyProgress(runs: [(.pretrain, 1000), (.pretrain, 1000), (.finetune, 100), (.finetune, 100)],
                                     log: { lines.append($0) })
        progress.finished("p1", kind: .pretrain, steps: 1000, seconds: 100)
        XCTAssertEqual(progress.pace(), [.pretrain: 0.1, .finetune: 0.1])
        progress.finished("p2", kind: .pretrain, steps: 1000, seconds: 100)
        progress.finished("f1", kind: .finetune, steps: 100, seconds: 30)
        XCTAssertEqual(progress.pace()[.finetune] ?? 0, 0.3, accuracy: 1e-12)
        progress.finished("f2", kind: .finetune, steps: 100, seconds: nil)
        XCTAssertEqual(progress.totalSteps[.finetune], 100, "a run not run is no work left")
        XCTAssertEqual(lines.count, 4)
        XCTAssertTrue(lines[0].hasPrefix("done [p1]: 1/4 finished, elapsed 0:00, ETA"), lines[0])
        XCTAssertFalse(lines[3].contains("ETA"), "nothing is left after the last run")
    }
}

/// `bench study`'s split of a study's core time, on runs with known intervals and phases.
final class StudyTimeTests: XCTestCase {
    /// A parent trains alone on 2 threads for 100 s (90 s of steps, 4 of evaluation), then
    /// two 1-thread cells run side by side for 50 s each (40 s of steps, 8 of evaluation,
    /// 1 of checkpoints), and a baseline takes 2 s after them on 1 thread.
    func testEachRunCountsWithItsThreads() throws {
        let t = try XCTUnwrap(StudyTime.split([
            .init(start: 0, end: 100, threads: 2, training: 90, evaluation: 4, checkpoints: 0),
            .init(start: 100, end: 150, threads: 1, training: 40, evaluation: 8, checkpoints: 1),
            .init(start: 100, end: 150, threads: 1, training: 40, evaluation: 8, checkpoints: 1),
            .init(start: 150, end: 152, threads: 1, training: 0, evaluation: nil, checkpoints: 0, isBaseline: true),
        ]))
        XCTAssertEqual(t.span, 152)
        XCTAssertEqual(t.cores, 2)
        XCTAssertEqual(t.coreSeconds, 304)
        XCTAssertEqual(t.training, 90 * 2 + 80)
        XCTAssertEqual(t.evaluation, 4 * 2 + 16)
        XCTAssertEqual(t.checkpoints, 2)
        // In runs: 200 + 100 + 2 core-seconds, less what the phases took.
        XCTAssertEqual(t.otherInRuns, 302 - 260 - 24 - 2)
        XCTAssertEqual(t.outsideRuns, 2, "one core idle while the baseline ran")
        XCTAssertEqual(t.runsWithoutPhaseTimes, 0)
        // Counted as one process, the 2-thread parent would leave a core idle for 100 s.
        let alone = try XCTUnwrap(StudyTime.split([.init(start: 0, end: 100, threads: 1, training: 90, evaluation: 4, checkpoints: 0),
                                                   .init(start: 100, end: 150, threads: 1, training: 40, evaluation: nil, checkpoints: 0),
                                                   .init(start: 100, end: 150, threads: 1, training: 40, evaluation: nil, checkpoints: 0)]))
        XCTAssertEqual(alone.outsideRuns, 100)
        XCTAssertEqual(alone.runsWithoutPhaseTimes, 2)
        XCTAssertNil(StudyTime.split([]))
    }

    /// The fine-tuning runs of a study selected alone: cell A runs 80–150 s and cell B
    /// 100–150 s, each on 1 thread, while their parent (not selected) trained 0–100 s. The
    /// parent's 20 s inside the span are other runs' time, not time outside runs, and the
    /// not-training share is of the cells' own 120 core-seconds.
    func testRunsOutsideTheSelectionAreCountedApart() throws {
        let cells: [StudyTime.Run] = [.init(start: 80, end: 150, threads: 1, training: 60, evaluation: 6, checkpoints: 0),
                                      .init(start: 100, end: 150, threads: 1, training: 30, evaluation: 6, checkpoints: 0)]
        let parent = StudyTime.Run(start: 0, end: 100, threads: 1, training: 90, evaluation: 4, checkpoints: 0)
        let t = try XCTUnwrap(StudyTime.split(cells, others: [parent]))
        XCTAssertEqual(t.coreSeconds, 140)
        XCTAssertEqual(t.otherRuns, 20)
        XCTAssertEqual(t.outsideRuns, 0)
        XCTAssertEqual(t.training + t.evaluation + t.checkpoints + t.otherInRuns + t.otherRuns + t.outsideRuns, t.coreSeconds)
        XCTAssertEqual(t.notTrainingShare, 30.0 / 120.0)
        // Without the parent known, its 20 s would look like time no run used.
        let blind = try XCTUnwrap(StudyTime.split(cells))
        XCTAssertEqual(blind.outsideRuns, 20)
        XCTAssertEqual(blind.notTrainingShare, 50.0 / 140.0)
        // A run wholly outside the span, or more runs than free cores, never counts past the free time.
        XCTAssertEqual(try XCTUnwrap(StudyTime.split(cells, others: [.init(start: 200, end: 300, threads: 1, training: 0, evaluation: nil,
                                                                             checkpoints: 0)])).otherRuns, 0)
        XCTAssertEqual(try XCTUnwrap(StudyTime.split(cells, others: [parent, parent])).otherRuns, 20)
    }
}
