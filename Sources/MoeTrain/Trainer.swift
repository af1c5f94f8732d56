import Foundation
import MoeErrors
import MoeKernels
import MoeMetricNames
import MoeModel

/// Why a run stopped.
public enum TrainOutcome: Equatable, Sendable {
    case completed(steps: Int)
    /// Non-finite loss or gradient: the step and a reason for the store.
    case failed(step: Int, reason: String)
    /// `shouldStop` asked to stop (signal); the last checkpoint is the resume point.
    case stopped(step: Int)
}

/// What one evaluation pass over a split measured.
public struct Evaluation: Sendable {
    public var loss = 0.0, accuracy = 0.0, count = 0
    /// Per sparse layer: dropped fraction, router entropy, L_B, L_z, per-expert load.
    public var dropped: [Double] = [], entropy: [Double] = [], aux: [Double] = [], z: [Double] = []
    public var load: [[Double]] = []
}

public struct Progress: Sendable {
    public let step: Int, steps: Int, loss: Float
    /// Training tokens per second of training-step time (evaluation pauses excluded).
    public let tokensPerSecond: Double
    /// Wall seconds per step since this process started the run, evaluations and
    /// checkpoints included: what the remaining steps will take.
    public let secondsPerStep: Double
}

/// The step loop: forward, backward over trainable groups, AdamW, periodic evaluation
/// and checkpoints. Everything it measures leaves through a `MetricSink`.
public final class Trainer {
    public let config: RunConfig
    public let model: Transformer
    /// Re-planned once by `trainExperts` when a selection narrows what trains.
    public private(set) var optimizer: AdamW
    public let data: TrainingData
    public let sink: MetricSink
    let schedule: LRSchedule
    let batcher: Batcher
    /// Steps completed so far (restored from a checkpoint when resuming).
    public var step = 0
    /// Called with the step and whether it is the run's last (the end of `steps`, or an
    /// early stop), which keeps no optimizer state.
    public var onCheckpoint: ((_ step: Int, _ isLast: Bool) throws -> Void)?
    /// Fine-tuning: the best validation accuracy so far and its step, and the evaluations
    /// since it; early stopping (`patience`) and `test_eval: best` read them. A resumed
    /// run restores them from its stored validation series (`restoreValidation`).
    public private(set) var bestValidation: (step: Int, accuracy: Double)?
    public private(set) var evaluationsSinceBest = 0
    /// `test_eval: selected`: the parameters at `bestValidation.step` (meaningful once
    /// there is one), in the model's layout. Checkpoints keep them, so a resumed run
    /// evaluates the same parameters as an uninterrupted one.
    public let selectedParameters: UnsafeMutableBufferPointer<Float>?
    public var onProgress: ((Progress) -> Void)?
    public var shouldStop: (() -> Bool)?

    /// Builds the model for `config`. For fine-tuning, `classes` sizes the head and the
    /// caller then loads the parent's parameters (see `loadParameters`). An
    /// `evaluationOnly` trainer trains nothing, so it keeps no optimizer moments; it only
    /// evaluates (the forgetting probe).
    public init(config: RunConfig, data: TrainingData, sink: MetricSink, evaluationOnly: Bool = false) throws {
        try config.validate()
        self.config = config
        self.data = data
        self.sink = sink
        var classes = 0
        if case let .classification(k, train, validation, _) = data {
            classes = k
            guard !train.isEmpty, !validation.isEmpty else { throw TrainerSetupError(description: "task has an empty train or validation split") }
        }
        let groups = evaluationOnly ? [] : config.trainedGroups
        let modelConfig = config.model(classes: classes)
        model = try Transformer(config: modelConfig, maxBatch: config.batchSize, seed: UInt64(config.seed), trainable: groups)
        optimizer = AdamW(model: model, beta1: config.beta1, beta2: config.beta2, weightDecay: config.weightDecay,
                          clip: config.gradClip)
        schedule = LRSchedule(config: config)
        batcher = Batcher(seed: config.seed, batchSize: config.batchSize, context: config.context)
        if config.isFinetune && config.testEval == .selected && !evaluationOnly {
            let kept = UnsafeMutableBufferPointer<Float>.allocate(capacity: model.layout.count)
            kept.initialize(repeating: 0)
            selectedParameters = kept
        } else {
            selectedParameters = nil
        }
        if case let .corpus(train, validation) = data, min(train.count, validation.count) <= config.context + 1 {
            throw TrainerSetupError(description: "corpus split shorter than context+1 = \(config.context + 1) bytes")
        }
    }

