import ArgumentParser
import Foundation
import MoeJSON
import MoeKernels
import MoeModel
import MoeTrain

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the engine, the store and the reports.",
        discussion: """
        Examples:
          moerec bench model --model bench-small --threads 2 --steps 20 --format json
          moerec bench model --regime attention
          moerec bench model --train-experts 2
          moerec bench store --format json
          moerec bench report --runs 1000 --points 10000000 --format json
          moerec bench plan --cells 100000
          moerec bench merge --shards 1000 --runs-per-shard 1
        """,
        subcommands: [BenchModel.self, BenchStore.self, BenchReport.self, BenchStudy.self, BenchPlan.self, BenchMerge.self])
}

/// Output format shared by commands that print tables or JSON.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json, csv
}

struct BenchModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Time training and evaluation steps of a reference model on random tokens.",
        discussion: """
        Prints tokens/s for training and evaluation, the model's FLOPs per token, the GEMM peak \
        measured on the model's own GEMM shapes, the fraction of that peak achieved (counting \
        only expert work actually executed), the share of top-k assignments kept, and the peak \
        resident memory.

        --regime R times a fine-tuning step with only R's groups trained against one with \
        all trained, the two steps taken in turn (mean step times, and their ratio). --train-experts K times a fine-tuning step in which only the first K \
        experts of each sparse layer train (router and every other group frozen, the new \
        head trained) against the same step with all experts trained (regime experts-only) \
        and against regime moe (router and all experts), the three steps taken in turn; it \
        prints the median step time of each.

        Example:
          moerec bench model --model bench-small --threads 1 --steps 20 --format json
          moerec bench model --regime attention --steps 10
          moerec bench model --train-experts 2 --steps 20
        """)

    @Option(help: "Reference model (bench-small).") var model = "bench-small"
    @Option(help: "Worker threads (OpenBLAS itself runs single-threaded in each).") var threads = 1
    @Option(help: "Timed training steps (after 2 warm-up steps).") var steps = 20
    @Option(help: "Override the training capacity factor (4.0 drops no token).") var capacityFactor: Float?
    @Option(help: "Time a fine-tuning step with only this regime's groups trained, against 'all'.") var regime: String?
    @Option(help: "Time a fine-tuning step training only the first K experts of each sparse layer (and the head), against all experts and against 'moe'.")
    var trainExperts: Int?
    @Option(help: "table or json.") var format: OutputFormat = .table

    func validate() throws {
        guard model == "bench-small" else { throw ValidationError("--model \(model): unknown model (valid: bench-small)") }
        try requireOption("--threads", threads, in: 1...64)
        try requireOption("--steps", steps, in: 1...100_000)
        if let cf = capacityFactor, !(cf > 0 && cf.isFinite) { throw ValidationError("--capacity-factor \(cf): must be > 0") }
        if let regime, Regime(rawValue: regime) == nil || regime == Regime.custom.rawValue {
            let named = Regime.allCases.filter { $0 != .custom }.map(\.rawValue)
            throw ValidationError("--regime \(regime): unknown regime (valid: \(named.joined(separator: ", ")))")
        }
        if let trainExperts {
            try requireOption("--train-experts", trainExperts, in: 1...BenchSmall.config().experts)
            if regime != nil { throw ValidationError("--train-experts and --regime time different comparisons: give one") }
        }
    }

    func run() throws {
        try Blas.load()
        Blas.threads = threads
        var config = BenchSmall.config()
        if let cf = capacityFactor { config.capacityFactorTrain = cf }
        var fields: [(String, OrderedJSON)] = [
            ("model", .string(model)), ("threads", .int(Blas.threads)), ("blas_core", .string(Blas.coreName)),
            ("blas_core_source", .string(Blas.coreSource)), ("vector_kernels", .string(Blas.vectorKernels)),
            ("capacity_factor_train", .number(Double(config.capacityFactorTrain))),
        ]
        if let regime {
            let timed = try BenchSmall.fineTuneSteps(config: config, variants: [(.all, nil), (Regime(rawValue: regime)!, nil)],
                                                     steps: steps)
            let (all, sub) = (timed[0], timed[1])
            fields += [("regime", .string(regime)), ("step_seconds_all", .number(all.seconds)),
                       ("step_seconds_regime", .number(sub.seconds)), ("measured_ratio", .number(sub.seconds / all.seconds)),
                       ("flop_model_ratio", .number(sub.flops / all.flops)),
                       ("trainable_fraction", .number(sub.trainableFraction))]
        } else if let k = trainExperts {
            let timed = try BenchSmall.fineTuneSteps(config: config, variants: [(.moe, nil), (.expertsOnly, nil),
                                                                                (.expertsOnly, .first(k, of: config))], steps: steps)
            let (moe, every, some) = (timed[0], timed[1], timed[2])
            fields += [("train_experts", .int(k)), ("experts", .int(config.experts)),
                       ("step_seconds_moe", .number(moe.median)), ("step_seconds_experts_all", .number(every.median)),
                       ("step_seconds_train_experts", .number(some.median)),
                       ("measured_ratio", .number(some.median / every.median)),
                       ("flop_model_ratio", .number(some.flops / every.flops)),
                       ("measured_ratio_vs_moe", .number(some.median / moe.median)),
                       ("trainable_fraction", .number(some.trainableFraction)),
                       ("trainable_fraction_experts_all", .number(every.trainableFraction))]
        } else {
            let r = try BenchSmall.measure(config: config, steps: steps)
            fields += [("tokens_per_s_train", .number(r.trainTokensPerSecond)),
                       ("tokens_per_s_eval", .number(r.evalTokensPerSecond)),
                       ("model_gflop_per_token", .number(r.modelGflopPerToken)), ("gemm_peak_gflops", .number(r.gemmPeak)),
                       ("achieved_gflops", .number(r.achievedGflops)), ("peak_fraction", .number(r.achievedGflops / r.gemmPeak)),
                       ("kept_assign_fraction", .number(r.keptFraction)),
                       ("activation_mib", .number(Double(r.activationBytes) / 1048576))]
        }
        fields.append(("peak_rss_mib", .number(ProcessStats.peakRSSMiB())))
        print(format == .json ? ResultOut.json(fields) : TableOut.keyValues(fields))
    }
}

