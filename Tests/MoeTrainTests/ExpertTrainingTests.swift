import XCTest
import MoeKernels
import MoeMetricNames
import MoeModel
import MoeTrain
import MoeTestSupport

/// Fine-tuning single experts through the trainer: what is updated, what optimizer state
/// exists, and that neither the scores nor the training depend on the thread count.
final class ExpertTrainingTests: XCTestCase {
    /// The pretrained parameters of TrainingTests' tiny model (one sparse layer, 4 experts),
    /// widened as its thread-count test widens it, so that passes and the optimizer's
    /// ranges are split over workers.
    static let pretrained: (config: RunConfig, params: [Float]) = {
        var pre = TrainingTests.tinyConfig(); pre.steps = 4
        pre.dModel = 32; pre.dFF = 96; pre.context = 24; pre.batchSize = 6
        let trainer = try! Trainer(config: pre, data: .corpus(train: TrainingTests.corpus, validation: Array(TrainingTests.corpus.reversed())),
                                   sink: MemorySink())
        _ = try! trainer.run()
        return (pre, Array(trainer.model.params.buffer))
    }()

    /// A fine-tuning trainer under `regime` that starts from the pretrained parameters.
    func fineTuner(_ regime: Regime, steps: Int = 3) throws -> (Trainer, MemorySink) {
        var ft = Self.pretrained.config
        ft.kind = .finetune; ft.parent = String(repeating: "e", count: 64); ft.regime = regime; ft.steps = steps
        let sink = MemorySink()
        let trainer = try Trainer(config: ft, data: TrainingTests.classification(context: ft.context), sink: sink)
        let preLayout = ParameterLayout(Self.pretrained.config.model(classes: 0))
        trainer.loadParameters { t in
            guard let p = preLayout.tensor(named: t.name) else { return nil }
            return Array(Self.pretrained.params[p.offset..<p.offset + p.count])
        }
        return (trainer, sink)
    }

    static func sameBytes(_ a: ArraySlice<Float>, _ b: ArraySlice<Float>) -> Bool {
        a.elementsEqual(b) { $0.bitPattern == $1.bitPattern }
    }

    /// Experts 0 and 2 of 4 train (router frozen): their slices change, experts 1 and 3 and
    /// every other tensor but the head stay byte-identical, and the optimizer holds moments
    /// for the trained slices and the head only.
    func testOnlyTheSelectedExpertsChangeAndHoldOptimizerState() throws {
        let (trainer, _) = try fineTuner(.expertsOnly)
        try trainer.trainExperts(ExpertSelection([[2, 0]]))
        let model = trainer.model, layout = model.layout
        let before = Array(model.params.buffer)
        XCTAssertEqual(try trainer.run(), .completed(steps: 3))
        let after = Array(model.params.buffer)
        let E = model.config.experts
        for t in layout.tensors {
            guard t.group == .experts else {
                let same = Self.sameBytes(before[t.offset..<t.offset + t.count], after[t.offset..<t.offset + t.count])
                XCTAssertEqual(same, t.group != .head, "\(t.name)")
                continue
            }
            let per = t.count / E
            for j in 0..<E {
                let range = (t.offset + j * per)..<(t.offset + (j + 1) * per)
                if j == 1 || j == 3 {
                    XCTAssertTrue(Self.sameBytes(before[range], after[range]), "\(t.name)[\(j)] is frozen and must be byte-identical")
                } else if t.name.hasSuffix("w1") || t.name.hasSuffix("w2") {
                    XCTAssertFalse(Self.sameBytes(before[range], after[range]), "\(t.name)[\(j)] should have changed")
                }
            }
        }
        let slots = trainer.optimizer.slots
        XCTAssertEqual(slots.map(\.slice.name), [
            "layers.1.experts.w1[0]", "layers.1.experts.w1[2]", "layers.1.experts.b1[0]", "layers.1.experts.b1[2]",
            "layers.1.experts.w2[0]", "layers.1.experts.w2[2]", "layers.1.experts.b2[0]", "layers.1.experts.b2[2]",
            "head.w", "head.b",
        ])
        let trained = slots.reduce(0) { $0 + $1.slice.count }
        XCTAssertGreaterThanOrEqual(trainer.optimizer.stateCount, trained)
        XCTAssertLessThanOrEqual(trainer.optimizer.stateCount, trained + 15 * slots.count, "optimizer state beyond the trained slices")
        let experts = layout.tensors.filter { $0.group == .experts }.reduce(0) { $0 + $1.count }
        XCTAssertEqual(trained - slots.suffix(2).reduce(0) { $0 + $1.slice.count }, experts / 2)
        XCTAssertEqual(trainer.trainableFraction, Double(trained) / Double(layout.tensors.reduce(0) { $0 + $1.count }))
    }