    deinit { selectedParameters?.deallocate() }

    /// Share of parameters the regime updates (head included).
    public var trainableFraction: Double {
        let total = model.layout.tensors.reduce(0) { $0 + $1.count }
        let trained = model.trainedSlices.reduce(0) { $0 + $1.count }
        return Double(trained) / Double(total)
    }

    // MARK: Training single experts

    /// Narrows the `experts` group to `selection` (ESFT, random experts): the model's
    /// gradients and the optimizer's moments are planned again for what now trains. Called
    /// before the first step and before an optimizer state is restored (ESFT scores the
    /// parent's parameters, so those are loaded first).
    public func trainExperts(_ selection: ExpertSelection) throws {
        precondition(step == 0 && optimizer.t == 0, "the trained experts are chosen before the first step")
        try model.setTrainable(model.trainable, experts: selection)
        let o = optimizer
        optimizer = AdamW(model: model, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay, clip: o.clip)
    }

    /// ESFT's expert scores of the current parameters on a sample of the run's own training
    /// data: the batches of steps 1, 2, … (what the run trains on first, a function of the
    /// seed), run forward in eval mode (no dropout) until at least `sampleTokens` real
    /// tokens were scored. The sample is whole batches, so it may exceed `sampleTokens` by
    /// less than one batch.
    public func scoreExperts(sampleTokens: Int) -> ExpertScores {
        var scores = ExpertScores(config: model.config)
        guard !model.config.sparseLayers.isEmpty else { return scores }
        var s = 1
        while scores.tokens < max(1, sampleTokens) {
            withBatch(step: s) { batch in
                _ = model.forward(batch, mode: .eval)
                scores.add(model.lastRouting())
            }
            s += 1
        }
        return scores
    }

    // MARK: The loop

