import ArgumentParser
import Foundation
import MoeCheckpoint
import MoeExperiment
import MoeJSON
import MoeStore

struct BenchStore: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract: "Measure metric ingestion and checkpoint deduplication of the experiment store.",
        discussion: """
        points_per_s: synthetic metric points written into a file-backed store in batched \
        transactions. Deduplication: a small MoE is pretrained on generated text, then \
        fine-tuned under the five ST-MoE regimes; sweep_object_bytes counts the objects the \
        five final checkpoints add beyond the parent's, single_checkpoint_bytes one full \
        checkpoint of the same model, dedup_ratio their quotient (5 without sharing).

        Example: moerec bench store --format json
        """)

    @Option(help: "Metric points to ingest.") var points = 2_000_000
    @Option(help: "Points per transaction.") var batch = 50_000
    @Option(help: "table or json.") var format: OutputFormat = .table

    func validate() throws {
        try requireOption("--points", points, in: 1000...100_000_000)
        try requireOption("--batch", batch, in: 1...1_000_000)
    }

    func run() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moerec-bench-store-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let ingest = try StoreBenchmark.ingest(path: dir.appendingPathComponent("ingest.sqlite").path, points: points, batchSize: batch)
        let dedup = try dedupSweep(in: dir)
        let fields: [(String, OrderedJSON)] = [
            ("points", .int(points)), ("batch", .int(batch)), ("ingest_seconds", .number(ingest.seconds)),
            ("points_per_s", .number(ingest.pointsPerSecond)),
            ("zlib_level", .int(ObjectStore.defaultCompressionLevel)), ("compression_ratio", .number(dedup.compression)),
            ("parameters", .int(dedup.parameters)),
            ("single_checkpoint_bytes", .int(dedup.single)), ("sweep_object_bytes", .int(dedup.sweep)),
            ("dedup_ratio", .number(Double(dedup.sweep) / Double(dedup.single))),
            ("peak_rss_mib", .number(ProcessStats.peakRSSMiB())),
        ]
        print(format == .json ? ResultOut.json(fields) : TableOut.keyValues(fields))
    }

    func dedupSweep(in dir: URL) throws -> (single: Int, sweep: Int, compression: Double, parameters: Int) {
        // Generated data: the bench must not depend on WordNet being installed.
        let words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "lambda"]
        var corpus = "", task = ""
        for i in 0..<3000 {
            let text = (0..<6).map { words[($0 * 7 + i * 3) % words.count] }.joined(separator: " ")
            corpus += "{\"text\": \"\(text) \(i)\"}\n"
            task += "{\"text\": \"\(text) \(i)\", \"label\": \"c\(i % 4)\"}\n"
        }
        let corpusFile = dir.appendingPathComponent("corpus.jsonl"), taskFile = dir.appendingPathComponent("task.jsonl")
        try corpus.write(to: corpusFile, atomically: true, encoding: .utf8)
        try task.write(to: taskFile, atomically: true, encoding: .utf8)
        let store = try Store(path: dir.appendingPathComponent("dedup/moerec.sqlite").path)
        let executor = try Executor(store: store, threads: 1)
        executor.log = { _ in }
        let architecture: [String: JSONValue] = ["context": 32, "d_model": 128, "layers": 4, "heads": 4, "d_ff": 512,
                                                 "experts": 8, "top_k": 2, "moe_every": 2, "batch_size": 8, "steps": 2,
                                                 "eval_interval": 2, "eval_batches": 1, "checkpoint_interval": 2, "eval_examples": 16]
        var pre = architecture
        pre["corpus"] = .string(corpusFile.path)
        let parent = try executor.plan(try ConfigResolver.resolve(preset: pre).config)
        _ = try executor.execute(parent)
        let parentObjects = Set(try store.blobs(forRun: parent.hash).map(\.sha256))
        var sweepObjects: [String: Int64] = [:]
        var single = 0, raw = 0, stored = 0, parameters = 0
        for regime in ["all", "non-moe", "moe", "attention", "ffn"] {
            var ft = architecture
            ft["kind"] = "finetune"; ft["task"] = .string(taskFile.path); ft["parent"] = .string(parent.hash)
            ft["regime"] = .string(regime); ft["train_size"] = 64
            let plan = try executor.plan(try ConfigResolver.resolve(preset: ft).config)
            _ = try executor.execute(plan)
            guard let last = try store.latestCheckpoint(runHash: plan.hash) else { continue }
            let manifest = try CheckpointManifest(json: last.manifestJSON)
            if regime == "all" {
                single = manifest.tensors.reduce(0) { $0 + $1.storedSize }
                raw = manifest.tensors.reduce(0) { $0 + $1.rawSize }
                stored = single
                parameters = manifest.tensors.reduce(0) { $0 + $1.elementCount }
            }
            for t in manifest.tensors where !parentObjects.contains(t.sha256) { sweepObjects[t.sha256] = Int64(t.storedSize) }
        }
        return (single, Int(sweepObjects.values.reduce(0, +)), Double(raw) / Double(max(stored, 1)), parameters)
    }
}
