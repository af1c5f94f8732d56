import Foundation
import MoeJSON
import MoeMetricNames
import MoeStore

/// The synthetic store behind `moerec bench report`, and the timing of one table.
///
/// The store holds `runs` completed fine-tuning runs (a grid of 2 train sizes × 4 expert
/// counts × 5 regimes, minus `moe` on the dense model, repeated over seeds; the last seed
/// is partial, so some groups are incomplete as in a real store) under one pretraining
/// parent per expert count, and exactly `points` metric points in total, shaped like a
/// trainer's: per step 7 `step` and 2 `timing` points, every 25 steps an evaluation of
/// `train` and `val` (loss, accuracy and per-sparse-layer router statistics), and 3 `info`
/// points at step 0.
public enum ReportBenchmark {
    public static let evalInterval = 25
    static let sizes = [256, 4096]
    static let expertCounts = [1, 4, 8, 16]
    static let regimes = ["all", "non-moe", "moe", "attention", "ffn"]

    /// The grid cells (train size, experts, regime), without `moe` on one expert.
    static var cells: [(size: Int, experts: Int, regime: String)] {
        var cells: [(Int, Int, String)] = []
        for size in sizes {
            for e in expertCounts {
                for r in regimes where !(e == 1 && r == "moe") { cells.append((size, e, r)) }
            }
        }
        return cells
    }

    /// Points needed per run to reach the first evaluation, and so the least `points / runs`.
    public static let minimumPointsPerRun = 500

    /// Number of completed benchmark runs built for exactly (`runs`, `points`).
    public static func completedRuns(store: Store, runs: Int, points: Int) throws -> Int {
        let built = try WhereFilter("bench=report and bench_runs=\(runs) and bench_points=\(points)")
        return try store.runCount(RunSelection(kind: .finetune, status: .completed, filter: built))
    }