    public func run() throws -> TrainOutcome {
        // A run resumed after its early stop had already ended is complete.
        if config.patience > 0, bestValidation != nil, evaluationsSinceBest >= config.patience {
            return .completed(steps: step)
        }
        let started = DispatchTime.now().uptimeNanoseconds, firstStep = step
        var lastReport = started
        var tokensSinceReport = 0, trainingSecondsSinceReport = 0.0
        while step < config.steps {
            if shouldStop?() == true { return .stopped(step: step) }
            let s = step + 1
            let t0 = DispatchTime.now().uptimeNanoseconds
            let (result, lr, norm) = trainStep(s)
            guard result.loss.isFinite else {
                try sink.flush()
                return .failed(step: s, reason: "non-finite loss (\(result.loss)) at step \(s)")
            }
            guard norm.isFinite else {
                try sink.flush()
                return .failed(step: s, reason: "non-finite gradient norm (\(norm)) at step \(s)")
            }
            step = s
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            sink.record(step: s, split: Split.step, name: MetricName.loss, value: Double(result.loss))
            sink.record(step: s, split: Split.step, name: MetricName.crossEntropy, value: Double(result.crossEntropy))
            sink.record(step: s, split: Split.step, name: MetricName.learningRate, value: Double(lr))
            sink.record(step: s, split: Split.step, name: MetricName.gradientNorm, value: Double(norm))
            if !result.router.isEmpty {
                sink.record(step: s, split: Split.step, name: MetricName.auxLoss, value: Double(result.auxLoss))
                sink.record(step: s, split: Split.step, name: MetricName.zLoss, value: Double(result.zLoss))
                let dropped = result.router.reduce(0.0) { $0 + Double($1.droppedFraction) } / Double(result.router.count)
                sink.record(step: s, split: Split.step, name: MetricName.dropped, value: dropped)
            }
            sink.record(step: s, split: Split.timing, name: MetricName.stepTime, value: seconds)
            sink.record(step: s, split: Split.timing, name: MetricName.tokensPerSecond, value: Double(result.tokens) / max(seconds, 1e-9))
            tokensSinceReport += result.tokens
            trainingSecondsSinceReport += seconds
            let now = DispatchTime.now().uptimeNanoseconds
            if now - lastReport > 1_000_000_000 || s == config.steps {
                // Throughput over training steps only; the ETA from the whole wall time so
                // far (evaluations and checkpoints included) per step, which a pause for an
                // evaluation does not swing.
                let wall = Double(now - started) / 1e9
                onProgress?(Progress(step: s, steps: config.steps, loss: result.loss,
                                     tokensPerSecond: Double(tokensSinceReport) / max(trainingSecondsSinceReport, 1e-9),
                                     secondsPerStep: wall / Double(s - firstStep)))
                lastReport = now; tokensSinceReport = 0; trainingSecondsSinceReport = 0
            }
            var isLast = s == config.steps
            if s % config.evalInterval == 0 || isLast {
                let evalStarted = DispatchTime.now().uptimeNanoseconds
                // A stop request during a long evaluation ends the run here; it resumes from
                // the last checkpoint, which this step has not reached.
                let examples = config.periodicEvalExamples > 0 ? config.periodicEvalExamples : config.evalExamples
                guard let train = evaluate(split: Split.train, examples: examples),
                      let val = evaluate(split: Split.val, examples: examples) else {
                    return .stopped(step: s)
                }
                record(train, split: Split.train, step: s)
                record(val, split: Split.val, step: s)
                if case .classification = data {
                    let isBest = noteValidation(step: s, accuracy: val.accuracy)
                    if config.patience > 0 && evaluationsSinceBest >= config.patience { isLast = true }
                    if let kept = selectedParameters {
                        if isBest { kept.baseAddress!.update(from: model.params.base, count: kept.count) }
                        if isLast { guard evaluateSelected() else { return .stopped(step: s) } }
                    } else if isLast || (isBest && config.testEval == .best) {
                        guard let test = evaluate(split: Split.test) else { return .stopped(step: s) }
                        record(test, split: Split.test, step: s)
                    }
                }
                sink.record(step: s, split: Split.timing, name: MetricName.evalTime,
                            value: Double(DispatchTime.now().uptimeNanoseconds - evalStarted) / 1e9)
                try sink.flush()
            }
            if s % config.checkpointInterval == 0 || isLast {
                try sink.flush()
                let checkpointStarted = DispatchTime.now().uptimeNanoseconds
                try onCheckpoint?(s, isLast)
                // Written with the next flush (the run's last one at the latest).
                sink.record(step: s, split: Split.timing, name: MetricName.checkpointTime,
                            value: Double(DispatchTime.now().uptimeNanoseconds - checkpointStarted) / 1e9)
            }
            if isLast { break }
        }
        return .completed(steps: step)
    }

    /// One optimizer step on the batch of step `s` (1-based): forward, backward and the
    /// AdamW update at the schedule's rate, recording nothing. A non-finite loss skips the
    /// backward pass and the update (the gradient norm is then NaN). `run` is these steps
    /// with evaluation, metrics and checkpoints.
    public func trainStep(_ s: Int) -> (result: ForwardResult, lr: Float, gradientNorm: Float) {
        withBatch(step: s) { trainStep(s, on: $0) }
    }

    /// The same step on a batch the caller made instead of the run's data (`moerec bench
    /// model` times the engine on fixed batches this way).
    public func trainStep(_ s: Int, on batch: Batch) -> (result: ForwardResult, lr: Float, gradientNorm: Float) {
        let result = model.forward(batch, mode: .train(step: s))
        guard result.loss.isFinite else { return (result, 0, .nan) }
        model.zeroGrads()
        model.backward(batch)
        let lr = schedule.lr(step: s)
        return (result, lr, optimizer.step(lr: lr))
    }

