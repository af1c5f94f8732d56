import XCTest
import MoeKernels
import MoeMetricNames
import MoeModel
import MoeTrain
import MoeTestSupport

final class TrainingTests: XCTestCase {
    static func tinyConfig() -> RunConfig {
        var c = RunConfig()
        c.context = 16; c.dModel = 16; c.layers = 2; c.heads = 2; c.dFF = 32; c.experts = 4; c.topK = 2; c.moeEvery = 2
        c.steps = 12; c.batchSize = 4; c.evalInterval = 6; c.evalBatches = 2; c.warmupSteps = 2; c.lr = 3e-3
        c.dropout = 0.1; c.expertDropout = 0.2; c.evalExamples = 16; c.checkpointInterval = 6
        return c
    }

    static let corpus: [UInt8] = Array((0..<4000).map { i -> UInt8 in
        let words = ["cat: a small animal\n", "dog: a loyal animal\n", "run: move fast\n", "tree: a tall plant\n"]
        let w = Array(words[(i / 20) % 4].utf8)
        return w[i % w.count]
    })

    static func classification(context: Int) -> TrainingData {
        func ex(_ i: Int) -> EncodedExample {
            let label = i % 3
            let text = Array(["red apple \(i)", "blue sky \(i)", "green grass \(i)"][label].utf8)
            return TrainingData.encode(text: text, label: label, context: context)
        }
        return .classification(classes: 3, train: (0..<40).map(ex), validation: (40..<52).map(ex), test: (52..<60).map(ex))
    }

    func pretrain(_ config: RunConfig) throws -> (MemorySink, [Float]) {
        let sink = MemorySink()
        let trainer = try Trainer(config: config, data: .corpus(train: Self.corpus, validation: Array(Self.corpus.reversed())), sink: sink)
        XCTAssertEqual(try trainer.run(), .completed(steps: config.steps))
        return (sink, Array(trainer.model.params.buffer))
    }

    /// Same config, seed and thread count ⇒ identical metric series and parameters, bit for bit.
    func testTwoIdenticalTrainingsAreBitIdentical() throws {
        let (a, pa) = try pretrain(Self.tinyConfig())
        let (b, pb) = try pretrain(Self.tinyConfig())
        let keep = { (p: MemorySink.Point) in p.split != Split.timing }
        XCTAssertEqual(a.points.filter(keep), b.points.filter(keep))
        XCTAssertTrue(pa.withUnsafeBytes { x in pb.withUnsafeBytes { y in x.elementsEqual(y) } }, "parameters differ")
        var other = Self.tinyConfig(); other.seed = 1
        let (_, pc) = try pretrain(other)
        XCTAssertNotEqual(pa, pc, "a different seed must change the run")
    }

    /// The engine splits every pass over its workers without splitting any sum, so the
    /// thread count changes nothing: 1, 2 and 3 workers give the same metric series and
    /// parameters, bit for bit, with dropout and expert dropout on.
    func testThreadCountDoesNotChangeResults() throws {
        let saved = Blas.threads
        defer { Blas.threads = saved }
        var c = Self.tinyConfig(); c.dModel = 32; c.dFF = 96; c.context = 24; c.batchSize = 6; c.steps = 8
        var runs: [(MemorySink, [Float])] = []
        for threads in [1, 2, 3] {
            Blas.threads = threads
            runs.append(try pretrain(c))
        }
        let keep = { (p: MemorySink.Point) in p.split != Split.timing }
        let reference = runs[0].0.points.filter(keep)
        for (n, run) in runs.enumerated().dropFirst() {
            let points = run.0.points.filter(keep)
            XCTAssertEqual(points.count, reference.count)
            if let i = Array(zip(points, reference)).firstIndex(where: { $0.0 != $0.1 }) {
                XCTFail("at \(n + 1) threads, step \(points[i].step) \(points[i].split)/\(points[i].name) is \(points[i].value), not \(reference[i].value)")
            }
            XCTAssertTrue(run.1.withUnsafeBytes { x in runs[0].1.withUnsafeBytes { y in x.elementsEqual(y) } },
                          "parameters differ at \(n + 1) threads")
        }
    }