    /// Builds the synthetic store at `path`, or reuses it when it already holds every run.
    /// A build that was cut short resumes: completed runs are kept, the others rewritten
    /// (points are upserts). Returns whether the store was reused as it was.
    @discardableResult
    public static func prepareStore(path: String, runs: Int, points: Int,
                                    progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> Bool {
        guard runs >= 1 else { throw StoreError.invalidArgument("benchmark runs must be at least 1, got \(runs)") }
        guard points >= runs * minimumPointsPerRun else {
            throw StoreError.invalidArgument("benchmark points must be at least \(minimumPointsPerRun) per run (\(runs * minimumPointsPerRun) for \(runs) runs), got \(points)")
        }
        let store = try Store(path: path)
        if try completedRuns(store: store, runs: runs, points: points) == runs { return true }

        let environment = RunEnvironment(host: "synthetic", moerecVersion: "bench-report")
        let tag: [String: JSONValue] = ["bench": "report", "bench_runs": .int(Int64(runs)), "bench_points": .int(Int64(points))]
        var parents: [Int: String] = [:]
        for e in expertCounts {
            var config = tag
            config["kind"] = "pretrain"
            config["experts"] = .int(Int64(e))
            let (record, _) = try store.insertRunIfAbsent(kind: .pretrain, config: .object(config), parentHash: nil,
                                                          datasetFingerprint: "synthetic", numericsVersion: 0)
            if record.status != .completed {
                try store.markRunning(hash: record.hash, environment: environment)
                try store.markCompleted(hash: record.hash, wallSeconds: 0, steps: 0)
            }
            parents[e] = record.hash
        }

        let cells = self.cells
        let perRun = points / runs, extra = points % runs
        for i in 0..<runs {
            let cell = cells[i % cells.count], seed = i / cells.count
            var config = tag
            config["kind"] = "finetune"
            config["task"] = "synthetic"
            config["train_size"] = .int(Int64(cell.size))
            config["experts"] = .int(Int64(cell.experts))
            config["top_k"] = .int(cell.experts == 1 ? 1 : 2)
            config["regime"] = .string(cell.regime)
            config["seed"] = .int(Int64(seed))
            config["eval_interval"] = .int(Int64(evalInterval))
            config["parent"] = .string(parents[cell.experts]!)
            let (record, _) = try store.insertRunIfAbsent(kind: .finetune, config: .object(config), parentHash: parents[cell.experts]!,
                                                          datasetFingerprint: "synthetic", numericsVersion: 0)
            if record.status == .completed { continue }
            try store.markRunning(hash: record.hash, environment: environment)
            let steps = try writeRun(store: store, hash: record.hash, budget: perRun + (i < extra ? 1 : 0),
                                     size: cell.size, experts: cell.experts, regime: cell.regime, seed: seed)
            try store.markCompleted(hash: record.hash, wallSeconds: Double(steps) * 0.05, steps: steps)
            if (i + 1) % 50 == 0 || i + 1 == runs { progress?(i + 1, runs) }
        }
        return false
    }

    /// A deterministic value in [−1, 1] from three integers (SplitMix64 finaliser).
    static func noise(_ a: Int, _ b: Int, _ c: Int) -> Double {
        var z = UInt64(bitPattern: Int64(a &* 1_000_003 &+ b &* 7919 &+ c)) &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Double(z >> 11) / Double(1 << 52) - 1
    }

    /// Writes exactly `budget` points; returns the last step reached.
    static func writeRun(store: Store, hash: String, budget: Int, size: Int, experts: Int, regime: String, seed: Int) throws -> Int {
        let writer = try store.metricWriter(runHash: hash)
        var left = budget
        func put(_ key: MetricWriter.Key, _ step: Int, _ value: Double) throws {
            guard left > 0 else { return }
            try writer.add(key, step: step, value: value)
            left -= 1
        }
        let stepNames = [MetricName.loss, MetricName.crossEntropy, MetricName.learningRate, MetricName.gradientNorm,
                         MetricName.auxLoss, MetricName.zLoss, MetricName.dropped]
        let stepKeys = try stepNames.map { try writer.key(name: $0, split: Split.step) }
        let timeKey = try writer.key(name: MetricName.stepTime, split: Split.timing)
        let tokensKey = try writer.key(name: MetricName.tokensPerSecond, split: Split.timing)
        var evalKeys: [String: [MetricWriter.Key]] = [:]
        let routerStats = [MetricName.dropped, MetricName.entropy, MetricName.auxLoss, MetricName.zLoss]
        let router = experts > 1 ? [1, 3].flatMap { l in
            routerStats.map { MetricName.layer(l, $0) } + (0..<experts).map { MetricName.load(layer: l, expert: $0) }
        } : []
        for split in [Split.train, Split.val] {
            evalKeys[split] = try ([MetricName.loss, MetricName.accuracy] + router).map { try writer.key(name: $0, split: split) }
        }

        let quality: [String: Double] = ["all": 0, "non-moe": -0.003, "moe": -0.06, "attention": -0.012, "ffn": 0.004]
        let fraction: [String: Double] = ["all": 1, "non-moe": 0.45, "moe": 0.55, "attention": 0.2, "ffn": 0.15]
        let sparse = experts > 1
        // Small train sets overfit, sparse ones more so.
        let overfit = size <= 256 ? (sparse ? 0.9 : 0.5) : 0.05
        let ceiling = 0.62 + (quality[regime] ?? 0) + (size > 256 ? 0.1 : 0) + 0.01 * noise(seed, experts, size)
        try put(try writer.key(name: MetricName.parameters, split: Split.info), 0, Double(2_000_000 + 400_000 * experts))
        try put(try writer.key(name: MetricName.trainableFraction, split: Split.info), 0, sparse ? fraction[regime] ?? 1 : min(1, (fraction[regime] ?? 1) * 1.6))
        try put(try writer.key(name: MetricName.majorityAccuracy, split: Split.info), 0, 0.21)
        var step = 0
        while left > 0 {
            step += 1
            let t = Double(step) / 1000
            let trainLoss = 0.3 + 3.2 * exp(-4 * t * (1 + overfit)) + 0.02 * noise(seed, step, 1)
            for (k, key) in stepKeys.enumerated() { try put(key, step, k == 0 ? trainLoss : 0.1 * Double(k) + 0.01 * noise(step, k, seed)) }
            try put(timeKey, step, 0.04 * (0.4 + 0.6 * (fraction[regime] ?? 1)) + 0.002 * noise(seed, step, 2))
            try put(tokensKey, step, 40_000 + 1000 * noise(seed, step, 3))
            if step % evalInterval == 0 {
                let valLoss = 0.9 + 2.6 * exp(-4 * t) + overfit * t * t + 0.01 * noise(seed, step, 4)
                let valAcc = ceiling * (1 - exp(-5 * t)) - 0.08 * overfit * t * t + 0.004 * noise(seed, step, 5)
                let trainAcc = min(1, valAcc + (0.05 + 0.3 * overfit) * t)
                for split in [Split.train, Split.val] {
                    let keys = evalKeys[split]!
                    try put(keys[0], step, split == Split.train ? trainLoss : valLoss)
                    try put(keys[1], step, split == Split.train ? trainAcc : valAcc)
                    for (k, key) in keys.dropFirst(2).enumerated() { try put(key, step, 0.5 + 0.1 * noise(step, k, seed)) }
                }
            }
        }
        try writer.flush()
        return step
    }

    /// Builds and renders one table from the store; the store's opening is not timed.
    public static func measure(store: Store, table: ReportTable, format: ReportFormat)
        throws -> (seconds: Double, rows: Int, bytes: Int)
    {
        let start = DispatchTime.now().uptimeNanoseconds
        let set = try Reports.build(store: store, tables: [table], filter: nil)
        let text = Reports.render(set, format: format)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return (seconds, set.rowCount(table), text.utf8.count)
    }
}