    /// Records a validation accuracy; true when it is a new best (strictly higher, so the
    /// earliest of equal values stays selected, as reports select).
    @discardableResult
    func noteValidation(step: Int, accuracy: Double) -> Bool {
        if let best = bestValidation, !(accuracy > best.accuracy) {
            evaluationsSinceBest += 1
            return false
        }
        bestValidation = (step, accuracy)
        evaluationsSinceBest = 0
        return true
    }

    /// Replays the stored validation accuracies up to the resume step, so that early
    /// stopping and test-at-best continue exactly as in an uninterrupted run.
    public func restoreValidation(_ points: [(step: Int, value: Double)]) {
        bestValidation = nil
        evaluationsSinceBest = 0
        for p in points.sorted(by: { $0.step < $1.step }) where p.step <= step { noteValidation(step: p.step, accuracy: p.value) }
    }

    func record(_ e: Evaluation, split: String, step: Int) {
        sink.record(step: step, split: split, name: MetricName.loss, value: e.loss)
        sink.record(step: step, split: split, name: MetricName.accuracy, value: e.accuracy)
        for (i, layer) in model.config.sparseLayers.enumerated() where i < e.dropped.count {
            sink.record(step: step, split: split, name: MetricName.layer(layer, MetricName.dropped), value: e.dropped[i])
            sink.record(step: step, split: split, name: MetricName.layer(layer, MetricName.entropy), value: e.entropy[i])
            sink.record(step: step, split: split, name: MetricName.layer(layer, MetricName.auxLoss), value: e.aux[i])
            sink.record(step: step, split: split, name: MetricName.layer(layer, MetricName.zLoss), value: e.z[i])
            for (j, share) in e.load[i].enumerated() {
                sink.record(step: step, split: split, name: MetricName.load(layer: layer, expert: j), value: share)
            }
        }
    }

    // MARK: Evaluation

    /// `test_eval: selected`, after the last step: train, validation and test on
    /// `eval_examples` (test: `test_examples`) with the kept parameters, recorded at their step; the model's own
    /// parameters are put back afterwards (the last checkpoint holds the last step's).
    /// False when `shouldStop` asked to stop part-way (nothing is recorded then).
    func evaluateSelected() -> Bool {
        guard let kept = selectedParameters, let best = bestValidation else { return true }
        let count = kept.count, params = model.params.base
        let current = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
        defer { current.deallocate() }
        current.baseAddress!.initialize(from: params, count: count)
        params.update(from: kept.baseAddress!, count: count)
        defer { params.update(from: current.baseAddress!, count: count) }
        var results: [(String, Evaluation)] = []
        for split in Split.evaluation {
            guard let e = evaluate(split: split) else { return false }
            results.append((split, e))
        }
        for (split, e) in results {
            sink.record(step: best.step, split: split, name: MetricName.selectedLoss, value: e.loss)
            sink.record(step: best.step, split: split, name: MetricName.selectedAccuracy, value: e.accuracy)
        }
        return true
    }