    /// A selection naming every expert is no narrowing: the run is bit-identical to the
    /// same regime without one (same slices, moments, sums).
    func testSelectingEveryExpertTrainsAsWithoutASelection() throws {
        let (plain, plainSink) = try fineTuner(.moe)
        let (listed, listedSink) = try fineTuner(.moe)
        try listed.trainExperts(ExpertSelection([[3, 2, 1, 0]]))
        _ = try plain.run()
        _ = try listed.run()
        let keep = { (p: MemorySink.Point) in p.split != Split.timing }
        XCTAssertEqual(plainSink.points.filter(keep), listedSink.points.filter(keep))
        XCTAssertTrue(Self.sameBytes(Array(plain.model.params.buffer)[...], Array(listed.model.params.buffer)[...]))
    }

    /// Every group trains but experts 0 and 2: the gradient below the sparse layer passes
    /// through the frozen experts, with dropout and expert dropout on, and 1 and 2 workers
    /// give the same metric series and parameters, bit for bit.
    func testExpertTrainingIsBitIdenticalAcrossThreadCounts() throws {
        let saved = Blas.threads
        defer { Blas.threads = saved }
        var runs: [([MemorySink.Point], [Float])] = []
        for threads in [1, 2] {
            Blas.threads = threads
            let (trainer, sink) = try fineTuner(.all, steps: 6)
            try trainer.trainExperts(ExpertSelection([[1, 3]]))
            XCTAssertEqual(try trainer.run(), .completed(steps: 6))
            runs.append((sink.points.filter { $0.split != Split.timing }, Array(trainer.model.params.buffer)))
        }
        XCTAssertEqual(runs[0].0, runs[1].0, "metric series differ at 2 threads")
        XCTAssertTrue(Self.sameBytes(runs[0].1[...], runs[1].1[...]), "parameters differ at 2 threads")
    }

    /// Scores of the pretrained model on the run's first training batches, and the experts
    /// they select, are bit-identical at 1 and 2 threads; the sample stops at the first
    /// whole batch that reaches the requested tokens; and scoring before training leaves
    /// the training unchanged.
    func testScoresAndSelectionAreBitIdenticalAcrossThreadCounts() throws {
        let saved = Blas.threads
        defer { Blas.threads = saved }
        var results: [(ExpertScores, [ExpertSelection])] = []
        for threads in [1, 2] {
            Blas.threads = threads
            let (trainer, _) = try fineTuner(.expertsOnly)
            let scores = trainer.scoreExperts(sampleTokens: 300)
            let selections = try [ExpertScoreFunction.gate, .token].flatMap { f in
                try [0.2, 0.5].map { try scores.selection(f, topP: $0) }
            }
            results.append((scores, selections))
        }
        XCTAssertEqual(results[0].0, results[1].0, "scores differ at 2 threads")
        XCTAssertEqual(results[0].1, results[1].1, "selections differ at 2 threads")
        let scores = results[0].0
        XCTAssertGreaterThanOrEqual(scores.tokens, 300)
        XCTAssertLessThan(scores.tokens, 300 + Self.pretrained.config.batchSize * Self.pretrained.config.context)
        XCTAssertEqual(scores.selections[0].reduce(0, +), scores.tokens * scores.topK)
        XCTAssertGreaterThan(Set(scores.scores(.gate)[0]).count, 1, "the routing is uniform: the test would prove little")

        // Score, select, train: the same run as selecting without scoring.
        Blas.threads = 1
        let selection = try scores.selection(.gate, topP: 0.5)
        let (scored, scoredSink) = try fineTuner(.expertsOnly)
        _ = scored.scoreExperts(sampleTokens: 300)
        try scored.trainExperts(selection)
        let (direct, directSink) = try fineTuner(.expertsOnly)
        try direct.trainExperts(selection)
        _ = try scored.run()
        _ = try direct.run()
        let keep = { (p: MemorySink.Point) in p.split != Split.timing }
        XCTAssertEqual(scoredSink.points.filter(keep), directSink.points.filter(keep))
    }
}
