import Foundation
import MoeJSON
import MoeMetricNames

/// Figures for `moerec bench store`.
public enum StoreBenchmark {
    /// Writes `points` synthetic metric points for one new run into the file-backed store at
    /// `path` through `MetricWriter` (one transaction per `batchSize` points, the insert
    /// statement prepared once) and returns the elapsed time and rate. The timed part is
    /// ingestion only: opening the store and creating the run are excluded.
    ///
    /// The points look like a training run's: 16 series (8 metric names × train/val), one
    /// point per series per step. The run gets a fresh config, so the same store can be
    /// benchmarked repeatedly.
    public static func ingest(path: String, points: Int, batchSize: Int) throws -> (seconds: Double, pointsPerSecond: Double) {
        guard points > 0 else { throw StoreError.invalidArgument("benchmark points must be positive, got \(points)") }
        let store = try Store(path: path)
        let config: JSONValue = .object([
            "benchmark": .string("store-ingest"),
            "nonce": .string(UUID().uuidString),
            "points": .int(Int64(points)),
        ])
        let run = try store.insertRun(kind: .pretrain, config: config, parentHash: nil,
                                      datasetFingerprint: "synthetic", numericsVersion: 0)
        let writer = try store.metricWriter(runHash: run.hash, batchSize: batchSize)
        let names = [MetricName.loss, MetricName.accuracy, MetricName.auxLoss, MetricName.zLoss, MetricName.entropy,
                     MetricName.dropped, MetricName.learningRate, MetricName.gradientNorm]
        var keys: [MetricWriter.Key] = []
        for name in names {
            for split in [Split.train, Split.val] { keys.append(try writer.key(name: name, split: split)) }
        }

        let start = DispatchTime.now().uptimeNanoseconds
        var written = 0
        var step = 0
        while written < points {
            for key in keys where written < points {
                // Cheap, varied values: distinct doubles without a random generator in the loop.
                try writer.add(key, step: step, value: Double(step &* 2_654_435_761 % 1_000_003) * 1e-6)
                written += 1
            }
            step += 1
        }
        try writer.flush()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return (seconds, Double(points) / seconds)
    }
}