    /// A short trajectory on a fixed seed; values pinned so numerics never change silently.
    /// The 1e-4 relative tolerance absorbs GEMM kernel differences between CPU types (a
    /// different OpenBLAS core sums in another order), not real changes.
    func testLossTrajectoryIsPinned() throws {
        var c = Self.tinyConfig(); c.steps = 5; c.dropout = 0; c.expertDropout = 0
        let (sink, _) = try pretrain(c)
        let losses = sink.series("loss", split: Split.step).map(\.value)
        let pinned: [Double] = PinnedTrajectory.values
        XCTAssertEqual(losses.count, pinned.count)
        for (x, y) in zip(losses, pinned) { XCTAssertEqual(x, y, accuracy: 1e-4 * abs(y), "trajectory changed: \(losses)") }
        XCTAssertLessThan(losses.last!, losses.first!)
    }

    /// After fine-tuning under each regime, exactly the parameters outside the regime are
    /// byte-identical to the pretrained ones, those inside changed, and optimizer state
    /// exists only for the trainable tensors.
    func testRegimesUpdateExactlyTheirGroups() throws {
        var pre = Self.tinyConfig(); pre.steps = 4
        let (_, pretrained) = try pretrain(pre)
        let preLayout = ParameterLayout(pre.model(classes: 0))
        for regime in Regime.allCases where regime != .custom {
            var ft = pre
            ft.kind = .finetune; ft.parent = String(repeating: "a", count: 64); ft.regime = regime; ft.steps = 3
            let trainer = try Trainer(config: ft, data: Self.classification(context: ft.context), sink: MemorySink())
            trainer.loadParameters { t in
                guard let p = preLayout.tensor(named: t.name) else { return nil }
                return Array(pretrained[p.offset..<p.offset + p.count])
            }
            let before = Array(trainer.model.params.buffer)
            _ = try trainer.run()
            let groups = try regime.groups(custom: [])
            var expectedState = 0
            for t in trainer.model.layout.tensors {
                let old = before[t.offset..<t.offset + t.count], new = trainer.model.params.buffer[t.offset..<t.offset + t.count]
                if groups.contains(t.group) {
                    expectedState += t.count
                    XCTAssertNotEqual(Array(old), Array(new), "\(regime): \(t.name) should have changed")
                } else {
                    XCTAssertTrue(old.elementsEqual(new) { $0.bitPattern == $1.bitPattern }, "\(regime): \(t.name) must be byte-identical")
                }
            }
            let padded = trainer.optimizer.slots.count * 15
            XCTAssertGreaterThanOrEqual(trainer.optimizer.stateCount, expectedState)
            XCTAssertLessThanOrEqual(trainer.optimizer.stateCount, expectedState + padded, "\(regime): optimizer state for frozen tensors")
        }
    }

