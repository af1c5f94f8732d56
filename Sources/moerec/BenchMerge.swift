import ArgumentParser
import Foundation
import MoeCheckpoint
import MoeExperiment
import MoeJSON
import MoeMetricNames
import MoeStore

struct BenchMerge: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Time merging shard stores into one, as a Slurm sweep's merge jobs do.",
        discussion: """
        Builds --shards stores of --runs-per-shard completed runs each, in a temporary \
        directory: each run has --points metric points and one checkpoint of --tensors \
        objects of 16 KiB, written (as Slurm tasks write them) into one shared object \
        directory. Then times `moerec merge` of all shards into a new store (merge_s, \
        runs_per_s), and of the same shards again, which adds nothing (remerge_s), and \
        reports the merged store's size per run.

        Examples:
          moerec bench merge --shards 1000 --runs-per-shard 1
          moerec bench merge --shards 1 --runs-per-shard 1000 --format json
        """)

    @Option(help: "Shard stores to build.") var shards = 100
    @Option(help: "Completed runs in each shard.") var runsPerShard = 1
    @Option(help: "Metric points per run.") var points = 2000
    @Option(help: "Objects in each run's checkpoint.") var tensors = 8
    @Option(help: "table or json.") var format: OutputFormat = .table

    func validate() throws {
        try requireOption("--shards", shards, in: 1...100_000)
        try requireOption("--runs-per-shard", runsPerShard, in: 1...100_000)
        try requireOption("--points", points, in: 0...1_000_000)
        try requireOption("--tensors", tensors, in: 1...1000)
        if format == .csv { throw ValidationError("--format csv: use table or json") }
    }

    func run() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moerec-bench-merge-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let objectsDir = dir.appendingPathComponent("objects")
        let objects = ObjectStore(root: objectsDir)
        var paths: [String] = []
        let buildStart = Date()
        for s in 0..<shards {
            let shardDir = dir.appendingPathComponent("shards/task-\(s)")
            try FileManager.default.createDirectory(at: shardDir, withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(at: shardDir.appendingPathComponent("objects"), withDestinationURL: objectsDir)
            let path = shardDir.appendingPathComponent("moerec.sqlite").path
            let store = try Store(path: path)
            for r in 0..<runsPerShard {
                try syntheticRun(index: s * runsPerShard + r, store: store, objects: objects)
            }
            store.close()
            paths.append(path)
        }
        let buildSeconds = Date().timeIntervalSince(buildStart)
        let target = try Store(path: dir.appendingPathComponent("merged/moerec.sqlite").path)
        let start = Date()
        let outcomes = try StoreMerger.merge(paths, into: target)
        let mergeSeconds = Date().timeIntervalSince(start)
        let again = Date()
        let second = try StoreMerger.merge(paths, into: target)
        let remergeSeconds = Date().timeIntervalSince(again)
        target.close()
        let runs = outcomes.reduce(0) { $0 + $1.summary.runsAdded }
        guard runs == shards * runsPerShard, second.allSatisfy({ $0.summary.runsAdded == 0 && $0.summary.metricPoints == 0 }) else {
            throw CheckFailed("bench merge: merged \(runs) of \(shards * runsPerShard) runs")
        }
        let bytes = try FileManager.default.attributesOfItem(atPath: dir.appendingPathComponent("merged/moerec.sqlite").path)[.size] as? Int ?? 0
        let fields: [(String, OrderedJSON)] = [
            ("shards", .int(shards)), ("runs_per_shard", .int(runsPerShard)), ("points_per_run", .int(points)),
            ("objects_per_run", .int(tensors)), ("build_s", .number(buildSeconds)), ("merge_s", .number(mergeSeconds)),
            ("runs_per_s", .number(Double(runs) / mergeSeconds)), ("remerge_s", .number(remergeSeconds)),
            ("store_bytes_per_run", .int(bytes / max(1, runs))), ("peak_rss_mib", .number(ProcessStats.peakRSSMiB())),
        ]
        print(format == .json ? ResultOut.json(fields) : TableOut.keyValues(fields))
    }

    /// A completed run like a small fine-tuning cell's: metric points over 20 series and one
    /// checkpoint whose objects are 16 KiB each, distinct per run.
    func syntheticRun(index: Int, store: Store, objects: ObjectStore) throws {
        let config: JSONValue = .object(["benchmark": "merge", "run": .int(Int64(index))])
        let run = try store.insertRun(kind: .pretrain, config: config, parentHash: nil, datasetFingerprint: "synthetic", numericsVersion: 0)
        let lease = try store.markRunning(hash: run.hash, environment: RunEnvironment(host: "bench"))
        defer { lease.release() }
        let writer = try store.metricWriter(runHash: run.hash)
        let names = [MetricName.loss, MetricName.accuracy, MetricName.auxLoss, MetricName.zLoss, MetricName.entropy,
                     MetricName.dropped, MetricName.learningRate, MetricName.gradientNorm, "moe1.aux", "moe1.z"]
        var keys: [MetricWriter.Key] = []
        for name in names { for split in [Split.train, Split.val] { keys.append(try writer.key(name: name, split: split)) } }
        for p in 0..<points { try writer.add(keys[p % keys.count], step: p / keys.count, value: Double((index &* 31 &+ p) % 1009) * 1e-3) }
        try writer.flush()
        var blobs: [BlobRecord] = []
        for t in 0..<tensors {
            let values = (0..<4096).map { Float(($0 &* 7 &+ t &* 13 &+ index &* 101) % 997) * 1e-3 }
            let ref = try objects.put(values)
            blobs.append(BlobRecord(sha256: ref.sha256, rawSize: Int64(ref.rawSize), storedSize: Int64(ref.storedSize), location: ref.relativePath))
        }
        let manifest: JSONValue = .object(["step": 1, "tensors": .array(blobs.map { .string($0.sha256) })])
        try store.recordCheckpoint(runHash: run.hash, step: 1, manifestJSON: try manifest.canonicalString, blobs: blobs)
        try store.markCompleted(hash: run.hash, wallSeconds: 1, steps: 1)
    }
}