/// The reference model of DESIGN.md ("bench-small") and its timing loops.
enum BenchSmall {
    static func config() -> ModelConfig {
        var c = ModelConfig()
        c.vocab = 512; c.context = 128; c.dModel = 256; c.heads = 4; c.layers = 4; c.dFF = 1024
        c.experts = 8; c.topK = 2; c.moeEvery = 2; c.capacityFactorTrain = 1.25; c.capacityFactorEval = 2.0
        c.auxLossCoef = 0.01; c.zLossCoef = 0.001; c.dropout = 0; c.expertDropout = 0
        return c
    }
    static let batch = 32

    struct Result {
        var trainTokensPerSecond = 0.0, evalTokensPerSecond = 0.0, modelGflopPerToken = 0.0, gemmPeak = 0.0
        var achievedGflops = 0.0, keptFraction = 0.0, activationBytes = 0
    }

    static func randomTokens(vocab: Int, count: Int, step: Int) -> [Int32] {
        let rng = CounterRng(seed: 1234)
        return (0..<count).map { Int32(rng.bits(.test, step: UInt64(step), index: UInt64($0)) % UInt64(vocab)) }
    }

    /// A trainer for `model` as a run config builds it (batch 32): the timing loops below
    /// drive its own step (`Trainer.trainStep(_:on:)`, what `moerec run` runs) on fixed
    /// batches of random tokens, so routing, and so the work timed, is the same every time.
    static func trainer(model: ModelConfig, kind: RunSettings.Kind = .pretrain, regime: Regime = .all, lr: Float) throws -> Trainer {
        var config = RunConfig()
        config.model = model
        config.settings.kind = kind
        config.settings.batchSize = batch
        config.settings.steps = 1_000_000
        config.settings.warmupSteps = 0
        config.settings.schedule = .constant
        config.settings.lr = lr
        config.settings.seed = 1
        // The trainer needs data; the steps timed here use the fixed batches instead.
        let data: TrainingData
        if kind == .finetune {
            config.settings.regime = regime
            config.settings.parent = String(repeating: "0", count: 64)
            let example = TrainingData.encode(text: Array("x".utf8), label: 0, context: model.context)
            data = .classification(classes: 45, train: [example], validation: [example], test: [example])
        } else {
            let bytes = [UInt8](repeating: 0, count: 2 * model.context + 2)
            data = .corpus(train: bytes, validation: bytes)
        }
        return try Trainer(config: config, data: data, sink: MemorySink())
    }