    /// `patience`: the run ends after that many evaluations without a new best validation
    /// accuracy, with a final checkpoint and a test evaluation at that step; `test_eval:
    /// best` adds a test evaluation at every new best.
    func testEarlyStoppingAndTestAtBest() throws {
        var ft = Self.tinyConfig()
        ft.kind = .finetune; ft.parent = String(repeating: "c", count: 64); ft.steps = 300; ft.evalInterval = 2
        ft.checkpointInterval = 1000; ft.patience = 3; ft.testEval = .best; ft.lr = 1e-2
        let sink = MemorySink()
        let trainer = try Trainer(config: ft, data: Self.classification(context: ft.context), sink: sink)
        var checkpoints: [(Int, Bool)] = []
        trainer.onCheckpoint = { checkpoints.append(($0, $1)) }
        guard case let .completed(steps) = try trainer.run() else { return XCTFail("did not complete") }
        XCTAssertLessThan(steps, 300, "patience 3 never stopped the run")
        let val = sink.series(MetricName.accuracy, split: Split.val)
        XCTAssertEqual(val.last?.step, steps)
        // The last three evaluations set no new best; the one before them did.
        var best = -1.0, newBest: [Int] = []
        for p in val where p.value > best { best = p.value; newBest.append(p.step) }
        XCTAssertEqual(val.suffix(4).first?.step, newBest.last)
        XCTAssertEqual(sink.series(MetricName.accuracy, split: Split.test).map(\.step), newBest + [steps])
        XCTAssertEqual(checkpoints.map(\.0), [steps])
        XCTAssertEqual(checkpoints.map(\.1), [true])
        XCTAssertEqual(trainer.bestValidation?.step, newBest.last)

        // Replaying the stored series reaches the same state, so a resumed run stops alike.
        let replay = try Trainer(config: ft, data: Self.classification(context: ft.context), sink: MemorySink())
        replay.step = steps
        replay.restoreValidation(val)
        XCTAssertEqual(replay.bestValidation?.step, trainer.bestValidation?.step)
        XCTAssertEqual(replay.evaluationsSinceBest, 3)
        XCTAssertEqual(try replay.run(), .completed(steps: steps), "an early-stopped run resumed at its end trains on")

        // Without patience and with test at the last step only, the run trains every step.
        ft.patience = 0; ft.testEval = .last; ft.steps = 20
        let plain = MemorySink()
        XCTAssertEqual(try Trainer(config: ft, data: Self.classification(context: ft.context), sink: plain).run(), .completed(steps: 20))
        XCTAssertEqual(plain.series(MetricName.accuracy, split: Split.test).map(\.step), [20])
    }

    /// `test_eval: selected`: periodic evaluations measure train and validation on
    /// `periodic_eval_examples`; after the last step the run measures train, validation and
    /// test on `eval_examples` with the parameters of its best periodic validation step
    /// (exactly what an evaluation of those parameters gives), records them at that step,
    /// and ends holding its last step's parameters.
    func testSelectedEvaluationMeasuresTheParametersOfTheSelectedStep() throws {
        var ft = Self.tinyConfig()
        ft.kind = .finetune; ft.parent = String(repeating: "c", count: 64); ft.steps = 40; ft.evalInterval = 4
        ft.checkpointInterval = 4; ft.testEval = .selected; ft.periodicEvalExamples = 8; ft.lr = 1e-2
        let data = Self.classification(context: ft.context)
        let sink = MemorySink()
        let trainer = try Trainer(config: ft, data: data, sink: sink)
        var parameters: [Int: [Float]] = [:]
        trainer.onCheckpoint = { step, _ in parameters[step] = Array(trainer.model.params.buffer) }
        XCTAssertEqual(try trainer.run(), .completed(steps: 40))
        let val = sink.series(MetricName.accuracy, split: Split.val)
        XCTAssertEqual(val.map(\.step), Array(stride(from: 4, through: 40, by: 4)))
        var best = val[0]
        for p in val where p.value > best.value { best = p }
        XCTAssertLessThan(best.step, 40, "the selected step is the last: put-back untested")
        XCTAssertTrue(sink.series(MetricName.accuracy, split: Split.test).isEmpty, "test measured periodically")
        XCTAssertTrue(trainer.model.params.buffer.elementsEqual(parameters[40]!) { $0.bitPattern == $1.bitPattern },
                      "the run does not end with its last step's parameters")

        let probe = try Trainer(config: ft, data: data, sink: MemorySink(), evaluationOnly: true)
        _ = probe.model.params.buffer.update(fromContentsOf: parameters[best.step]!)
        // The periodic point at the selected step measured the first 8 validation examples.
        XCTAssertEqual(try XCTUnwrap(probe.evaluate(split: Split.val, examples: 8)).accuracy, best.value)
        for split in Split.evaluation {
            let e = try XCTUnwrap(probe.evaluate(split: split))
            XCTAssertEqual(e.count, min(ft.evalExamples, split == Split.train ? 40 : split == Split.val ? 12 : 8))
            XCTAssertEqual(sink.series(MetricName.selectedAccuracy, split: split).map(\.step), [best.step], split)
            XCTAssertEqual(sink.series(MetricName.selectedAccuracy, split: split).first?.value, e.accuracy, split)
            XCTAssertEqual(sink.series(MetricName.selectedLoss, split: split).first?.value, e.loss, split)
        }
    }