    /// Loss and accuracy on a split (train: a fixed subset), on its first `examples`
    /// examples (unless given: `eval_examples`, and for test `test_examples`), with router statistics averaged over
    /// batches. Eval mode: no dropout, eval capacity. With `test_eval: selected` the
    /// examples are batched by length. Nil when `shouldStop` asked to stop part-way.
    public func evaluate(split: String, examples limit: Int? = nil) -> Evaluation? {
        var e = Evaluation()
        let layers = model.config.sparseLayers.count
        e.dropped = Array(repeating: 0, count: layers); e.entropy = e.dropped; e.aux = e.dropped; e.z = e.dropped
        e.load = Array(repeating: Array(repeating: 0, count: model.config.experts), count: layers)
        var lossSum = 0.0, correct = 0, count = 0, batches = 0
        func accumulate(_ r: ForwardResult) {
            lossSum += Double(r.crossEntropy) * Double(r.count)
            correct += r.correct
            count += r.count
            batches += 1
            let load = model.expertLoad()
            for (i, s) in r.router.enumerated() {
                e.dropped[i] += Double(s.droppedFraction); e.entropy[i] += Double(s.entropy)
                e.aux[i] += Double(s.auxLoss); e.z[i] += Double(s.zLoss)
                for j in 0..<load[i].count { e.load[i][j] += Double(load[i][j]) }
            }
        }
        switch data {
        case let .corpus(train, validation):
            let bytes = split == Split.train ? train : validation
            let total = config.evalBatches * config.batchSize
            var first = 0
            while first < total {
                if shouldStop?() == true { return nil }
                let n = min(config.batchSize, total - first)
                let shape = batcher.fillCorpusEval(bytes, first: first, count: n, total: total)
                accumulate(forward(shape))
                first += n
            }
        case let .classification(_, train, validation, test):
            let source = split == Split.train ? train : (split == Split.val ? validation : test)
            var examples = Array(source.prefix(limit ?? (split == Split.test ? config.settings.testExampleLimit : config.evalExamples)))
            if config.testEval == .selected {
                // Batches of examples of similar length, so that little of each batch is
                // padding (shortest first, split order among equal lengths).
                examples = examples.indices.sorted { (examples[$0].tokens.count, $0) < (examples[$1].tokens.count, $1) }
                    .map { examples[$0] }
            }
            var i = 0
            while i < examples.count {
                if shouldStop?() == true { return nil }
                let chunk = Array(examples[i..<min(i + config.batchSize, examples.count)])
                let shape = batcher.fillExamples(chunk)
                accumulate(forward(shape))
                i += chunk.count
            }
        }
        e.loss = count > 0 ? lossSum / Double(count) : 0
        e.accuracy = count > 0 ? Double(correct) / Double(count) : 0
        e.count = count
        if batches > 0 {
            let inv = 1 / Double(batches)
            for i in 0..<layers {
                e.dropped[i] *= inv; e.entropy[i] *= inv; e.aux[i] *= inv; e.z[i] *= inv
                for j in 0..<e.load[i].count { e.load[i][j] *= inv }
            }
        }
        return e
    }

    private func forward(_ shape: (b: Int, t: Int)) -> ForwardResult {
        withFilledBatch(shape) { model.forward($0, mode: .eval) }
    }

    private func withBatch<R>(step: Int, _ body: (Batch) -> R) -> R {
        let shape: (b: Int, t: Int)
        switch data {
        case let .corpus(train, _): shape = batcher.fillCorpus(train, step: step)
        case let .classification(_, train, _, _): shape = batcher.fillClassification(train, step: step)
        }
        return withFilledBatch(shape, body)
    }

    /// The batcher's buffers, as filled for `shape`, seen as a model batch.
    private func withFilledBatch<R>(_ shape: (b: Int, t: Int), _ body: (Batch) -> R) -> R {
        batcher.tokens.withUnsafeBufferPointer { tk in batcher.targets.withUnsafeBufferPointer { tg in
            batcher.labels.withUnsafeBufferPointer { lb in batcher.lengths.withUnsafeBufferPointer { ln in
                body(Batch(tokens: tk.baseAddress!, b: shape.b, t: shape.t, targets: tg.baseAddress!,
                           labels: lb.baseAddress!, lengths: ln.baseAddress!))
            } }
        } }
    }

    // MARK: State for checkpoints

    /// Copies a named parameter tensor in (fine-tuning from a parent, or resuming).
    public func loadParameters(_ load: (TensorInfo) throws -> [Float]?) rethrows {
        for t in model.layout.tensors {
            guard let values = try load(t) else { continue }
            precondition(values.count == t.count, "tensor \(t.name) has \(values.count) values, expected \(t.count)")
            (model.params.base + t.offset).update(from: values, count: t.count)
        }
    }
}

/// Data a trainer cannot start from (an empty split, a corpus shorter than one window).
public struct TrainerSetupError: MoeError {
    public let description: String
    public var exitMeaning: ExitMeaning { .badInput }
}