    static func measure(config: ModelConfig, steps: Int) throws -> Result {
        let B = batch, T = config.context, N = B * T
        // Measured first, so its matrices are freed before the model's memory is counted.
        let peak = gemmPeak(config: config, tokens: N)
        let trainer = try trainer(model: config, lr: 1e-3)
        let model = trainer.model
        let batches = (0..<4).map { randomTokens(vocab: config.vocab, count: N + 1, step: $0) }
        var kept = 0, assigned = 0
        var trainSeconds = 0.0
        for s in 0..<(steps + 2) {
            let data = batches[s % batches.count]
            let tokens = Array(data[0..<N]), targets = Array(data[1...N])
            let t0 = DispatchTime.now().uptimeNanoseconds
            let r = tokens.withUnsafeBufferPointer { tk in targets.withUnsafeBufferPointer { tg in
                trainer.trainStep(s + 1, on: Batch(tokens: tk.baseAddress!, b: B, t: T, targets: tg.baseAddress!)).result
            } }
            if s >= 2 {
                trainSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                kept += r.keptAssignments
                assigned += N * config.topK * config.sparseLayers.count
            }
        }
        var evalSeconds = 0.0
        let evalSteps = max(3, steps / 2)
        for s in 0..<evalSteps {
            let data = batches[s % batches.count]
            let tokens = Array(data[0..<N]), targets = Array(data[1...N])
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = tokens.withUnsafeBufferPointer { tk in targets.withUnsafeBufferPointer { tg in
                model.forward(Batch(tokens: tk.baseAddress!, b: B, t: T, targets: tg.baseAddress!), mode: .eval)
            } }
            evalSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        }
        let flops = model.forwardFlopsPerToken(t: T)
        let sparse = Double(config.sparseLayers.count)
        let keptFraction = assigned > 0 ? Double(kept) / Double(assigned) : 1
        // Training ≈ 3× forward (forward, input gradients, weight gradients).
        let executedPerToken = 3 * (flops.dense + flops.perAssignment * Double(config.topK) * sparse * keptFraction)
        let modelPerToken = 3 * (flops.dense + flops.perAssignment * Double(config.topK) * sparse)
        var r = Result()
        r.trainTokensPerSecond = Double(N * steps) / trainSeconds
        r.evalTokensPerSecond = Double(N * evalSteps) / evalSeconds
        r.modelGflopPerToken = modelPerToken / 1e9
        r.achievedGflops = executedPerToken * r.trainTokensPerSecond / 1e9
        r.keptFraction = keptFraction
        r.gemmPeak = peak
        r.activationBytes = model.activationBytes
        return r
    }