    /// `test_examples` sizes the test evaluations apart from `eval_examples`: the selected
    /// step's test measurement (and, with `test_eval: last`, the last step's) covers the
    /// first `test_examples` test examples, train and validation still `eval_examples`.
    func testTestExamplesSizeTheTestEvaluationAlone() throws {
        var ft = Self.tinyConfig()
        ft.kind = .finetune; ft.parent = String(repeating: "c", count: 64); ft.steps = 12; ft.evalInterval = 4; ft.checkpointInterval = 4
        ft.evalExamples = 4; ft.testExamples = 6; ft.testEval = .selected; ft.lr = 1e-2
        let data = Self.classification(context: ft.context)
        for mode in [RunSettings.TestEvaluation.selected, .last] {
            ft.testEval = mode
            let sink = MemorySink()
            let trainer = try Trainer(config: ft, data: data, sink: sink)
            var parameters: [Int: [Float]] = [:]
            trainer.onCheckpoint = { step, _ in parameters[step] = Array(trainer.model.params.buffer) }
            XCTAssertEqual(try trainer.run(), .completed(steps: 12))
            let name = mode == .selected ? MetricName.selectedAccuracy : MetricName.accuracy
            let test = try XCTUnwrap(sink.series(name, split: Split.test).last, "\(mode)")
            let probe = try Trainer(config: ft, data: data, sink: MemorySink(), evaluationOnly: true)
            _ = probe.model.params.buffer.update(fromContentsOf: parameters[test.step]!)
            let six = try XCTUnwrap(probe.evaluate(split: Split.test))
            XCTAssertEqual(six.count, 6)
            XCTAssertEqual(six.accuracy, test.value, "\(mode)")
            XCTAssertEqual(try XCTUnwrap(probe.evaluate(split: Split.val)).count, 4)
            XCTAssertEqual(try XCTUnwrap(probe.evaluate(split: Split.train)).count, 4)
        }
        // More than the split holds: the whole split.
        ft.testExamples = 100
        let probe = try Trainer(config: ft, data: data, sink: MemorySink(), evaluationOnly: true)
        XCTAssertEqual(try XCTUnwrap(probe.evaluate(split: Split.test)).count, 8)
    }

    func testMoeRegimeOnDenseModelIsRefused() throws {
        var ft = Self.tinyConfig()
        ft.kind = .finetune; ft.parent = String(repeating: "b", count: 64); ft.experts = 1; ft.topK = 1; ft.regime = .moe
        XCTAssertThrowsError(try Trainer(config: ft, data: Self.classification(context: ft.context), sink: MemorySink())) { error in
            XCTAssertTrue("\(error)".contains("nothing but the head"), "\(error)")
        }
    }

    func testNonFiniteLossStopsWithReason() throws {
        let c = Self.tinyConfig()
        let trainer = try Trainer(config: c, data: .corpus(train: Self.corpus, validation: Self.corpus), sink: MemorySink())
        trainer.model.params.base[trainer.model.layout.tensor(named: "lnf.weight")!.offset] = .nan
        guard case let .failed(step, reason) = try trainer.run() else { return XCTFail("expected failure") }
        XCTAssertEqual(step, 1)
        XCTAssertTrue(reason.contains("non-finite"), reason)
    }

    func testScheduleWarmsUpAndDecays() {
        var c = RunConfig(); c.steps = 100; c.warmupSteps = 10; c.lr = 1; c.minLrRatio = 0.1
        let s = LRSchedule(config: c)
        XCTAssertEqual(s.lr(step: 5), 0.5, accuracy: 1e-6)
        XCTAssertEqual(s.lr(step: 10), 1, accuracy: 1e-6)
        XCTAssertEqual(s.lr(step: 100), 0.1, accuracy: 1e-6)
        XCTAssertGreaterThan(s.lr(step: 50), s.lr(step: 80))
    }
}

enum PinnedTrajectory {
    static let values: [Double] = [5.567023277282715, 5.549336910247803, 5.435344696044922, 5.371650695800781, 5.338035583496094]
}