    /// Best GFLOP/s reached on the model's largest GEMM shapes (forward, input-gradient and
    /// weight-gradient orientations), each timed a few times two ways: cut into blocks over
    /// the engine's workers as the model runs them, and as one call on OpenBLAS's own
    /// threads. The larger is the peak, so the engine's fraction is never flattered.
    static func gemmPeak(config: ModelConfig, tokens N: Int) -> Double {
        let C = config.dModel, F = config.dFF
        let rowsPerExpert = N * config.topK / config.experts
        let shapes: [(Bool, Bool, Int, Int, Int)] = [
            (false, false, N, 3 * C, C), (false, false, N, F, C), (false, false, N, C, F),
            (false, true, N, C, F), (true, false, C, F, N), (false, false, rowsPerExpert, F, C),
        ]
        let workers = Blas.threads
        var best = 0.0
        for (ta, tb, m, n, k) in shapes {
            let a = [Float](repeating: 0.01, count: m * k), b = [Float](repeating: 0.02, count: k * n)
            var c = [Float](repeating: 0, count: m * n)
            for library in [false, true] {
                Blas.libraryThreads = library ? workers : 1
                for _ in 0..<5 {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    if library {
                        Gemm.sgemm(transA: ta, transB: tb, m: m, n: n, k: k, a: a, lda: ta ? m : k, b: b, ldb: tb ? k : n,
                                   beta: 0, c: &c, ldc: n)
                    } else {
                        Gemm.sgemmParallel(transA: ta, transB: tb, m: m, n: n, k: k, a: a, lda: ta ? m : k, b: b,
                                           ldb: tb ? k : n, beta: 0, c: &c, ldc: n)
                    }
                    let s = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                    best = max(best, 2 * Double(m) * Double(n) * Double(k) / s / 1e9)
                }
            }
        }
        Blas.libraryThreads = 1
        return best
    }

    /// One fine-tuning step as timed: the mean and median seconds over the timed steps, the
    /// FLOP model's count for it, and the share of parameters it trains.
    struct StepTiming {
        var seconds: Double, median: Double, flops: Double, trainableFraction: Double
    }

    /// Fine-tuning (classification) steps of each variant: `regime` trained, its experts
    /// narrowed to `experts` when given. The variants' steps are taken in turn (step s of
    /// each, then step s + 1), so a machine whose load changes while they run slows all of
    /// them alike.
    static func fineTuneSteps(config base: ModelConfig, variants: [(regime: Regime, experts: ExpertSelection?)],
                              steps: Int) throws -> [StepTiming] {
        let B = batch, T = base.context, N = B * T
        let trainers = try variants.map { v in
            let trainer = try trainer(model: base, kind: .finetune, regime: v.regime, lr: 1e-4)
            if let experts = v.experts { try trainer.trainExperts(experts) }
            return trainer
        }
        let tokens = randomTokens(vocab: 256, count: N, step: 0)
        let labels = (0..<B).map { Int32($0 % 45) }, lengths = [Int32](repeating: Int32(T), count: B)
        var times = [[Double]](repeating: [], count: trainers.count)
        for s in 0..<(steps + 2) {
            for (v, trainer) in trainers.enumerated() {
                let t0 = DispatchTime.now().uptimeNanoseconds
                _ = tokens.withUnsafeBufferPointer { tk in labels.withUnsafeBufferPointer { lb in lengths.withUnsafeBufferPointer { ln in
                    trainer.trainStep(s + 1, on: Batch(tokens: tk.baseAddress!, b: B, t: T, labels: lb.baseAddress!, lengths: ln.baseAddress!))
                } } }
                if s >= 2 { times[v].append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9) }
            }
        }
        return zip(trainers, times).map { trainer, times in
            let sorted = times.sorted(), mid = sorted.count / 2
            let median = sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
            return StepTiming(seconds: times.reduce(0, +) / Double(steps), median: median,
                              flops: trainer.model.stepFlops(t: T, tokens: N), trainableFraction: trainer.trainableFraction)
        }
    }
}

enum ProcessStats {
    /// Peak resident set of this process (getrusage reports KiB on Linux).
    static func peakRSSMiB() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_maxrss) / 1024
    }
}
